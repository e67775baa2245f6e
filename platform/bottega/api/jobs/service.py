"""Job runs and schedules as users see them. Viewers read; editors submit, cancel and schedule; owners delete
schedules. The worker protocol (claim, heartbeat, complete) lives in dispatch.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import JobRun, JobSchedule, Project
from bottega.api.jobs import cron
from bottega.api.jobs import repository as repo
from bottega.api.jobs.schemas import (
    TERMINAL_STATUSES,
    JobRunCreate,
    JobRunRead,
    JobRunSummary,
    JobScheduleCreate,
    JobScheduleRead,
    JobScheduleUpdate,
    JobTypeRead,
)
from bottega.api.jobs.types import JobTypeRegistry
from bottega.api.pages import Page, PageParams
from bottega.core.errors import Conflict, NotFound

RECENT_RUNS = 10


def new_run_id() -> str:
    return uuid.uuid4().hex


def summary(run: JobRun, project: str, schedule: str | None) -> JobRunSummary:
    return JobRunSummary(
        id=run.id,
        project=project,
        job_type=run.job_type,
        params=run.params,
        status=run.status,
        cancel_requested=run.status == "cancelling",
        schedule=schedule,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        worker=run.worker,
        created_by=run.created_by,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        heartbeat_at=run.heartbeat_at,
        error=run.error,
    )


def run_read(session: Session, run: JobRun, project: str) -> JobRunRead:
    schedule = repo.schedule_names(session, {run.schedule_id}).get(run.schedule_id) if run.schedule_id else None
    base = summary(run, project, schedule).model_dump()
    return JobRunRead(**base, log_tail=run.log_tail, result=run.result)


def _summaries(session: Session, rows: Sequence[JobRun], project: str) -> list[JobRunSummary]:
    names = repo.schedule_names(session, {r.schedule_id for r in rows if r.schedule_id is not None})
    return [summary(r, project, names.get(r.schedule_id) if r.schedule_id else None) for r in rows]


def _run_target(project: str, run_id: str) -> str:
    return f"project:{project}/job-run:{run_id}"


def _schedule_target(project: str, name: str) -> str:
    return f"project:{project}/job-schedule:{name}"


def job_types(registry: JobTypeRegistry) -> list[JobTypeRead]:
    return [job_type.read() for job_type in registry.all()]


def submit(
    session: Session, principal: Principal, registry: JobTypeRegistry, name: str, body: JobRunCreate
) -> JobRunRead:
    project = access.project_for(session, principal, name, Role.editor)
    params = registry.validate(body.job_type, body.params)
    run = JobRun(
        id=new_run_id(),
        project_id=project.id,
        job_type=body.job_type,
        params=params,
        status="queued",
        attempt=0,
        created_by=principal.user,
        created_at=utcnow(),
        log_tail="",
        result={},
        error="",
    )
    session.add(run)
    session.flush()
    record(
        session,
        principal,
        "job.run.submit",
        _run_target(name, run.id),
        project=name,
        summary=f"queued {body.job_type} run {run.id}",
        details={"job_type": body.job_type},
    )
    return run_read(session, run, name)


def list_runs(
    session: Session,
    principal: Principal,
    name: str,
    *,
    status: str | None,
    job_type: str | None,
    schedule: str | None,
    page: PageParams,
) -> Page[JobRunSummary]:
    project = access.project_for(session, principal, name, Role.viewer)
    schedule_id: int | None = None
    if schedule is not None:
        found = repo.schedule_by_name(session, project.id, schedule)
        if found is None:
            return Page.of([], 0, page)
        schedule_id = found.id
    rows, total = repo.runs(
        session,
        project.id,
        status=status,
        job_type=job_type,
        schedule_id=schedule_id,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of(_summaries(session, rows, name), total, page)


def _run(session: Session, project: Project, run_id: str) -> JobRun:
    run = repo.run_in_project(session, project.id, run_id)
    if run is None:
        raise NotFound(f"job run {run_id!r} does not exist in project {project.name!r}")
    return run


def get_run(session: Session, principal: Principal, name: str, run_id: str) -> JobRunRead:
    project = access.project_for(session, principal, name, Role.viewer)
    return run_read(session, _run(session, project, run_id), name)


def cancel(session: Session, principal: Principal, name: str, run_id: str) -> JobRunRead:
    """Queued: cancelled at once. Running: cancel requested (the worker stops it). Finished: 409."""
    project = access.project_for(session, principal, name, Role.editor)
    for _ in range(5):  # a worker may claim or finish the run between our read and our write
        run = _run(session, project, run_id)
        if run.status in TERMINAL_STATUSES:
            raise Conflict(f"job run {run_id} already finished ({run.status}); there is nothing to cancel")
        if run.status == "cancelling":
            return run_read(session, run, name)
        now = utcnow()
        if run.status == "queued":
            values: dict[str, Any] = {"status": "cancelled", "finished_at": now, "error": "cancelled before it ran"}
            summary_text = f"cancelled queued run {run_id}"
        else:
            values = {"status": "cancelling"}
            summary_text = f"asked the worker to stop run {run_id}"
        if repo.conditional_update(session, run_id, {"status": run.status}, values):
            record(session, principal, "job.run.cancel", _run_target(name, run_id), project=name, summary=summary_text)
            return run_read(session, _run(session, project, run_id), name)
    raise Conflict(f"job run {run_id} keeps changing; try the cancel again")


# Schedules ----------------------------------------------------------------------------------------------------------


def _schedule_read(schedule: JobSchedule, project: str, recent: list[JobRunSummary] | None = None) -> JobScheduleRead:
    return JobScheduleRead(
        name=schedule.name,
        project=project,
        job_type=schedule.job_type,
        params=schedule.params,
        cron=schedule.cron,
        enabled=schedule.enabled,
        next_run_at=schedule.next_run_at,
        created_by=schedule.created_by,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        recent_runs=recent or [],
    )


def _schedule(session: Session, project: Project, name: str) -> JobSchedule:
    schedule = repo.schedule_by_name(session, project.id, name)
    if schedule is None:
        raise NotFound(f"job schedule {name!r} does not exist in project {project.name!r}")
    return schedule


def create_schedule(
    session: Session, principal: Principal, registry: JobTypeRegistry, name: str, body: JobScheduleCreate
) -> JobScheduleRead:
    project = access.project_for(session, principal, name, Role.editor)
    now = utcnow()
    expression = cron.validate(body.cron, now)
    params = registry.validate(body.job_type, body.params)
    if repo.schedule_by_name(session, project.id, body.name) is not None:
        raise Conflict(f"job schedule {body.name!r} already exists in project {name!r}")
    schedule = JobSchedule(
        project_id=project.id,
        name=body.name,
        job_type=body.job_type,
        params=params,
        cron=expression,
        enabled=body.enabled,
        next_run_at=cron.next_after(expression, now) if body.enabled else None,
        created_by=principal.user,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    session.flush()
    record(
        session,
        principal,
        "job.schedule.create",
        _schedule_target(name, body.name),
        project=name,
        summary=f"scheduled {body.job_type} at {expression!r}" + ("" if body.enabled else " (disabled)"),
        details={"job_type": body.job_type, "cron": expression, "enabled": body.enabled},
    )
    return _schedule_read(schedule, name)


def list_schedules(
    session: Session, principal: Principal, name: str, enabled: bool | None, page: PageParams
) -> Page[JobScheduleRead]:
    project = access.project_for(session, principal, name, Role.viewer)
    rows, total = repo.schedules(session, project.id, enabled, page.limit, page.offset)
    return Page.of([_schedule_read(s, name) for s in rows], total, page)


def get_schedule(session: Session, principal: Principal, name: str, schedule_name: str) -> JobScheduleRead:
    project = access.project_for(session, principal, name, Role.viewer)
    schedule = _schedule(session, project, schedule_name)
    recent = _summaries(session, repo.recent_runs(session, schedule.id, RECENT_RUNS), name)
    return _schedule_read(schedule, name, recent)


def update_schedule(
    session: Session,
    principal: Principal,
    registry: JobTypeRegistry,
    name: str,
    schedule_name: str,
    body: JobScheduleUpdate,
) -> JobScheduleRead:
    """Change cron, params or enabled. next_run_at is recomputed from now when the cron changes or the schedule
    is (re-)enabled: occurrences missed while it was paused are not caught up."""
    project = access.project_for(session, principal, name, Role.editor)
    schedule = _schedule(session, project, schedule_name)
    now = utcnow()
    changed: list[str] = []
    if body.cron is not None:
        expression = cron.validate(body.cron, now)
        if expression != schedule.cron:
            schedule.cron = expression
            changed.append("cron")
    if body.params is not None:
        schedule.params = registry.validate(schedule.job_type, body.params)
        changed.append("params")
    was_enabled = schedule.enabled
    if body.enabled is not None and body.enabled != schedule.enabled:
        schedule.enabled = body.enabled
        changed.append("enabled")
    if not schedule.enabled:
        schedule.next_run_at = None
    elif not was_enabled or "cron" in changed or schedule.next_run_at is None:
        schedule.next_run_at = cron.next_after(schedule.cron, now)
    schedule.updated_at = now
    session.flush()
    record(
        session,
        principal,
        "job.schedule.update",
        _schedule_target(name, schedule_name),
        project=name,
        summary=f"updated {', '.join(changed) or 'nothing'}",
        details={"changed": changed, "cron": schedule.cron, "enabled": schedule.enabled},
    )
    recent = _summaries(session, repo.recent_runs(session, schedule.id, RECENT_RUNS), name)
    return _schedule_read(schedule, name, recent)


def delete_schedule(session: Session, principal: Principal, name: str, schedule_name: str) -> None:
    """Delete a schedule (owners). Its past runs stay, detached from it; queued ones still run."""
    project = access.project_for(session, principal, name, Role.owner)
    schedule = _schedule(session, project, schedule_name)
    session.delete(schedule)
    record(
        session,
        principal,
        "job.schedule.delete",
        _schedule_target(name, schedule_name),
        project=name,
        summary=f"deleted schedule {schedule_name}",
    )


def scheduled_run(schedule: JobSchedule, occurrence: datetime) -> JobRun:
    """The run a schedule queues for one occurrence."""
    return JobRun(
        id=new_run_id(),
        project_id=schedule.project_id,
        job_type=schedule.job_type,
        params=dict(schedule.params),
        schedule_id=schedule.id,
        scheduled_for=occurrence,
        status="queued",
        attempt=0,
        created_by=schedule.created_by,
        created_at=utcnow(),
        log_tail="",
        result={},
        error="",
    )
