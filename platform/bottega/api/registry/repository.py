"""Queries of the model DB (models, versions, artifacts, aliases) and of the blobs a project may reference."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select, union
from sqlalchemy.orm import Session

from bottega.api.db.base import utcnow
from bottega.api.db.dialect import insert_ignore
from bottega.api.db.tables import (
    Blob,
    Deployment,
    DeploymentRevision,
    Model,
    ModelAlias,
    ModelVersion,
    ModelVersionArtifact,
    Run,
    RunArtifact,
)
from bottega.api.db.tables.registry import ProjectBlob

IN_CHUNK = 500  # bound the parameters of one IN (...) clause


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


# -- models ------------------------------------------------------------------------------------------------------


def model_by_name(session: Session, project_id: int, name: str) -> Model | None:
    return session.scalar(select(Model).where(Model.project_id == project_id, Model.name == name))


def models_page(
    session: Session, project_id: int, q: str | None, tags: list[tuple[str, str]], limit: int, offset: int
) -> tuple[Sequence[Model], int]:
    query = select(Model).where(Model.project_id == project_id)
    if q:
        query = query.where(Model.name.contains(q.lower(), autoescape=True))
    for key, value in tags:
        query = query.where(Model.tags[key].as_string() == value)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(Model.name).limit(limit).offset(offset)).all()
    return rows, total


def latest_versions(session: Session, model_ids: Sequence[int]) -> dict[int, int]:
    if not model_ids:
        return {}
    query = (
        select(ModelVersion.model_id, func.max(ModelVersion.version))
        .where(ModelVersion.model_id.in_(model_ids))
        .group_by(ModelVersion.model_id)
    )
    return {model_id: int(number) for model_id, number in session.execute(query).all()}


def aliases_by_model(session: Session, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {model_id: {} for model_id in model_ids}
    if not model_ids:
        return out
    query = (
        select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id.in_(model_ids))
        .order_by(ModelAlias.alias)
    )
    for model_id, alias, number in session.execute(query).all():
        out[model_id][alias] = int(number)
    return out


def alias_count(session: Session, model_id: int) -> int:
    return int(session.scalar(select(func.count()).where(ModelAlias.model_id == model_id)) or 0)


# -- versions ----------------------------------------------------------------------------------------------------


def version_by_number(session: Session, model_id: int, number: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == number))


def latest_version(session: Session, model_id: int) -> ModelVersion | None:
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    return session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))


def next_version_number(session: Session, model_id: int) -> int:
    current = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model_id))
    return int(current or 0) + 1


def versions_page(
    session: Session, model_id: int, limit: int, offset: int, newest_first: bool
) -> tuple[Sequence[ModelVersion], int]:
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    order = ModelVersion.version.desc() if newest_first else ModelVersion.version.asc()
    return session.scalars(query.order_by(order).limit(limit).offset(offset)).all(), total


def aliases_of_versions(session: Session, version_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {version_id: [] for version_id in version_ids}
    if not version_ids:
        return out
    query = select(ModelAlias.version_id, ModelAlias.alias).where(ModelAlias.version_id.in_(version_ids))
    for version_id, alias in session.execute(query.order_by(ModelAlias.alias)).all():
        out[version_id].append(alias)
    return out


def artifacts(session: Session, version_id: int) -> Sequence[ModelVersionArtifact]:
    query = select(ModelVersionArtifact).where(ModelVersionArtifact.version_id == version_id)
    return session.scalars(query.order_by(ModelVersionArtifact.path)).all()


def artifact(session: Session, version_id: int, path: str) -> ModelVersionArtifact | None:
    return session.get(ModelVersionArtifact, (version_id, path))


# -- aliases -----------------------------------------------------------------------------------------------------


def alias(session: Session, model_id: int, name: str) -> ModelAlias | None:
    return session.get(ModelAlias, (model_id, name))


def aliases(session: Session, model_id: int) -> list[tuple[ModelAlias, int]]:
    query = (
        select(ModelAlias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id == model_id)
        .order_by(ModelAlias.alias)
    )
    return [(row, int(number)) for row, number in session.execute(query).all()]


# -- runs (read only: the runs domain owns them) --------------------------------------------------------------------


def run_in_project(session: Session, run_id: str, project_id: int) -> Run | None:
    return session.scalar(select(Run).where(Run.id == run_id, Run.project_id == project_id))


def run_artifacts(session: Session, run_id: str) -> Sequence[RunArtifact]:
    return session.scalars(select(RunArtifact).where(RunArtifact.run_id == run_id).order_by(RunArtifact.path)).all()


# -- blobs -------------------------------------------------------------------------------------------------------


def grant_blob(session: Session, project_id: int, sha256: str, user: str) -> None:
    values = {"project_id": project_id, "sha256": sha256, "created_by": user, "created_at": utcnow()}
    insert_ignore(session, ProjectBlob.__table__, values)  # type: ignore[arg-type]


def blob_sizes(session: Session, shas: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(shas):
        for sha, size in session.execute(select(Blob.sha256, Blob.size).where(Blob.sha256.in_(chunk))).all():
            out[sha] = int(size)
    return out


def _accessible_query(project_id: int, chunk: Sequence[str]) -> Any:
    granted = select(ProjectBlob.sha256).where(ProjectBlob.project_id == project_id, ProjectBlob.sha256.in_(chunk))
    via_runs = (
        select(RunArtifact.sha256)
        .join(Run, Run.id == RunArtifact.run_id)
        .where(Run.project_id == project_id, RunArtifact.sha256.in_(chunk))
    )
    in_project: ColumnElement[bool] = Model.project_id == project_id
    via_versions = (
        select(ModelVersionArtifact.sha256)
        .join(ModelVersion, ModelVersion.id == ModelVersionArtifact.version_id)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(in_project, ModelVersionArtifact.sha256.in_(chunk))
    )
    return union(granted, via_runs, via_versions)


def accessible_blobs(session: Session, project_id: int, shas: Sequence[str]) -> set[str]:
    """The blobs among `shas` that the project may reference: uploaded to it, or used by its runs or versions."""
    out: set[str] = set()
    for chunk in _chunks(sorted(set(shas))):
        out.update(session.scalars(_accessible_query(project_id, chunk)).all())
    return out


def deployments_using(session: Session, project_id: int, model: str) -> list[str]:
    """Names of the project's active deployments whose current spec serves or shadows `model`."""
    rows = session.execute(
        select(Deployment.name, DeploymentRevision.spec)
        .join(DeploymentRevision, DeploymentRevision.deployment_id == Deployment.id)
        .where(
            Deployment.project_id == project_id, Deployment.active, DeploymentRevision.revision == Deployment.revision
        )
    ).all()
    names = []
    for name, spec in rows:
        refs = [*spec.get("targets", []), *spec.get("shadows", [])] if "targets" in spec else [spec]
        if any(ref.get("model") == model for ref in refs):
            names.append(name)
    return sorted(names)
