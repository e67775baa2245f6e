"""Alembic environment: the engine comes from the caller (see bottega.api.db.migrate), never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from bottega.api.db.tables import Base


def run() -> None:
    engine: Engine = context.config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run()
