"""Queries for deployments, their revisions, the change feed, and the registry rows a spec names."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Select, func, select, text, update
from sqlalchemy.orm import Session

from bottega.api.db.tables import (
    Deployment,
    DeploymentRevision,
    JobSchedule,
    Membership,
    Model,
    ModelAlias,
    ModelVersion,
    Project,
)
from bottega.api.jobs import cron
from bottega.core.names import BATCH_SCORE_JOB

LATEST = "latest"
BATCH_JOB_TYPE = BATCH_SCORE_JOB
SCHEDULE_PREFIX = "deployment."
SCHEDULE_NAME_MAX = 63
Change = tuple[DeploymentRevision, Deployment, str]


def by_name(session: Session, project_id: int, name: str) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.project_id == project_id, Deployment.name == name))


def revision(session: Session, deployment_id: int, number: int) -> DeploymentRevision | None:
    return session.scalar(
        select(DeploymentRevision).where(
            DeploymentRevision.deployment_id == deployment_id, DeploymentRevision.revision == number
        )
    )


def listing(
    session: Session, project_id: int, kind: str | None, include_undeployed: bool, limit: int, offset: int
) -> tuple[Sequence[tuple[Deployment, DeploymentRevision]], int]:
    """Deployments of a project with their current revision, by name."""
    query = (
        select(Deployment, DeploymentRevision)
        .join(
            DeploymentRevision,
            (DeploymentRevision.deployment_id == Deployment.id) & (DeploymentRevision.revision == Deployment.revision),
        )
        .where(Deployment.project_id == project_id)
    )
    if kind is not None:
        query = query.where(Deployment.kind == kind)
    if not include_undeployed:
        query = query.where(Deployment.active.is_(True))
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.execute(query.order_by(Deployment.name).limit(limit).offset(offset)).tuples().all()
    return rows, total


def history(session: Session, deployment_id: int, limit: int, offset: int) -> tuple[Sequence[DeploymentRevision], int]:
    query = select(DeploymentRevision).where(DeploymentRevision.deployment_id == deployment_id)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(DeploymentRevision.revision.desc()).limit(limit).offset(offset)).all()
    return rows, total


def advance(session: Session, deployment_id: int, expected: int, active: bool, now: datetime) -> bool:
    """Move a deployment from revision `expected` to `expected + 1`; False when another change got there first.

    The conditional UPDATE is the concurrency guard on both backends: PostgreSQL re-checks the WHERE clause after
    a concurrent writer commits, and SQLite serializes writers, so of two changes based on the same revision
    exactly one matches a row.
    """
    statement = (
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.revision == expected)
        .values(revision=expected + 1, active=active, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return int(result.rowcount) == 1


def current_revision_number(session: Session, deployment_id: int) -> int:
    return int(session.scalar(select(Deployment.revision).where(Deployment.id == deployment_id)) or 0)


def lock_change_sequence(session: Session) -> None:
    """Make revision ids commit in increasing order, so a watcher that has seen id N never misses an id below N.

    PostgreSQL hands out ids when rows are inserted, not when transactions commit; writers of revisions therefore
    take this lock (it still lets readers through) until they commit. SQLite already has one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE deployment_revisions IN EXCLUSIVE MODE"))


# The job schedule of a batch deployment (the jobs tables are the contract, as the registry's are).


def schedule_name(deployment: str) -> str:
    """The name of a batch deployment's job schedule: `deployment.<name>`, shortened with a hash when too long."""
    name = SCHEDULE_PREFIX + deployment
    if len(name) <= SCHEDULE_NAME_MAX:
        return name
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:8]
    keep = SCHEDULE_NAME_MAX - len(SCHEDULE_PREFIX) - len(digest) - 1
    return f"{SCHEDULE_PREFIX}{deployment[:keep]}.{digest}"


def job_schedule(session: Session, project_id: int, name: str) -> JobSchedule | None:
    query = select(JobSchedule).where(JobSchedule.project_id == project_id, JobSchedule.name == name)
    return session.scalar(query)


def upsert_batch_schedule(
    session: Session,
    project_id: int,
    name: str,
    params: dict[str, Any],
    expression: str,
    *,
    active: bool,
    user: str,
    now: datetime,
) -> str | None:
    """Make the schedule `name` fire `serving.batch_score` with `params` on `expression` while `active`, and not
    fire while inactive. Returns "created", "updated" or None (nothing to change)."""
    row = job_schedule(session, project_id, name)
    if row is None:
        if not active:
            return None
        row = JobSchedule(
            project_id=project_id,
            name=name,
            job_type=BATCH_JOB_TYPE,
            params=params,
            cron=expression,
            enabled=True,
            next_run_at=cron.next_after(expression, now),
            created_by=user,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return "created"
    changed = row.cron != expression or row.enabled != active
    if not active:
        row.next_run_at = None
    elif changed or row.next_run_at is None:  # occurrences missed while paused are not caught up
        row.next_run_at = cron.next_after(expression, now)
    row.cron, row.enabled = expression, active
    if not changed:
        return None
    row.updated_at = now
    session.flush()
    return "updated"


# The registry, read directly (its tables are the contract; its service belongs to another domain).


def model_id(session: Session, project_id: int, name: str) -> int | None:
    return session.scalar(select(Model.id).where(Model.project_id == project_id, Model.name == name))


def version_exists(session: Session, model: int, version: int) -> bool:
    found = session.scalar(
        select(ModelVersion.id).where(ModelVersion.model_id == model, ModelVersion.version == version)
    )
    return found is not None


def alias_version(session: Session, model: int, alias: str) -> int | None:
    """The version an alias points at; `latest` is reserved by the registry for the highest version."""
    if alias == LATEST:
        return session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model))
    return session.scalar(
        select(ModelVersion.version)
        .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
        .where(ModelAlias.model_id == model, ModelAlias.alias == alias)
    )


# The change feed of the watch endpoint.


def visible_projects(session: Session, user: str | None, only_project: int | None) -> Select[int] | None:
    """The ids of projects a caller may watch as a subquery, or None for every project (admins)."""
    if user is None and only_project is None:
        return None
    query = select(Project.id)
    if user is not None:
        query = query.join(Membership, Membership.project_id == Project.id).where(Membership.user == user)
    if only_project is not None:
        query = query.where(Project.id == only_project)
    return query


def _scope(projects: Select[int] | None) -> list[ColumnElement[bool]]:
    return [] if projects is None else [Deployment.project_id.in_(projects)]


def changes_since(session: Session, since: int, projects: Select[int] | None, limit: int) -> Sequence[Change]:
    query = (
        select(DeploymentRevision, Deployment, Project.name)
        .join(Deployment, Deployment.id == DeploymentRevision.deployment_id)
        .join(Project, Project.id == Deployment.project_id)
        .where(DeploymentRevision.id > since, *_scope(projects))
        .order_by(DeploymentRevision.id)
        .limit(limit)
    )
    return session.execute(query).tuples().all()


def snapshot(session: Session, projects: Select[int] | None) -> Sequence[Change]:
    """The current revision of every active deployment in scope."""
    query = (
        select(DeploymentRevision, Deployment, Project.name)
        .join(
            Deployment,
            (Deployment.id == DeploymentRevision.deployment_id) & (DeploymentRevision.revision == Deployment.revision),
        )
        .join(Project, Project.id == Deployment.project_id)
        .where(Deployment.active.is_(True), *_scope(projects))
        .order_by(DeploymentRevision.id)
    )
    return session.execute(query).tuples().all()


def max_sequence(session: Session, projects: Select[int] | None = None) -> int:
    query: Select[Any] = select(func.max(DeploymentRevision.id))
    if projects is not None:
        query = query.join(Deployment, Deployment.id == DeploymentRevision.deployment_id).where(*_scope(projects))
    return int(session.scalar(query) or 0)
