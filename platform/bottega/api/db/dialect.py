"""Dialect-specific statements the two supported backends (SQLite, PostgreSQL) both offer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session) -> Any:
    """The backend's `insert` construct, which has `on_conflict_do_nothing` and `on_conflict_do_update`."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"Bottega supports SQLite and PostgreSQL, not {dialect}")


def insert_ignore(session: Session, table: Table, values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: safe when two transactions insert the same row at once."""
    session.execute(dialect_insert(session)(table).values(**values).on_conflict_do_nothing())
