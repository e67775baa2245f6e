"""The worker protocol: claim a queued run, heartbeat while it runs, complete it; and recover runs of lost workers.

Used over HTTP by `bottega worker` and in-process by the embedded worker (same functions). Only admin keys may
claim, heartbeat and complete: a dedicated worker key is made with `bottega keys create --admin`.

A run belongs to one (worker, attempt) at a time: heartbeat and complete name both, and a run that was re-queued
(its worker stopped heartbeating) and claimed again answers 409 to the old worker, which then abandons it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal
from bottega.api.db.base import utcnow
from bottega.api.db.tables import JobRun
from bottega.api.jobs import repository as repo
from bottega.api.jobs.runtime import JobsSettings
from bottega.api.jobs.schemas import (
    ACTIVE_STATUSES,
    ERROR_MAX_CHARS,
    ClaimedRun,
    ClaimRequest,
    CompleteRequest,
    HeartbeatReply,
    HeartbeatRequest,
    JobRunRead,
    clip_log_tail,
)
from bottega.api.jobs.service import run_read
from bottega.core.errors import Conflict, Forbidden, NotFound

SYSTEM_ACTOR = "system:jobs"
log = logging.getLogger("bottega.jobs")


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("only admin keys may run jobs; make a worker key with `bottega keys create --admin`")


def _target(project: str, run_id: str) -> str:
    return f"project:{project}/job-run:{run_id}"


def claim(session: Session, principal: Principal, body: ClaimRequest, settings: JobsSettings) -> ClaimedRun | None:
    """The oldest queued run of `body.job_types`, moved to running for `body.worker`; None when there is none."""
    _require_admin(principal)
    if body.job_types is not None and not body.job_types:
        return None
    now = utcnow()
    values: dict[str, Any] = {
        "status": "running",
        "worker": body.worker,
        "attempt": JobRun.attempt + 1,
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
        "log_tail": "",
        "error": "",
        "result": {},
    }
    run_id = repo.claim_next(session, body.job_types, values)
    if run_id is None:
        return None
    run = repo.run_by_id(session, run_id)
    assert run is not None
    project = repo.project_name(session, run.project_id)
    schedule = repo.schedule_names(session, {run.schedule_id}).get(run.schedule_id) if run.schedule_id else None
    record(
        session,
        principal,
        "job.run.claim",
        _target(project, run.id),
        project=project,
        summary=f"{body.worker} started attempt {run.attempt} of {run.job_type}",
        details={"worker": body.worker, "attempt": run.attempt},
    )
    return ClaimedRun(
        id=run.id,
        project=project,
        job_type=run.job_type,
        params=run.params,
        attempt=run.attempt,
        worker=body.worker,
        schedule=schedule,
        scheduled_for=run.scheduled_for,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
    )


def _owned_run(session: Session, run_id: str, worker: str, attempt: int) -> JobRun:
    """The run if `worker` still holds `attempt` of it; NotFound or Conflict (the worker should abandon it)."""
    run = repo.run_by_id(session, run_id)
    if run is None:
        raise NotFound(f"job run {run_id!r} does not exist")
    if run.status not in ACTIVE_STATUSES:
        raise Conflict(f"job run {run_id} is {run.status}, not running; abandon it")
    if run.worker != worker or run.attempt != attempt:
        raise Conflict(
            f"attempt {attempt} of job run {run_id} is no longer {worker}'s (now {run.worker}, attempt "
            f"{run.attempt}); abandon it"
        )
    return run


def heartbeat(session: Session, principal: Principal, run_id: str, body: HeartbeatRequest) -> HeartbeatReply:
    """Record that the worker is alive (and its log tail); tells it whether a cancel was requested.

    Heartbeats are liveness pings, not changes of state, so they write no audit event.
    """
    _require_admin(principal)
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if body.log_tail is not None:
        values["log_tail"] = clip_log_tail(body.log_tail)
    expected = {"status": ACTIVE_STATUSES, "worker": body.worker, "attempt": body.attempt}
    if not repo.conditional_update(session, run_id, expected, values):
        _owned_run(session, run_id, body.worker, body.attempt)  # raises the reason
    run = _owned_run(session, run_id, body.worker, body.attempt)
    return HeartbeatReply(status=run.status, cancel_requested=run.status == "cancelling")


def complete(session: Session, principal: Principal, run_id: str, body: CompleteRequest) -> JobRunRead:
    """Finish a run: succeeded, failed or cancelled; or `queued` to hand it back (a worker shutting down).

    A run handed back after a cancel was requested is cancelled instead.
    """
    _require_admin(principal)
    for _ in range(5):  # a cancel request may land between our read and our write
        run = _owned_run(session, run_id, body.worker, body.attempt)
        now = utcnow()
        status = "cancelled" if body.status == "queued" and run.status == "cancelling" else body.status
        values: dict[str, Any] = {
            "status": status,
            "log_tail": clip_log_tail(body.log_tail),
            "heartbeat_at": now,
        }
        if status == "queued":
            values.update(worker=None, started_at=None, heartbeat_at=None, error="")
        else:
            values.update(finished_at=now, result=body.result, error=body.error[-ERROR_MAX_CHARS:])
        expected = {"status": run.status, "worker": body.worker, "attempt": body.attempt}
        if repo.conditional_update(session, run_id, expected, values):
            project = repo.project_name(session, run.project_id)
            action = "job.run.release" if status == "queued" else "job.run.complete"
            text = f"{body.worker} handed attempt {body.attempt} back" if status == "queued" else status
            record(
                session,
                principal,
                action,
                _target(project, run_id),
                project=project,
                summary=text,
                details={"worker": body.worker, "attempt": body.attempt, "status": status},
            )
            finished = repo.run_by_id(session, run_id)
            assert finished is not None
            return run_read(session, finished, project)
    raise Conflict(f"job run {run_id} keeps changing; try again")


def reap_stale(session: Session, now: datetime, settings: JobsSettings) -> list[str]:
    """Runs whose worker stopped heartbeating: re-queued (the next claim is attempt+1), or failed once they have
    had `max_attempts` attempts; a run whose cancel was requested is cancelled. Returns the ids it changed."""
    cutoff = now - timedelta(seconds=settings.heartbeat_timeout_s)
    changed: list[str] = []
    for run in repo.stale_runs(session, cutoff):
        lost = f"worker {run.worker} stopped heartbeating (attempt {run.attempt})"
        if run.status == "cancelling":
            values: dict[str, Any] = {"status": "cancelled", "finished_at": now, "error": lost + "; cancelled"}
            action, text = "job.run.cancel", f"{lost}; cancelled as requested"
        elif run.attempt >= settings.max_attempts:
            values = {"status": "failed", "finished_at": now, "error": f"{lost}; gave up after {run.attempt} attempts"}
            action, text = "job.run.fail", values["error"]
        else:
            values = {"status": "queued", "worker": None, "started_at": None, "heartbeat_at": None, "error": lost}
            action, text = "job.run.requeue", f"{lost}; re-queued"
        expected = {"status": run.status, "heartbeat_at": run.heartbeat_at, "attempt": run.attempt}
        if repo.conditional_update(session, run.id, expected, values):
            project = repo.project_name(session, run.project_id)
            record(session, SYSTEM_ACTOR, action, _target(project, run.id), project=project, summary=text)
            log.warning("job run %s: %s", run.id, text)
            changed.append(run.id)
    return changed
