"""Queries for projects."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bottega.api.db.tables import Membership, Project


def by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def visible(
    session: Session, user: str | None, only_project: int | None, archived: bool | None, limit: int, offset: int
) -> tuple[Sequence[Project], int]:
    """Projects a user is a member of (all projects when `user` is None, for admins)."""
    query = select(Project)
    if user is not None:
        query = query.join(Membership, Membership.project_id == Project.id).where(Membership.user == user)
    if only_project is not None:
        query = query.where(Project.id == only_project)
    if archived is not None:
        query = query.where(Project.archived == archived)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    return session.scalars(query.order_by(Project.name).limit(limit).offset(offset)).all(), total
