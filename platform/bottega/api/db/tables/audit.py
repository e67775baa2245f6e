"""The audit trail: one row per mutation (who, what, on which target, in which project, when)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bottega.api.db.base import Base, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(63), index=True)
    action: Mapped[str] = mapped_column(String(63), index=True)
    target: Mapped[str] = mapped_column(String(255))
    project: Mapped[str | None] = mapped_column(String(63), index=True, default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
