"""API tests run on both backends: SQLite (embedded default) and the real PostgreSQL that `make test` starts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import ApiHarness, harness
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bottega.api.db import migrate
from bottega.api.db.engine import make_engine


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per backend for the whole session; `api` wipes its rows before each test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'api.db'}"
        dropper = None
    else:
        server_url = make_url(request.getfixturevalue("postgres_url"))
        name = f"api_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = server_url.set(database=name).render_as_string(hide_password=False)

        def dropper() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if dropper is not None:
            dropper()


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with harness(database_url, tmp_path / "home") as h:
        yield h
