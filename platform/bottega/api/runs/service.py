"""Runs: lifecycle, params (immutable), step-series metrics, tags, search and comparison.

Viewers read, editors write, owners may also delete. Every mutation writes an audit event in the same transaction.
Artifacts (streamed bytes) live in `artifacts.py`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import Project, Run
from bottega.api.pages import Page, PageParams
from bottega.api.runs import repository as repo
from bottega.api.runs.filters import RunQuery, invalid
from bottega.api.runs.schemas import (
    COMPARE_MAX,
    COMPARE_MIN,
    RUN_ID_PATTERN,
    ArtifactRead,
    ArtifactsSummary,
    LatestMetric,
    MetricHistory,
    MetricPointRead,
    MetricRow,
    MetricsLog,
    MetricsLogged,
    ParamRow,
    RunBrief,
    RunComparison,
    RunCreate,
    RunRead,
    RunStatus,
    RunUpdate,
    param_text,
)
from bottega.core.errors import Conflict, InvalidInput, NotFound

_RUN_ID = re.compile(RUN_ID_PATTERN)
SUMMARY_ITEMS = 100
AUDITED_KEYS = 50


def target(project: str, run_id: str) -> str:
    return f"project:{project}/run:{run_id}"


def load(session: Session, principal: Principal, project: str, run_id: str, needed: Role) -> tuple[Project, Run]:
    """The project (with the caller's role checked) and its run, or NotFound."""
    proj = access.project_for(session, principal, project, needed)
    run = repo.run_in_project(session, proj.id, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist in project {project!r}")
    return proj, run


def _reads(session: Session, project: Project, runs: Sequence[Run], *, items: bool = False) -> list[RunRead]:
    ids = [run.id for run in runs]
    params, tags = repo.params_of(session, ids), repo.tags_of(session, ids)
    latest, totals = repo.latest_of(session, ids), repo.artifact_totals(session, ids)
    out = []
    for run in runs:
        count, size = totals.get(run.id, (0, 0))
        summary = ArtifactsSummary(count=count, total_size=size)
        if items and count:
            rows, _ = repo.artifacts(session, run.id, None, SUMMARY_ITEMS, 0)
            summary.items = [_artifact(row.path, row.sha256, row.size, row.created_at) for row in rows]
        metrics = {
            key: LatestMetric(value=m.value, step=m.step, timestamp=m.timestamp)
            for key, m in latest.get(run.id, {}).items()
        }
        out.append(
            RunRead(
                id=run.id,
                project=project.name,
                name=run.name,
                description=run.description,
                status=RunStatus(run.status),
                parent_run_id=run.parent_run_id,
                created_by=run.created_by,
                start_time=run.start_time,
                end_time=run.end_time,
                params=params.get(run.id, {}),
                tags=tags.get(run.id, {}),
                metrics=metrics,
                artifacts=summary,
            )
        )
    return out


def _read(session: Session, project: Project, run: Run) -> RunRead:
    return _reads(session, project, [run], items=True)[0]


def _artifact(path: str, sha256: str, size: int, created_at: datetime) -> ArtifactRead:
    return ArtifactRead(path=path, sha256=sha256, size=size, created_at=created_at)


def _keys(values: Sequence[str] | dict[str, Any]) -> list[str]:
    return sorted(values)[:AUDITED_KEYS]


def create(session: Session, principal: Principal, project: str, body: RunCreate) -> RunRead:
    proj = access.project_for(session, principal, project, Role.editor)
    if body.parent_run_id is not None and repo.run_in_project(session, proj.id, body.parent_run_id) is None:
        raise InvalidInput(
            f"parent run {body.parent_run_id} does not exist in project {project!r}",
            errors=[{"field": "body.parent_run_id", "message": "no such run in this project", "type": "value_error"}],
        )
    run = Run(
        id=uuid.uuid4().hex,
        project_id=proj.id,
        name=body.name,
        description=body.description,
        status=RunStatus.running.value,
        parent_run_id=body.parent_run_id,
        created_by=principal.user,
        start_time=utcnow(),
    )
    session.add(run)
    session.flush()
    repo.insert_params(session, run.id, {key: param_text(value) for key, value in body.params.items()})
    repo.upsert_tags(session, run.id, body.tags)
    record(
        session,
        principal,
        "run.create",
        target(project, run.id),
        project=project,
        summary=f"created run {run.name or run.id}",
        details={"run_id": run.id, "params": _keys(body.params), "tags": _keys(body.tags)},
    )
    return _read(session, proj, run)


def list_runs(session: Session, principal: Principal, project: str, query: RunQuery, page: PageParams) -> Page[RunRead]:
    proj = access.project_for(session, principal, project, Role.viewer)
    rows, total = repo.search(session, proj.id, query, page.limit, page.offset)
    return Page.of(_reads(session, proj, rows), total, page)


def get(session: Session, principal: Principal, project: str, run_id: str) -> RunRead:
    proj, run = load(session, principal, project, run_id, Role.viewer)
    return _read(session, proj, run)


def _transition(run: Run, new: RunStatus, now: datetime) -> None:
    old = RunStatus(run.status)
    if new is old:
        return
    if new is RunStatus.running:
        if old is RunStatus.finished:
            raise Conflict(f"run {run.id} is finished; a finished run cannot go back to running")
        run.end_time = None  # resuming a failed or killed run
    elif old is RunStatus.running:
        run.end_time = now
    run.status = new.value


def update(session: Session, principal: Principal, project: str, run_id: str, body: RunUpdate) -> RunRead:
    proj, run = load(session, principal, project, run_id, Role.editor)
    changes: dict[str, Any] = {}
    if body.name is not None and body.name != run.name:
        changes["name"] = body.name
        run.name = body.name
    if body.description is not None and body.description != run.description:
        changes["description"] = True
        run.description = body.description
    if body.status is not None and body.status.value != run.status:
        changes["status"] = {"from": run.status, "to": body.status.value}
        _transition(run, body.status, utcnow())
    if not changes:
        return _read(session, proj, run)
    session.flush()
    summary = f"status {run.status}" if "status" in changes else "updated"
    record(session, principal, "run.update", target(project, run_id), project=project, summary=summary, details=changes)
    return _read(session, proj, run)


def delete(session: Session, principal: Principal, project: str, run_id: str) -> None:
    _, run = load(session, principal, project, run_id, Role.owner)
    name = run.name or run.id
    session.delete(run)
    session.flush()
    record(session, principal, "run.delete", target(project, run_id), project=project, summary=f"deleted run {name}")


def _immutable(run_id: str, stored: dict[str, str], wanted: dict[str, str]) -> None:
    clashes = sorted(key for key, value in wanted.items() if key in stored and stored[key] != value)
    if clashes:
        described = ", ".join(f"{k!r} is {stored[k]!r}, not {wanted[k]!r}" for k in clashes[:10])
        raise Conflict(
            f"params are immutable: in run {run_id} {described}; log a different key or start a new run",
            keys=clashes,
        )


def log_params(session: Session, principal: Principal, project: str, run_id: str, values: dict[str, str]) -> RunRead:
    proj, run = load(session, principal, project, run_id, Role.editor)
    stored = repo.params(session, run.id, values)
    _immutable(run.id, stored, values)
    new = {key: value for key, value in values.items() if key not in stored}
    if new:
        repo.insert_params(session, run.id, new)
        _immutable(run.id, repo.params(session, run.id, new), new)  # a concurrent writer may have won the race
    record(
        session,
        principal,
        "run.params",
        target(project, run_id),
        project=project,
        summary=f"logged {len(new)} new params",
        details={"keys": _keys(values)},
    )
    return _read(session, proj, run)


def _utc(moment: datetime | None, default: datetime) -> datetime:
    if moment is None:
        return default
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def log_metrics(session: Session, principal: Principal, project: str, run_id: str, body: MetricsLog) -> MetricsLogged:
    _, run = load(session, principal, project, run_id, Role.editor)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for point in body.metrics:
        row = {
            "run_id": run.id,
            "key": point.key,
            "step": point.step,
            "value": point.value,
            "timestamp": _utc(point.timestamp, now),
        }
        rows.append(row)
        best = latest.get(point.key)
        if best is None or (row["step"], row["timestamp"]) >= (best["step"], best["timestamp"]):
            latest[point.key] = row
    repo.insert_metrics(session, rows)
    repo.upsert_latest(session, list(latest.values()))
    record(
        session,
        principal,
        "run.metrics",
        target(project, run_id),
        project=project,
        summary=f"logged {len(rows)} points of {len(latest)} metrics",
        details={"keys": _keys(latest), "points": len(rows)},
    )
    return MetricsLogged(logged=len(rows))


def metric_history(session: Session, principal: Principal, project: str, run_id: str, key: str) -> MetricHistory:
    _, run = load(session, principal, project, run_id, Role.viewer)
    points = [
        MetricPointRead(step=p.step, value=p.value, timestamp=p.timestamp)
        for p in repo.metric_series(session, run.id, key)
    ]
    return MetricHistory(key=key, points=points)


def put_tags(session: Session, principal: Principal, project: str, run_id: str, tags: dict[str, str]) -> RunRead:
    proj, run = load(session, principal, project, run_id, Role.editor)
    repo.upsert_tags(session, run.id, tags)
    record(
        session,
        principal,
        "run.tags.put",
        target(project, run_id),
        project=project,
        summary=f"set {len(tags)} tags",
        details={"keys": _keys(tags)},
    )
    return _read(session, proj, run)


def delete_tag(session: Session, principal: Principal, project: str, run_id: str, key: str) -> None:
    _, run = load(session, principal, project, run_id, Role.editor)
    if not repo.delete_tag(session, run.id, key):
        raise NotFound(f"run {run_id} has no tag {key!r}")
    record(session, principal, "run.tag.delete", target(project, run_id), project=project, summary=f"removed {key}")


def _compare_ids(raw: str) -> list[str]:
    ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    bad = [run_id for run_id in ids if not _is_run_id(run_id)]
    if bad:
        raise invalid("query.ids", f"{bad[0]!r} is not a run id (32 lowercase hex digits)")
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        raise invalid("query.ids", f"compare takes {COMPARE_MIN} to {COMPARE_MAX} distinct run ids, got {len(ids)}")
    return ids


def _is_run_id(text: str) -> bool:
    return _RUN_ID.match(text) is not None


def compare(session: Session, principal: Principal, project: str, raw_ids: str) -> RunComparison:
    ids = _compare_ids(raw_ids)
    proj = access.project_for(session, principal, project, Role.viewer)
    found = repo.runs_in_project(session, proj.id, ids)
    missing = [run_id for run_id in ids if run_id not in found]
    if missing:
        raise NotFound(f"runs {', '.join(missing)} do not exist in project {project!r}", missing=missing)
    params, latest = repo.params_of(session, ids), repo.latest_of(session, ids)
    param_rows = []
    for key in sorted({k for run_id in ids for k in params.get(run_id, {})}):
        values = [params.get(run_id, {}).get(key) for run_id in ids]
        param_rows.append(ParamRow(key=key, values=values, differs=len(set(values)) > 1))
    metric_rows = []
    for key in sorted({k for run_id in ids for k in latest.get(run_id, {})}):
        points = [latest.get(run_id, {}).get(key) for run_id in ids]
        numbers = [p.value if p is not None else None for p in points]
        metric_rows.append(MetricRow(key=key, values=numbers, differs=len(set(numbers)) > 1))
    runs = [
        RunBrief(
            id=run.id, name=run.name, status=RunStatus(run.status), start_time=run.start_time, end_time=run.end_time
        )
        for run in (found[run_id] for run_id in ids)
    ]
    return RunComparison(runs=runs, params=param_rows, metrics=metric_rows)
