"""The one error mapper: domain errors, a busy SQLite database and unexpected failures."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from bottega.api import problems
from bottega.core.errors import Conflict


def app() -> FastAPI:
    application = FastAPI()
    problems.install(application)

    @application.get("/conflict")
    def conflict() -> None:
        raise Conflict("stale revision", current_revision=3)

    @application.get("/locked")
    def locked() -> None:
        raise OperationalError("UPDATE x", {}, Exception("database is locked"))

    @application.get("/broken")
    def broken() -> None:
        raise RuntimeError("secret internals")

    return application


def test_domain_errors_busy_database_and_unexpected_failures() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    conflict = client.get("/conflict")
    assert conflict.status_code == 409
    assert conflict.json() == {
        "type": "urn:bottega:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "stale revision",
        "current_revision": 3,
    }
    locked = client.get("/locked")
    assert locked.status_code == 503
    assert locked.headers["retry-after"] == "1"
    assert locked.json()["type"] == "urn:bottega:problem:unavailable"
    broken = client.get("/broken")
    assert broken.status_code == 500
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert "secret internals" not in broken.text
