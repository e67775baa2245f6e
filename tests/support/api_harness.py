"""Test support for the API tier: a fresh app per test on a migrated database, and helpers to make callers.

Every API test runs on both backends (SQLite and the real PostgreSQL), through `database_url` (see
tests/integration/api/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from bottega.api.app import create_app
from bottega.api.db import migrate
from bottega.api.db.engine import make_engine
from bottega.api.db.tables import Base
from bottega.api.settings import ApiSettings
from bottega.sdk import Client

ADMIN_TOKEN = "btg_0000000000ad_" + "a" * 40


def wipe(engine: Engine) -> None:
    """Delete every row of every table (the schema stays at head)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@dataclass
class ApiHarness:
    client: TestClient
    settings: ApiSettings
    admin_token: str = ADMIN_TOKEN
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(token), **kwargs.pop("headers", {})}
        response: httpx.Response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def sdk(self, token: str | None = None) -> Client:
        return Client(token=token or self.admin_token, http=self.client)

    def user(self, name: str, project: str | None = None, role: str | None = None) -> str:
        """An API key of `name` (made once per test), with `role` in `project` when given."""
        if name not in self.tokens:
            self.tokens[name] = self.sdk().keys.create(f"{name} key", user=name).token
        if project is not None and role is not None:
            self.sdk().projects.set_member(project, name, role)
        return self.tokens[name]

    def project(self, name: str, owner: str = "owner") -> str:
        """Create a project owned by `owner`; returns the owner's token."""
        token = self.user(owner)
        self.sdk(token).projects.create(name, f"{name} for tests")
        return token


@contextmanager
def harness(database_url: str, home: Path, **overrides: Any) -> Iterator[ApiHarness]:
    engine = make_engine(database_url)
    try:
        wipe(engine)
    finally:
        engine.dispose()
    options: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "artifacts_url": str(home / "artifacts"),
        "bootstrap_token": ADMIN_TOKEN,
        "embedded_worker": False,
        "migrate_on_start": False,
        **overrides,
    }
    settings = ApiSettings(**options)
    with TestClient(create_app(settings)) as client:
        yield ApiHarness(client=client, settings=settings)


def migrated_sqlite(folder: Path) -> str:
    """The URL of a migrated SQLite metadata database in `folder` (the embedded default, for tests that need a real
    API but not both backends)."""
    url = f"sqlite:///{folder / 'api.db'}"
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url
