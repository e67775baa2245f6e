"""A seconds-level cron schedule fires once per occurrence across an API restart and with two APIs on one database.

The API runs for real (TestClient lifespan: migrations, bootstrap, the scheduler thread every 0.2 s) on a SQLite
file and on the real PostgreSQL. Phases: app A alone; a gap with no app (missed occurrences are coalesced into
one); app B alone on the same database; then A2 and B2 together (two replicas racing on every occurrence).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN
from croniter import croniter
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bottega.api.app import create_app
from bottega.api.jobs import cron
from bottega.api.settings import ApiSettings
from bottega.sdk import Client

EVERY_SECOND = "* * * * * *"
PHASE_S = 3.0
GAP_S = 3.0


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database; the first app migrates it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'restart.db'}"
        return
    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"restart_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def app_on(database_url: str, home: Path) -> TestClient:
    settings = ApiSettings(
        home=home,
        database_url=database_url,
        artifacts_url=str(home / "artifacts"),
        bootstrap_token=ADMIN_TOKEN,
        embedded_worker=False,
        migrate_on_start=True,
        scheduler_interval_s=0.2,
    )
    return TestClient(create_app(settings))


def occurrences(start: datetime, end: datetime) -> list[datetime]:
    """Occurrences of EVERY_SECOND in [start, end]."""
    found: list[datetime] = []
    it = croniter(EVERY_SECOND, start - timedelta(seconds=1), second_at_beginning=True)
    while (moment := it.get_next(datetime)) <= end:
        found.append(moment)
    return found


def scheduled(sdk: Client) -> list[datetime]:
    runs = sdk.jobs.list("eats", schedule="tick", limit=500).items
    return [r.scheduled_for for r in runs if r.scheduled_for is not None]


def now() -> datetime:
    return datetime.now(UTC)


def test_one_run_per_occurrence_across_restarts_and_replicas(fresh_database: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with app_on(fresh_database, tmp_path / "a") as client:
        sdk = Client(token=ADMIN_TOKEN, http=client)
        sdk.projects.create("eats")
        sdk.jobs.create_schedule("eats", "tick", "builtin.echo", EVERY_SECOND, {"from": "restart test"})
        a_start = now()
        time.sleep(PHASE_S)
        a_end = now()
    time.sleep(GAP_S)
    with app_on(fresh_database, tmp_path / "b") as client:
        b_start = now()
        sdk = Client(token=ADMIN_TOKEN, http=client)
        time.sleep(PHASE_S)
        b_end = now()
    with ExitStack() as stack:
        first = stack.enter_context(app_on(fresh_database, tmp_path / "a"))
        stack.enter_context(app_on(fresh_database, tmp_path / "b"))
        both_start = now()
        time.sleep(PHASE_S)
        both_end = now()
        sdk = Client(token=ADMIN_TOKEN, http=first)
        sdk.jobs.update_schedule("eats", "tick", enabled=False)
        moments = scheduled(sdk)

    assert len(moments) == len(set(moments)), "an occurrence was queued twice"
    assert all(cron.is_occurrence(EVERY_SECOND, m) for m in moments), "a run is not for a valid occurrence"
    have = set(moments)
    margin = timedelta(seconds=1)
    for label, start, end in [("A", a_start, a_end), ("B", b_start, b_end), ("A2+B2", both_start, both_end)]:
        window = occurrences(start + margin, end - margin)
        assert window, label
        missing = [m for m in window if m not in have]
        assert not missing, f"phase {label}: occurrences never queued while a scheduler ran: {missing}"
    gap = occurrences(a_end + margin, b_start - margin)
    assert gap, "the gap is long enough to miss occurrences"
    assert sum(m in have for m in gap) <= 1, "missed occurrences are coalesced into (at most) one run"
    assert time.monotonic() - started < 30
