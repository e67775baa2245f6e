"""Health: `/healthz` always answers; `/readyz` checks the database and the migration head."""

from __future__ import annotations

from pathlib import Path

from api_harness import ApiHarness, harness
from sqlalchemy import text

from bottega.api.db.engine import make_engine


def test_healthz_and_readyz(api: ApiHarness) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_readyz_reports_a_schema_behind_head(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        heads = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        conn.execute(text("DELETE FROM alembic_version"))
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('older')"))
    try:
        with harness(database_url, tmp_path / "home") as h:
            response = h.client.get("/readyz")
            assert response.status_code == 503
            assert "behind head" in response.json()["checks"]["migrations"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            for head in heads:
                conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
        engine.dispose()


def test_openapi_document_is_served(api: ApiHarness) -> None:
    doc = api.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/projects" in doc["paths"]
    assert doc["info"]["title"] == "Bottega API"
