"""A batch deployment's cron is a job schedule kept in step by the deployments service (on SQLite and on the real
PostgreSQL): created with the deployment, changed with its spec, disabled while undeployed, restored by a rollback;
the scheduler then queues `serving.batch_score` runs for it (time driven explicitly)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from api_harness import ApiHarness, harness
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.db import migrate
from bottega.api.db.engine import make_engine
from bottega.api.jobs import scheduler
from bottega.api.jobs.schemas import JobScheduleRead
from bottega.core.errors import Conflict
from bottega.sdk import Client

MONTHLY = "0 0 1 * *"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'api.db'}"
        admin = None
    else:
        server = make_url(request.getfixturevalue("postgres_url"))
        name = f"batch_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with harness(database_url, tmp_path / "home") as h:
        yield h


def schedule(sdk: Client, name: str) -> JobScheduleRead | None:
    return next((s for s in sdk.jobs.list_schedules("shop").items if s.name == name), None)


def spec(cron: str = MONTHLY) -> dict[str, object]:
    return {"model": "churn", "version": 1, "input": "/in.parquet", "output": "/out", "schedule": cron}


def register(sdk: Client, folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"not read by these tests")
    sdk.models.create("shop", "churn")
    sdk.models.register_version("shop", "churn", "onnx", {"model.onnx": folder / "model.onnx"})


def test_the_schedule_follows_the_deployment(api: ApiHarness, tmp_path: Path) -> None:
    sdk = api.sdk(api.project("shop", owner="alice"))
    register(sdk, tmp_path)
    sdk.deployments.create("shop", "online", {"targets": [{"model": "churn", "version": 1, "weight": 100}]})
    assert sdk.jobs.list_schedules("shop").total == 0, "online deployments have no schedule"

    sdk.deployments.create("shop", "nightly", spec())
    made = schedule(sdk, "deployment.nightly")
    assert made is not None
    assert (made.job_type, made.params, made.cron, made.enabled) == (
        "serving.batch_score",
        {"deployment": "nightly"},
        MONTHLY,
        True,
    )
    assert made.created_by == "alice"
    first = made.next_run_at
    assert first is not None

    sessions: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    (run_id,) = scheduler.fire_due(sessions, first + timedelta(seconds=1)).queued
    run = sdk.jobs.get("shop", run_id)
    assert (run.job_type, run.params, run.schedule, run.scheduled_for) == (
        "serving.batch_score",
        {"deployment": "nightly"},
        "deployment.nightly",
        first,
    )

    sdk.deployments.update("shop", "nightly", spec("30 4 * * *"), expected_revision=1)
    changed = schedule(sdk, "deployment.nightly")
    assert changed is not None
    assert changed.cron == "30 4 * * *"
    assert changed.next_run_at is not None
    assert (changed.next_run_at.hour, changed.next_run_at.minute) == (4, 30)
    sdk.deployments.undeploy("shop", "nightly")
    paused = schedule(sdk, "deployment.nightly")
    assert paused is not None
    assert (paused.enabled, paused.next_run_at) == (False, None)
    assert scheduler.fire_due(sessions, first + timedelta(days=400)).queued == []
    sdk.deployments.rollback("shop", "nightly")  # back to revision 2: active, 04:30
    restored = schedule(sdk, "deployment.nightly")
    assert restored is not None
    assert (restored.enabled, restored.cron) == (True, "30 4 * * *")
    assert restored.next_run_at is not None

    actions = [e.action for e in api.sdk().audit.list(project="shop", action="job.schedule.").items]
    assert actions == ["job.schedule.update"] * 3 + ["job.schedule.create"]


def test_names_and_clashes(api: ApiHarness, tmp_path: Path) -> None:
    sdk = api.sdk(api.project("shop", owner="alice"))
    register(sdk, tmp_path)
    long_name = "b" * 63
    sdk.deployments.create("shop", long_name, spec())
    (made,) = sdk.jobs.list_schedules("shop").items
    assert len(made.name) == 63
    assert made.name.startswith("deployment.bbbb")
    assert made.params == {"deployment": long_name}

    sdk.jobs.create_schedule("shop", "deployment.clash", "builtin.echo", MONTHLY)
    with pytest.raises(Conflict, match=r"job schedule 'deployment.clash' .* rename or delete that schedule"):
        sdk.deployments.create("shop", "clash", spec())
    assert [d.name for d in sdk.deployments.list("shop").items] == [long_name], "nothing was created"
