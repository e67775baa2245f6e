"""Queries for job runs and schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Select, func, select, update
from sqlalchemy.orm import Session

from bottega.api.db.tables import JobRun, JobSchedule, Project


def run_in_project(session: Session, project_id: int, run_id: str) -> JobRun | None:
    query = select(JobRun).where(JobRun.id == run_id, JobRun.project_id == project_id)
    return session.scalar(query.execution_options(populate_existing=True))


def run_by_id(session: Session, run_id: str) -> JobRun | None:
    query = select(JobRun).where(JobRun.id == run_id)
    return session.scalar(query.execution_options(populate_existing=True))


def runs(
    session: Session,
    project_id: int,
    *,
    status: str | None,
    job_type: str | None,
    schedule_id: int | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[JobRun], int]:
    """Runs of a project, newest first."""
    query = select(JobRun).where(JobRun.project_id == project_id)
    if status is not None:
        query = query.where(JobRun.status == status)
    if job_type is not None:
        query = query.where(JobRun.job_type == job_type)
    if schedule_id is not None:
        query = query.where(JobRun.schedule_id == schedule_id)
    return _page(session, query, limit, offset)


def recent_runs(session: Session, schedule_id: int, limit: int) -> Sequence[JobRun]:
    query = select(JobRun).where(JobRun.schedule_id == schedule_id)
    return session.scalars(query.order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(limit)).all()


def _page(session: Session, query: Select[JobRun], limit: int, offset: int) -> tuple[Sequence[JobRun], int]:
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    ordered = query.order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(limit).offset(offset)
    return session.scalars(ordered).all(), total


def schedule_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(JobSchedule.id, JobSchedule.name).where(JobSchedule.id.in_(ids))).all()
    return {row.id: row.name for row in rows}


def project_name(session: Session, project_id: int) -> str:
    return str(session.scalar(select(Project.name).where(Project.id == project_id)))


def schedule_by_name(session: Session, project_id: int, name: str) -> JobSchedule | None:
    query = select(JobSchedule).where(JobSchedule.project_id == project_id, JobSchedule.name == name)
    return session.scalar(query.execution_options(populate_existing=True))


def schedules(
    session: Session, project_id: int, enabled: bool | None, limit: int, offset: int
) -> tuple[Sequence[JobSchedule], int]:
    query = select(JobSchedule).where(JobSchedule.project_id == project_id)
    if enabled is not None:
        query = query.where(JobSchedule.enabled == enabled)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(JobSchedule.name).limit(limit).offset(offset)).all()
    return rows, total


def due_schedules(session: Session, now: datetime) -> Sequence[tuple[JobSchedule, str]]:
    """Enabled schedules of active projects whose next occurrence has come, with their project's name."""
    query = (
        select(JobSchedule, Project.name)
        .join(Project, Project.id == JobSchedule.project_id)
        .where(JobSchedule.enabled.is_(True), JobSchedule.next_run_at <= now, Project.archived.is_(False))
        .order_by(JobSchedule.next_run_at, JobSchedule.id)
    )
    return [(row[0], row[1]) for row in session.execute(query).all()]


def claim_next(session: Session, job_types: list[str] | None, values: dict[str, Any]) -> str | None:
    """Atomically move the oldest queued run (of `job_types`) to running with `values`; its id, or None.

    PostgreSQL locks the candidate row with `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different runs.
    SQLite (one writer at a time) uses a conditional `UPDATE ... WHERE status = 'queued'` and checks the row count,
    moving on to the next candidate when another worker took this one first.
    """
    query = select(JobRun.id).where(JobRun.status == "queued")
    if job_types is not None:
        query = query.where(JobRun.job_type.in_(job_types))
    query = query.order_by(JobRun.created_at, JobRun.id)
    if session.get_bind().dialect.name == "postgresql":
        run_id = session.scalar(query.limit(1).with_for_update(skip_locked=True))
        candidates = [run_id] if run_id is not None else []
    else:
        candidates = list(session.scalars(query.limit(25)).all())
    for candidate in candidates:
        if conditional_update(session, candidate, {"status": "queued"}, values):
            return candidate
    return None


def conditional_update(session: Session, run_id: str, expected: dict[str, Any], values: dict[str, Any]) -> bool:
    """`UPDATE job_runs SET values WHERE id = run_id AND <column> = <expected value> ...`; True if a row changed.

    An expected value that is a tuple means `IN (...)`.
    """
    statement = update(JobRun).where(JobRun.id == run_id)
    for column, value in expected.items():
        attribute = getattr(JobRun, column)
        statement = statement.where(attribute.in_(value) if isinstance(value, tuple) else attribute == value)
    result = session.execute(statement.values(**values).execution_options(synchronize_session=False))
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def stale_runs(session: Session, cutoff: datetime) -> Sequence[JobRun]:
    """Running (or cancelling) runs whose last heartbeat is older than `cutoff`."""
    query = select(JobRun).where(JobRun.status.in_(("running", "cancelling")), JobRun.heartbeat_at < cutoff)
    return session.scalars(query.order_by(JobRun.heartbeat_at).execution_options(populate_existing=True)).all()


def advance_schedule(session: Session, schedule_id: int, expected: datetime, following: datetime) -> bool:
    """Move a schedule's next_run_at from `expected` to `following` (compare-and-set); True if this call did it."""
    statement = (
        update(JobSchedule)
        .where(JobSchedule.id == schedule_id, JobSchedule.next_run_at == expected, JobSchedule.enabled.is_(True))
        .values(next_run_at=following)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount == 1
