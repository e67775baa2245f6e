"""Deployments: a named, revisioned spec (online or batch). Every change appends an immutable revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bottega.api.db.base import Base, utcnow


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))  # "online" | "batch"
    revision: Mapped[int] = mapped_column(default=1)  # the current revision number
    active: Mapped[bool] = mapped_column(default=True)  # False once undeployed
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentRevision(Base):
    __tablename__ = "deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)  # also the global change sequence for watchers
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    rolled_back_from: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
