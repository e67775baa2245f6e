"""Cron schedules: CRUD with validation, and the scheduler's exactly-once firing (driven with an explicit clock)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_harness import ApiHarness, harness
from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.db.tables import JobRun, JobSchedule
from bottega.api.jobs import cron, scheduler
from bottega.api.jobs.service import scheduled_run
from bottega.core.errors import Conflict, InvalidInput, NotFound

MONTHLY = "0 0 1 * *"  # far enough away that the app's own scheduler thread never fires it during a test


def sessions_of(api: ApiHarness) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    return factory


def next_of(expr: str, after: datetime) -> datetime:
    value: datetime = croniter(expr, after, second_at_beginning=True).get_next(datetime)
    return value


def test_create_get_list_update_delete(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    before = datetime.now(UTC)
    created = sdk.jobs.create_schedule("eats", "nightly", "builtin.echo", "30  2 * * *", {"k": "v"})
    assert (created.name, created.project, created.job_type, created.params) == (
        "nightly",
        "eats",
        "builtin.echo",
        {"k": "v"},
    )
    assert created.cron == "30 2 * * *", "whitespace is normalized"
    assert created.enabled is True
    assert created.created_by == "alice"
    assert created.next_run_at is not None
    assert created.next_run_at == next_of("30 2 * * *", before)
    sdk.jobs.create_schedule("eats", "fine", "builtin.sleep", "*/15 0 0 1 1 *", {"seconds": 0})
    sdk.jobs.create_schedule("eats", "hourly", "builtin.echo", "@hourly", enabled=False)

    got = sdk.jobs.get_schedule("eats", "nightly")
    assert got.recent_runs == []
    assert got.next_run_at == created.next_run_at
    page = sdk.jobs.list_schedules("eats")
    assert [s.name for s in page.items] == ["fine", "hourly", "nightly"]
    assert [s.name for s in sdk.jobs.list_schedules("eats", enabled=False).items] == ["hourly"]
    assert sdk.jobs.list_schedules("eats", limit=1, offset=1).items[0].name == "hourly"
    hourly = sdk.jobs.get_schedule("eats", "hourly")
    assert hourly.next_run_at is None, "a disabled schedule has no next run"

    changed = sdk.jobs.update_schedule("eats", "nightly", cron="0 4 * * 1", params={"k": "w"})
    assert (changed.cron, changed.params) == ("0 4 * * 1", {"k": "w"})
    assert changed.next_run_at is not None
    assert changed.next_run_at.weekday() == 0
    assert (changed.next_run_at.hour, changed.next_run_at.minute) == (4, 0)
    assert changed.updated_at > created.updated_at
    paused = sdk.jobs.update_schedule("eats", "nightly", enabled=False)
    assert (paused.enabled, paused.next_run_at) == (False, None)
    resumed = sdk.jobs.update_schedule("eats", "nightly", enabled=True)
    assert resumed.next_run_at == changed.next_run_at
    sdk.jobs.delete_schedule("eats", "nightly")
    with pytest.raises(NotFound, match="'nightly' does not exist"):
        sdk.jobs.get_schedule("eats", "nightly")
    assert sdk.jobs.list_schedules("eats").total == 2
    actions = [e.action for e in api.sdk().audit.list(project="eats", action="job.schedule.").items]
    assert actions == ["job.schedule.delete", *["job.schedule.update"] * 3, *["job.schedule.create"] * 3]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "not a valid cron"),
        ("* * * * * 70", "not a valid cron"),
        ("every day", "has 2 fields"),
        ("0 0 31 2 *", "never fires"),
        ("@sometimes", "has 1 fields"),
    ],
)
def test_bad_cron_is_422_naming_the_field(api: ApiHarness, expr: str, message: str) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    with pytest.raises(InvalidInput, match=message) as caught:
        sdk.jobs.create_schedule("eats", "bad", "builtin.echo", expr)
    assert caught.value.extra["field"] == "cron"
    sdk.jobs.create_schedule("eats", "good", "builtin.echo", MONTHLY)
    with pytest.raises(InvalidInput, match=message):
        sdk.jobs.update_schedule("eats", "good", cron=expr)
    assert sdk.jobs.get_schedule("eats", "good").cron == MONTHLY


def test_schedule_errors(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.jobs.create_schedule("eats", "s1", "builtin.sleep", MONTHLY, {"seconds": 1})
    with pytest.raises(Conflict, match="already exists"):
        sdk.jobs.create_schedule("eats", "s1", "builtin.echo", MONTHLY)
    with pytest.raises(InvalidInput, match="unknown job type") as unknown:
        sdk.jobs.create_schedule("eats", "s2", "builtin.nope", MONTHLY)
    assert unknown.value.extra["field"] == "job_type"
    with pytest.raises(InvalidInput, match=r"params\.seconds"):
        sdk.jobs.create_schedule("eats", "s2", "builtin.sleep", MONTHLY, {"seconds": "x"})
    with pytest.raises(InvalidInput, match=r"params\.seconds"):
        sdk.jobs.update_schedule("eats", "s1", params={"seconds": -5})
    with pytest.raises(NotFound):
        sdk.jobs.update_schedule("eats", "ghost", enabled=False)
    with pytest.raises(NotFound):
        sdk.jobs.delete_schedule("eats", "ghost")
    with pytest.raises(NotFound):
        sdk.jobs.create_schedule("ghost", "s3", "builtin.echo", MONTHLY)
    base = "/api/v1/projects/eats/jobs/schedules"
    for body, field in [
        ({"name": "Bad Name", "job_type": "builtin.echo", "cron": MONTHLY}, "body.name"),
        ({"name": "s4", "job_type": "builtin.echo"}, "body.cron"),
        ({"name": "s4", "job_type": "builtin.echo", "cron": MONTHLY, "enabled": "maybe"}, "body.enabled"),
        ({"name": "s4", "job_type": "builtin.echo", "cron": "x" * 200}, "body.cron"),
    ]:
        response = api.call("POST", base, token, json=body)
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["field"] == field
    response = api.call("PATCH", f"{base}/s1", token, json={"job_type": "builtin.echo"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.job_type"
    assert sdk.jobs.list_schedules("eats").total == 1


def test_a_due_schedule_queues_its_occurrence_exactly_once(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    schedule = sdk.jobs.create_schedule("eats", "monthly", "builtin.echo", MONTHLY, {"n": 1})
    first = schedule.next_run_at
    assert first is not None
    sessions = sessions_of(api)
    assert scheduler.fire_due(sessions, first - timedelta(seconds=1)).queued == []
    report = scheduler.fire_due(sessions, first + timedelta(seconds=3))
    assert len(report.queued) == 1
    again = scheduler.fire_due(sessions, first + timedelta(seconds=4))
    assert again.queued == [], "the same occurrence is never queued twice"
    run = sdk.jobs.get("eats", report.queued[0])
    assert (run.status, run.schedule, run.scheduled_for, run.params) == ("queued", "monthly", first, {"n": 1})
    assert run.created_by == "alice"
    after = sdk.jobs.get_schedule("eats", "monthly")
    assert after.next_run_at == next_of(MONTHLY, first)
    assert [r.id for r in after.recent_runs] == [run.id]
    assert [r.id for r in sdk.jobs.list("eats", schedule="monthly").items] == [run.id]
    event = api.sdk().audit.list(project="eats", action="job.run.schedule").items[0]
    assert event.actor == "system:scheduler"


def test_missed_occurrences_are_coalesced_into_the_latest(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    first = sdk.jobs.create_schedule("eats", "monthly", "builtin.echo", MONTHLY).next_run_at
    assert first is not None
    fourth = next_of(MONTHLY, next_of(MONTHLY, next_of(MONTHLY, first)))
    report = scheduler.fire_due(sessions_of(api), fourth + timedelta(days=2))
    assert len(report.queued) == 1, "three missed occurrences and a due one give one run"
    assert sdk.jobs.get("eats", report.queued[0]).scheduled_for == fourth
    assert sdk.jobs.get_schedule("eats", "monthly").next_run_at == next_of(MONTHLY, fourth)


def test_an_occurrence_already_queued_elsewhere_is_skipped_and_the_schedule_moves_on(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    first = sdk.jobs.create_schedule("eats", "monthly", "builtin.echo", MONTHLY).next_run_at
    assert first is not None
    sessions = sessions_of(api)
    with sessions() as session, session.begin():  # another replica queued it but had not moved next_run_at yet
        row = session.scalar(select(JobSchedule).where(JobSchedule.name == "monthly"))
        assert row is not None
        session.add(scheduled_run(row, first))
    report = scheduler.fire_due(sessions, first + timedelta(seconds=1))
    assert (report.queued, report.duplicates) == ([], 1)
    assert sdk.jobs.list("eats").total == 1
    assert sdk.jobs.get_schedule("eats", "monthly").next_run_at == next_of(MONTHLY, first)


def test_racing_schedulers_queue_each_occurrence_once(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    firsts = [
        sdk.jobs.create_schedule("eats", f"s{i}", "builtin.echo", MONTHLY, {"i": i}).next_run_at for i in range(5)
    ]
    assert firsts[0] is not None
    now = firsts[0] + timedelta(seconds=1)
    sessions = sessions_of(api)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def replica() -> None:
        try:
            barrier.wait()
            scheduler.fire_due(sessions, now)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with sessions() as session:
        count = session.scalar(select(func.count()).select_from(JobRun))
    assert count == 5
    assert sorted(r.schedule or "" for r in sdk.jobs.list("eats").items) == [f"s{i}" for i in range(5)]


def test_paused_schedules_and_archived_projects_do_not_fire(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    first = sdk.jobs.create_schedule("eats", "monthly", "builtin.echo", MONTHLY).next_run_at
    assert first is not None
    sessions = sessions_of(api)
    sdk.jobs.update_schedule("eats", "monthly", enabled=False)
    assert scheduler.fire_due(sessions, first + timedelta(seconds=1)).queued == []
    sdk.jobs.update_schedule("eats", "monthly", enabled=True)
    sdk.projects.archive("eats")
    assert scheduler.fire_due(sessions, first + timedelta(seconds=1)).queued == []
    sdk.projects.unarchive("eats")
    assert len(scheduler.fire_due(sessions, first + timedelta(seconds=1)).queued) == 1


def test_deleting_a_schedule_keeps_its_runs(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    first = sdk.jobs.create_schedule("eats", "monthly", "builtin.echo", MONTHLY).next_run_at
    assert first is not None
    (run_id,) = scheduler.fire_due(sessions_of(api), first + timedelta(seconds=1)).queued
    sdk.jobs.delete_schedule("eats", "monthly")
    run = sdk.jobs.get("eats", run_id)
    assert (run.status, run.schedule, run.scheduled_for) == ("queued", None, first)


def test_cron_helpers() -> None:
    now = datetime(2026, 3, 1, 12, 0, 4, 500_000, tzinfo=UTC)
    assert cron.validate("*/2  * * * * *", now) == "*/2 * * * * *"
    assert cron.validate("@DAILY", now) == "@daily"
    assert cron.next_after("*/2 * * * * *", now) == datetime(2026, 3, 1, 12, 0, 6, tzinfo=UTC)
    assert cron.latest_at_or_before("*/2 * * * * *", now) == datetime(2026, 3, 1, 12, 0, 4, tzinfo=UTC)
    exact = datetime(2026, 3, 1, 12, 0, 4, tzinfo=UTC)
    assert cron.latest_at_or_before("*/2 * * * * *", exact) == exact
    assert cron.next_after("*/2 * * * * *", exact) == datetime(2026, 3, 1, 12, 0, 6, tzinfo=UTC)
    assert cron.is_occurrence("*/2 * * * * *", exact)
    assert not cron.is_occurrence("*/2 * * * * *", exact + timedelta(seconds=1))
    assert cron.is_occurrence("0 * * * *", datetime(2026, 3, 1, 13, tzinfo=UTC))
    assert not cron.is_occurrence("0 * * * *", datetime(2026, 3, 1, 13, 0, 1, tzinfo=UTC))


def test_the_background_scheduler_fires_a_seconds_schedule(database_url: str, tmp_path: Path) -> None:
    with harness(database_url, tmp_path / "home", scheduler_interval_s=0.2) as api:
        sdk = api.sdk(api.project("eats", owner="alice"))
        sdk.jobs.create_schedule("eats", "often", "builtin.echo", "* * * * * *", {"hi": 1})
        deadline = time.monotonic() + 10
        while sdk.jobs.list("eats", schedule="often").total < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        sdk.jobs.update_schedule("eats", "often", enabled=False)
        runs = sdk.jobs.list("eats", schedule="often", limit=500).items
    assert len(runs) >= 3
    moments = [r.scheduled_for for r in runs]
    assert len(set(moments)) == len(moments)
    assert all(m is not None and cron.is_occurrence("* * * * * *", m) for m in moments)
