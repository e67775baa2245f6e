"""Queries for API keys and memberships."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bottega.api.db.tables import ApiKey, Membership, Project


def key_by_key_id(session: Session, key_id: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))


def list_keys(session: Session, user: str | None) -> Sequence[tuple[ApiKey, str | None]]:
    query = select(ApiKey, Project.name).outerjoin(Project, Project.id == ApiKey.project_id).order_by(ApiKey.id)
    if user is not None:
        query = query.where(ApiKey.user == user)
    return [(key, project) for key, project in session.execute(query).all()]


def active_admin_keys(session: Session) -> int:
    query = select(func.count()).select_from(ApiKey).where(ApiKey.is_admin, ApiKey.revoked_at.is_(None))
    return int(session.scalar(query) or 0)


def membership(session: Session, project_id: int, user: str) -> Membership | None:
    return session.scalar(select(Membership).where(Membership.project_id == project_id, Membership.user == user))


def memberships(session: Session, project_id: int) -> Sequence[Membership]:
    return session.scalars(
        select(Membership).where(Membership.project_id == project_id).order_by(Membership.user)
    ).all()


def owners(session: Session, project_id: int) -> int:
    query = select(func.count()).select_from(Membership)
    query = query.where(Membership.project_id == project_id, Membership.role == "owner")
    return int(session.scalar(query) or 0)
