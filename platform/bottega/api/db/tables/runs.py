"""Experiment tracking: runs with params, step-series metrics, tags and artifacts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bottega.api.db.base import BIGINT_PK, Base, utcnow


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), default=None)
    created_by: Mapped[str] = mapped_column(String(63))
    start_time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    end_time: Mapped[datetime | None] = mapped_column(default=None)
    description: Mapped[str] = mapped_column(Text, default="")


class RunParam(Base):
    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTag(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunMetric(Base):
    """One point of a metric's step series."""

    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    value: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)


class RunLatestMetric(Base):
    """The last logged value of each metric of a run (highest step, then latest time): for search and sort."""

    __tablename__ = "run_latest_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    value: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)


class RunArtifact(Base):
    """A file of a run: its path inside the run and the content-addressed blob holding its bytes."""

    __tablename__ = "run_artifacts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
