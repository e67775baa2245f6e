"""Entities of the feature catalog: what features describe, identified by typed join keys (in order).

Viewers read, editors create and update, owners delete. The join keys of an entity cannot change (nor can it be
deleted) while a feature group is about it. Every change writes an audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import FeatureEntity, Project
from bottega.api.features import repository as repo
from bottega.api.features.schemas import EntityKeys, EntityPut, EntityRead, EntityWritten, Outcome, ValueType
from bottega.api.pages import Page, PageParams
from bottega.core.errors import Conflict, InvalidInput, NotFound


def entity_target(project: str, name: str) -> str:
    return f"project:{project}/feature-entity:{name}"


def field_error(field: str, message: str) -> InvalidInput:
    """A 422 naming one field, shaped like FastAPI's own validation errors."""
    return InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message, "type": "value_error"}])


def keys_of(entity: FeatureEntity) -> dict[str, ValueType]:
    return {str(name): ValueType(dtype) for name, dtype in entity.join_keys}


def entity_keys(entity: FeatureEntity) -> EntityKeys:
    return EntityKeys(name=entity.name, join_keys=keys_of(entity))


def _entity_reads(session: Session, rows: Sequence[FeatureEntity]) -> list[EntityRead]:
    users = repo.groups_of_entities(session, [e.id for e in rows])
    return [
        EntityRead(
            name=e.name,
            join_keys=keys_of(e),
            description=e.description,
            groups=users.get(e.id, []),
            created_by=e.created_by,
            created_at=e.created_at,
            updated_by=e.updated_by,
            updated_at=e.updated_at,
        )
        for e in rows
    ]


def flush(session: Session, what: str) -> None:
    """Flush, turning a unique-constraint race with a concurrent writer into a Conflict the caller can retry."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} was changed by a concurrent request; retry") from exc


def put_in(
    session: Session, principal: Principal, project: Project, name: str, body: EntityPut
) -> tuple[FeatureEntity, Outcome]:
    """Create or update an entity in a project the caller may write; what happened is the outcome."""
    keys = [[key, dtype.value] for key, dtype in body.join_keys.items()]
    now = utcnow()
    entity = repo.entity(session, project.id, name)
    if entity is None:
        entity = FeatureEntity(
            project_id=project.id,
            name=name,
            join_keys=keys,
            description=body.description,
            created_by=principal.user,
            created_at=now,
            updated_by=principal.user,
            updated_at=now,
        )
        session.add(entity)
        flush(session, f"entity {name!r}")
        details: dict[str, Any] = {"created": True, "join_keys": dict(keys)}
        summary = f"created entity {name}"
        outcome: Outcome = "created"
    else:
        changed = []
        if [list(pair) for pair in entity.join_keys] != keys:
            users = repo.groups_of_entities(session, [entity.id]).get(entity.id, [])
            if users:
                raise Conflict(
                    f"entity {name!r} is used by feature groups {', '.join(users)}: its join keys cannot change "
                    "(register the groups on a new entity first)",
                    groups=users,
                )
            entity.join_keys = keys
            changed.append("join_keys")
        if entity.description != body.description:
            entity.description = body.description
            changed.append("description")
        if not changed:
            return entity, "unchanged"
        entity.updated_by, entity.updated_at = principal.user, now
        flush(session, f"entity {name!r}")
        details = {"created": False, "changed": changed, "join_keys": dict(keys)}
        summary, outcome = f"updated entity {name} ({', '.join(changed)})", "updated"
    record(
        session,
        principal,
        "feature.entity.put",
        entity_target(project.name, name),
        project=project.name,
        summary=summary,
        details=details,
    )
    return entity, outcome


def put_entity(session: Session, principal: Principal, project: str, name: str, body: EntityPut) -> EntityWritten:
    proj = access.project_for(session, principal, project, Role.editor)
    entity, outcome = put_in(session, principal, proj, name, body)
    read = _entity_reads(session, [entity])[0]
    return EntityWritten(**dict(read), outcome=outcome)


def list_entities(session: Session, principal: Principal, project: str, page: PageParams) -> Page[EntityRead]:
    proj = access.project_for(session, principal, project, Role.viewer)
    rows, total = repo.entities(session, proj.id, page.limit, page.offset)
    return Page.of(_entity_reads(session, rows), total, page)


def _entity(session: Session, project: Project, name: str) -> FeatureEntity:
    entity = repo.entity(session, project.id, name)
    if entity is None:
        raise NotFound(f"entity {name!r} does not exist in project {project.name!r}")
    return entity


def get_entity(session: Session, principal: Principal, project: str, name: str) -> EntityRead:
    proj = access.project_for(session, principal, project, Role.viewer)
    return _entity_reads(session, [_entity(session, proj, name)])[0]


def delete_entity(session: Session, principal: Principal, project: str, name: str) -> None:
    proj = access.project_for(session, principal, project, Role.owner)
    entity = _entity(session, proj, name)
    users = repo.groups_of_entities(session, [entity.id]).get(entity.id, [])
    if users:
        raise Conflict(f"entity {name!r} is used by feature groups {', '.join(users)}", groups=users)
    session.delete(entity)
    session.flush()
    record(
        session,
        principal,
        "feature.entity.delete",
        entity_target(proj.name, name),
        project=proj.name,
        summary=f"deleted entity {name}",
    )
