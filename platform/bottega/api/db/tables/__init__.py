"""Every ORM table, imported here so Alembic and tests see the whole metadata."""

from bottega.api.db.base import Base
from bottega.api.db.tables.audit import AuditEvent
from bottega.api.db.tables.auth import ApiKey, Membership
from bottega.api.db.tables.blobs import Blob
from bottega.api.db.tables.deployments import Deployment, DeploymentRevision
from bottega.api.db.tables.features import (
    Feature,
    FeatureEntity,
    FeatureGroup,
    FeatureGroupStats,
    FeatureGroupVersion,
    FeatureTag,
)
from bottega.api.db.tables.jobs import JobRun, JobSchedule
from bottega.api.db.tables.projects import Project
from bottega.api.db.tables.registry import (
    Model,
    ModelAlias,
    ModelVersion,
    ModelVersionArtifact,
    ModelVersionEvaluation,
)
from bottega.api.db.tables.runs import Run, RunArtifact, RunLatestMetric, RunMetric, RunParam, RunTag

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Blob",
    "Deployment",
    "DeploymentRevision",
    "Feature",
    "FeatureEntity",
    "FeatureGroup",
    "FeatureGroupStats",
    "FeatureGroupVersion",
    "FeatureTag",
    "JobRun",
    "JobSchedule",
    "Membership",
    "Model",
    "ModelAlias",
    "ModelVersion",
    "ModelVersionArtifact",
    "ModelVersionEvaluation",
    "Project",
    "Run",
    "RunArtifact",
    "RunLatestMetric",
    "RunMetric",
    "RunParam",
    "RunTag",
]
