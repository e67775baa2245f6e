"""The scheduler: turns due cron occurrences into queued runs, exactly once each, and recovers lost runs.

Each tick (every `scheduler_interval_s` in the API process, see background.py):

1. finds enabled schedules of active projects with `next_run_at <= now`;
2. for each, in its own transaction: moves `next_run_at` to the first occurrence after now (compare-and-set on the
   value it read, so of two schedulers racing only one goes on) and inserts a JobRun for the occurrence with
   `scheduled_for` set. The UNIQUE (schedule_id, scheduled_for) constraint is the final guard: an IntegrityError
   means another scheduler (a second API replica, or this one before a restart) already queued that occurrence,
   so the transaction is rolled back and only next_run_at is moved on, in a new transaction;
3. re-queues (or fails) runs whose worker stopped heartbeating.

Missed occurrences (the API was down, or the project was archived) are COALESCED: only the most recent missed
occurrence is queued, once, and the schedule continues from the next future occurrence. A schedule that fires every
minute and was down for an hour runs once when the API comes back, not sixty times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.audit.service import record
from bottega.api.db.base import utcnow
from bottega.api.db.tables import JobSchedule
from bottega.api.jobs import cron, dispatch
from bottega.api.jobs import repository as repo
from bottega.api.jobs.runtime import JobsSettings
from bottega.api.jobs.service import scheduled_run

log = logging.getLogger("bottega.jobs.scheduler")
ACTOR = "system:scheduler"


@dataclass
class TickReport:
    queued: list[str] = field(default_factory=list)
    duplicates: int = 0
    reaped: list[str] = field(default_factory=list)


def tick(sessions: sessionmaker[Session], settings: JobsSettings, now: datetime | None = None) -> TickReport:
    """One pass of the scheduler (also what tests call with an explicit `now`)."""
    now = now or utcnow()
    report = TickReport()
    fire_due(sessions, now, report)
    with sessions() as session, session.begin():
        report.reaped = dispatch.reap_stale(session, now, settings)
    return report


def fire_due(sessions: sessionmaker[Session], now: datetime, report: TickReport | None = None) -> TickReport:
    report = report if report is not None else TickReport()
    with sessions() as session:
        due = repo.due_schedules(session, now)
    for schedule, project in due:
        try:
            run_id = _fire_or_skip(sessions, schedule, project, now, report)
        except Exception:  # e.g. a locked SQLite file: this schedule is retried on the next tick
            log.exception("job schedule %s of %s: firing failed", schedule.name, project)
            continue
        if run_id is not None:
            report.queued.append(run_id)
    return report


def _fire_or_skip(
    sessions: sessionmaker[Session], schedule: JobSchedule, project: str, now: datetime, report: TickReport
) -> str | None:
    try:
        return _fire(sessions, schedule, project, now)
    except IntegrityError:  # another scheduler queued this occurrence: only move next_run_at on
        report.duplicates += 1
        _advance_only(sessions, schedule, now)
        return None


def _fire(sessions: sessionmaker[Session], schedule: JobSchedule, project: str, now: datetime) -> str | None:
    """Queue the schedule's latest due occurrence and move next_run_at on, in one transaction."""
    expected = schedule.next_run_at
    assert expected is not None
    try:
        following = cron.next_after(schedule.cron, now)
        occurrence = cron.latest_at_or_before(schedule.cron, now)
    except (ValueError, KeyError) as exc:  # an expression croniter no longer accepts: never fire it again
        log.error("job schedule %s of %s: bad cron %r (%s); disabling it", schedule.name, project, schedule.cron, exc)
        with sessions() as session, session.begin():
            record(
                session,
                ACTOR,
                "job.schedule.update",
                f"project:{project}/job-schedule:{schedule.name}",
                project=project,
                summary=f"disabled: cron {schedule.cron!r} is not usable ({exc})",
            )
            target = session.get(JobSchedule, schedule.id)
            if target is not None:
                target.enabled, target.next_run_at = False, None
        return None
    with sessions() as session, session.begin():
        if not repo.advance_schedule(session, schedule.id, expected, following):
            return None  # another scheduler moved it on first, or a user changed the schedule meanwhile
        if occurrence < expected:
            return None  # next_run_at was not an occurrence of this expression: just realign it
        run = scheduled_run(schedule, occurrence)
        session.add(run)
        session.flush()  # raises IntegrityError here if this occurrence was already queued
        missed = "" if occurrence == expected else f" (coalesced missed occurrences since {expected.isoformat()})"
        record(
            session,
            ACTOR,
            "job.run.schedule",
            f"project:{project}/job-run:{run.id}",
            project=project,
            summary=f"schedule {schedule.name} queued {schedule.job_type} for {occurrence.isoformat()}{missed}",
            details={"schedule": schedule.name, "scheduled_for": occurrence.isoformat()},
        )
        return run.id


def _advance_only(sessions: sessionmaker[Session], schedule: JobSchedule, now: datetime) -> None:
    assert schedule.next_run_at is not None
    with sessions() as session, session.begin():
        repo.advance_schedule(session, schedule.id, schedule.next_run_at, cron.next_after(schedule.cron, now))
