"""The Alembic migrations build exactly the schema the ORM tables describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bottega.api.db import migrate
from bottega.api.db.engine import make_engine
from bottega.api.db.tables import Base


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrate.is_at_head(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"write a migration for: {diff}"
    finally:
        engine.dispose()
