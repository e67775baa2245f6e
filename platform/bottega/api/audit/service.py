"""Write and read audit events. Every service that mutates state calls `record` in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bottega.api.auth.principal import Principal
from bottega.api.db.tables import AuditEvent, Membership, Project


def record(
    session: Session,
    actor: Principal | str,
    action: str,
    target: str,
    *,
    project: str | None = None,
    summary: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    user = actor.user if isinstance(actor, Principal) else actor
    event = AuditEvent(
        actor=user, action=action, target=target, project=project, summary=summary, details=details or {}
    )
    session.add(event)
    return event


def search(
    session: Session,
    principal: Principal,
    *,
    project: str | None,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[AuditEvent], int]:
    query = select(AuditEvent)
    if not principal.is_admin:
        visible = select(Project.name).join(Membership, Membership.project_id == Project.id)
        visible = visible.where(Membership.user == principal.user)
        if principal.project_id is not None:
            visible = visible.where(Project.id == principal.project_id)
        query = query.where(AuditEvent.project.in_(visible))
    if project is not None:
        query = query.where(AuditEvent.project == project)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action is not None:
        # "deployment." matches every deployment action; "deployment.update" exactly that one.
        matcher = AuditEvent.action.startswith(action) if action.endswith(".") else AuditEvent.action == action
        query = query.where(matcher)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all()
    return rows, total
