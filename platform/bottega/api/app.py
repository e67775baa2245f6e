"""`create_app()`: the FastAPI application of the central API tier. Nothing happens at import time."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session

from bottega.api import problems
from bottega.api.artifacts.store import BlobStore
from bottega.api.audit.router import router as audit_router
from bottega.api.auth.router import router as auth_router
from bottega.api.auth.service import bootstrap_admin
from bottega.api.db import migrate
from bottega.api.db.engine import make_engine, make_sessionmaker
from bottega.api.deployments.router import router as deployments_router
from bottega.api.features.router import router as features_router
from bottega.api.health.router import router as health_router
from bottega.api.jobs import background
from bottega.api.jobs.router import router as jobs_router
from bottega.api.projects.router import router as projects_router
from bottega.api.registry.router import router as registry_router
from bottega.api.runs.router import router as runs_router
from bottega.api.settings import ApiSettings
from bottega.core import package_version

API_PREFIX = "/api/v1"


def _bootstrap(app: FastAPI, settings: ApiSettings) -> None:
    session: Session = app.state.sessionmaker()
    with session, session.begin():
        token = bootstrap_admin(session, settings.home, settings.bootstrap_token)
    if token is not None and not settings.bootstrap_token:
        path = settings.home / "bootstrap-token"
        print(
            f"bottega: created the bootstrap admin API key (shown once, also saved in {path}):\n  {token}",
            file=sys.stderr,
            flush=True,
        )


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    domains = (
        projects_router,
        auth_router,
        audit_router,
        runs_router,
        registry_router,
        deployments_router,
        jobs_router,
        features_router,
    )
    for domain in domains:
        router.include_router(domain)
    return router


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    engine = make_engine(settings.resolved_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            migrate.upgrade(engine)
        _bootstrap(app, settings)
        stop_background = background.start(app, settings)
        try:
            yield
        finally:
            stop_background()
            engine.dispose()

    app = FastAPI(
        title="Bottega API",
        version=package_version(),
        description="The central API tier of Bottega: projects, features, runs, models, deployments and jobs.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.blobs = BlobStore(settings.resolved_artifacts_url())
    problems.install(app)
    app.add_middleware(
        problems.BodyLimit, max_json_bytes=settings.max_json_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.include_router(health_router)
    app.include_router(api_router())
    return app
