"""The feature catalog: entities, feature groups with immutable versions, the features of each group's current
version (for search), their effective tags, and the statistics the pipelines report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bottega.api.db.base import Base, utcnow


class FeatureEntity(Base):
    """What features describe, identified by typed join keys (`[[name, type], ...]`, in order)."""

    __tablename__ = "feature_entities"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    join_keys: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(63))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeatureGroup(Base):
    """A feature group; the columns after `version` repeat its current version's values, for search."""

    __tablename__ = "feature_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column()
    entity_id: Mapped[int] = mapped_column(ForeignKey("feature_entities.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(255), default="")
    online: Mapped[bool] = mapped_column(default=True)
    max_age_seconds: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(63))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeatureGroupVersion(Base):
    """One immutable version: the whole definition, the entity's join keys then, and how it differs from the last."""

    __tablename__ = "feature_group_versions"
    __table_args__ = (UniqueConstraint("group_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("feature_groups.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str] = mapped_column(String(63))
    entity_keys: Mapped[list[Any]] = mapped_column(default=list)
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    breaking: Mapped[bool] = mapped_column(default=False)
    changes: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feature(Base):
    """A feature of a group's current version (rewritten with each new version)."""

    __tablename__ = "features"

    group_id: Mapped[int] = mapped_column(ForeignKey("feature_groups.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column()
    dtype: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")


class FeatureTag(Base):
    """The effective tags of a feature: its group's tags overlaid with its own."""

    __tablename__ = "feature_tags"
    __table_args__ = (
        ForeignKeyConstraint(["group_id", "feature"], ["features.group_id", "features.name"], ondelete="CASCADE"),
    )

    group_id: Mapped[int] = mapped_column(primary_key=True)
    feature: Mapped[str] = mapped_column(String(63), primary_key=True)
    key: Mapped[str] = mapped_column(String(127), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FeatureGroupStats(Base):
    """The latest statistics the pipelines reported of a group (each value as last reported)."""

    __tablename__ = "feature_group_stats"

    group_id: Mapped[int] = mapped_column(ForeignKey("feature_groups.id", ondelete="CASCADE"), primary_key=True)
    rows_offline: Mapped[int | None] = mapped_column(BigInteger, default=None)
    rows_online: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_event_time: Mapped[datetime | None] = mapped_column(default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    freshness_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    reported_by: Mapped[str] = mapped_column(String(63))
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
