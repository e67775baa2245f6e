"""Database access: engine, ORM base, tables and Alembic migrations."""
