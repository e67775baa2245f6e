"""`/healthz`: the process is up. `/readyz`: the database answers and its schema is at the migration head."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from bottega.api.db import migrate
from bottega.core import package_version

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": package_version()}


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.engine
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["migrations"] = "ok" if migrate.is_at_head(engine) else "behind head: run `bottega db upgrade`"
    except Exception as exc:
        checks.setdefault("database", f"unreachable: {type(exc).__name__}")
    ready = all(value == "ok" for value in checks.values()) and len(checks) == 2
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
