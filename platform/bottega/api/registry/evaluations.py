"""Named evaluations of a version: the report training stores, computed later on other labelled data.

The version stays immutable: evaluations sit beside it, one per name. `training` is the version's own evaluation
(metrics, report and dataset summary from training), listed first, so a new evaluation reads side by side with it;
the model-wide list gives one name across versions (every version scored on the same labels).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.tables import Model, ModelVersion, ModelVersionEvaluation
from bottega.api.pages import Page, PageParams
from bottega.api.registry.schemas import (
    TRAINING_EVALUATION,
    EvaluationCreate,
    EvaluationRead,
    EvaluationSummary,
)
from bottega.api.registry.service import load_model, resolve_version, target
from bottega.core.errors import Conflict, NotFound


def _training(model: Model, version: ModelVersion) -> EvaluationRead:
    dataset = version.lineage.get("dataset") if isinstance(version.lineage, dict) else None
    return EvaluationRead(
        model=model.name,
        version=version.version,
        name=TRAINING_EVALUATION,
        metrics=dict(version.metrics),
        dataset=dict(dataset) if isinstance(dataset, dict) else {},
        description="the evaluation stored by training",
        created_by=version.created_by,
        created_at=version.created_at,
        evaluation=dict(version.evaluation),
    )


def _read(model: Model, version: ModelVersion, row: ModelVersionEvaluation) -> EvaluationRead:
    return EvaluationRead(
        model=model.name,
        version=version.version,
        name=row.name,
        metrics=dict(row.metrics),
        dataset=dict(row.dataset),
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        evaluation=dict(row.evaluation),
    )


def _summary(read: EvaluationRead) -> EvaluationSummary:
    return EvaluationSummary.model_validate(read.model_dump(exclude={"evaluation"}))


def _load(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, needed: Role
) -> tuple[Model, ModelVersion]:
    project = access.project_for(session, principal, project_name, needed)
    model = load_model(session, project, model_name)
    return model, resolve_version(session, model, ref)


def _row(session: Session, version: ModelVersion, name: str) -> ModelVersionEvaluation | None:
    query = select(ModelVersionEvaluation).where(
        ModelVersionEvaluation.version_id == version.id, ModelVersionEvaluation.name == name
    )
    return session.scalars(query).first()


def create(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, body: EvaluationCreate
) -> EvaluationRead:
    model, version = _load(session, principal, project_name, model_name, ref, Role.editor)
    if _row(session, version, body.name) is not None:
        raise Conflict(
            f"{model_name} v{version.version} already has an evaluation {body.name!r}: delete it first or choose "
            "another name"
        )
    row = ModelVersionEvaluation(
        version_id=version.id,
        name=body.name,
        metrics=dict(body.metrics),
        evaluation=body.evaluation,
        dataset=body.dataset,
        description=body.description,
        created_by=principal.user,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request stored the same name first
        raise Conflict(f"{model_name} v{version.version} already has an evaluation {body.name!r}") from exc
    record(
        session,
        principal,
        "model.evaluation.create",
        target(project_name, model_name, f"version:{version.version}", f"evaluation:{body.name}"),
        project=project_name,
        summary=f"evaluated {model_name} v{version.version} as {body.name}",
        details={"model": model_name, "version": version.version, "name": body.name, "metrics": body.metrics},
    )
    return _read(model, version, row)


def list_for_version(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str
) -> list[EvaluationSummary]:
    model, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    query = select(ModelVersionEvaluation).where(ModelVersionEvaluation.version_id == version.id)
    rows = session.scalars(query.order_by(ModelVersionEvaluation.created_at, ModelVersionEvaluation.name)).all()
    return [_summary(_training(model, version)), *(_summary(_read(model, version, r)) for r in rows)]


def get(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, name: str
) -> EvaluationRead:
    model, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    if name == TRAINING_EVALUATION:
        return _training(model, version)
    row = _row(session, version, name)
    if row is None:
        raise NotFound(f"{model_name} v{version.version} has no evaluation {name!r}")
    return _read(model, version, row)


def delete(session: Session, principal: Principal, project_name: str, model_name: str, ref: str, name: str) -> None:
    _, version = _load(session, principal, project_name, model_name, ref, Role.editor)
    row = _row(session, version, name)
    if row is None:
        raise NotFound(f"{model_name} v{version.version} has no evaluation {name!r}")
    session.delete(row)
    session.flush()
    record(
        session,
        principal,
        "model.evaluation.delete",
        target(project_name, model_name, f"version:{version.version}", f"evaluation:{name}"),
        project=project_name,
        summary=f"deleted evaluation {name} of {model_name} v{version.version}",
    )


def list_for_model(
    session: Session, principal: Principal, project_name: str, model_name: str, name: str | None, page: PageParams
) -> Page[EvaluationSummary]:
    """Evaluations across the model's versions, newest version first: every named one, or those called `name`
    (`training`: each version's own)."""
    project = access.project_for(session, principal, project_name, Role.viewer)
    model = load_model(session, project, model_name)
    if name == TRAINING_EVALUATION:
        versions = select(ModelVersion).where(ModelVersion.model_id == model.id)
        total = int(session.scalar(select(func.count()).select_from(versions.subquery())) or 0)
        found = session.scalars(versions.order_by(ModelVersion.version.desc()).limit(page.limit).offset(page.offset))
        return Page.of([_summary(_training(model, v)) for v in found], total, page)
    query = (
        select(ModelVersionEvaluation, ModelVersion)
        .join(ModelVersion, ModelVersion.id == ModelVersionEvaluation.version_id)
        .where(ModelVersion.model_id == model.id)
    )
    if name is not None:
        query = query.where(ModelVersionEvaluation.name == name)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    ordered = query.order_by(ModelVersion.version.desc(), ModelVersionEvaluation.name)
    rows = session.execute(ordered.limit(page.limit).offset(page.offset)).all()
    return Page.of([_summary(_read(model, version, row)) for row, version in rows], total, page)
