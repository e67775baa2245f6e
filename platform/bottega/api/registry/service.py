"""Models and aliases of the model DB. Viewers read, editors write, owners delete models.

Deleting a model is refused (409) while an alias points at one of its versions: aliases such as `production` mark
versions that something serves, so they are removed on purpose first. Versions live in `versions.py`; they are
never deleted on their own (immutable history): they go only with their model.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import Model, ModelAlias, ModelVersion, Project
from bottega.api.pages import Page, PageParams
from bottega.api.registry import repository as repo
from bottega.api.registry.schemas import LATEST, RESERVED_ALIASES, AliasRead, ModelCreate, ModelRead, ModelUpdate
from bottega.core.errors import Conflict, InvalidInput, ModelNotFound, NotFound
from bottega.core.names import ALIAS_PATTERN, TAG_KEY_PATTERN


def target(project: str, model: str, *rest: str) -> str:
    return "/".join([f"project:{project}", f"model:{model}", *rest])


def load_model(session: Session, project: Project, name: str) -> Model:
    model = repo.model_by_name(session, project.id, name)
    if model is None:
        raise ModelNotFound(
            f"model {name!r} does not exist in project {project.name!r}", project=project.name, model=name
        )
    return model


def resolve_version(session: Session, model: Model, ref: str) -> ModelVersion:
    """A version by number (`3`), by alias (`production`) or the highest one (`latest`)."""
    if ref.isdigit():
        found = repo.version_by_number(session, model.id, int(ref))
        if found is None:
            raise ModelNotFound(f"model {model.name!r} has no version {ref}", model=model.name, version=ref)
        return found
    if ref == LATEST:
        found = repo.latest_version(session, model.id)
        if found is None:
            raise ModelNotFound(f"model {model.name!r} has no versions yet", model=model.name, version=ref)
        return found
    alias = repo.alias(session, model.id, ref)
    if alias is None:
        raise ModelNotFound(f"model {model.name!r} has no alias {ref!r}", model=model.name, version=ref)
    version = session.get(ModelVersion, alias.version_id)
    if version is None:  # pragma: no cover - the foreign key cascades
        raise NotFound(f"alias {ref!r} of model {model.name!r} points at nothing")
    return version


def _reads(session: Session, models: list[Model]) -> list[ModelRead]:
    ids = [m.id for m in models]
    latest = repo.latest_versions(session, ids)
    aliases = repo.aliases_by_model(session, ids)
    return [
        ModelRead(
            name=m.name,
            description=m.description,
            tags=dict(m.tags),
            created_by=m.created_by,
            created_at=m.created_at,
            updated_at=m.updated_at,
            latest_version=latest.get(m.id),
            aliases=aliases.get(m.id, {}),
        )
        for m in models
    ]


def create(session: Session, principal: Principal, project_name: str, body: ModelCreate) -> ModelRead:
    project = access.project_for(session, principal, project_name, Role.editor)
    if repo.model_by_name(session, project.id, body.name) is not None:
        raise Conflict(f"model {body.name!r} already exists in project {project_name!r}")
    now = utcnow()
    model = Model(
        project_id=project.id,
        name=body.name,
        description=body.description,
        tags=dict(body.tags),
        created_by=principal.user,
        created_at=now,
        updated_at=now,
    )
    session.add(model)
    session.flush()
    record(
        session,
        principal,
        "model.create",
        target(project_name, body.name),
        project=project_name,
        summary=f"created model {body.name}",
    )
    return _reads(session, [model])[0]


def parse_tag_filters(tags: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in tags:
        key, sep, value = item.partition(":")
        if not sep or not re.match(TAG_KEY_PATTERN, key):
            raise InvalidInput(f"tag filter {item!r} must look like `key:value`", field="tag")
        out.append((key, value))
    return out


def list_models(
    session: Session, principal: Principal, project_name: str, q: str | None, tags: list[str], page: PageParams
) -> Page[ModelRead]:
    project = access.project_for(session, principal, project_name, Role.viewer)
    rows, total = repo.models_page(session, project.id, q, parse_tag_filters(tags), page.limit, page.offset)
    return Page.of(_reads(session, list(rows)), total, page)


def get(session: Session, principal: Principal, project_name: str, name: str) -> ModelRead:
    project = access.project_for(session, principal, project_name, Role.viewer)
    return _reads(session, [load_model(session, project, name)])[0]


def update(session: Session, principal: Principal, project_name: str, name: str, body: ModelUpdate) -> ModelRead:
    project = access.project_for(session, principal, project_name, Role.editor)
    model = load_model(session, project, name)
    changed: list[str] = []
    if body.description is not None and body.description != model.description:
        model.description = body.description
        changed.append("description")
    if body.tags:
        tags = dict(model.tags)
        for key, value in body.tags.items():
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
        if tags != model.tags:
            model.tags = tags
            changed.append("tags")
    if changed:
        model.updated_at = utcnow()
        record(
            session,
            principal,
            "model.update",
            target(project_name, name),
            project=project_name,
            summary=f"updated {', '.join(changed)} of model {name}",
            details={"changed": changed},
        )
    session.flush()
    return _reads(session, [model])[0]


def delete(session: Session, principal: Principal, project_name: str, name: str) -> None:
    project = access.project_for(session, principal, project_name, Role.owner)
    model = load_model(session, project, name)
    held = repo.aliases_by_model(session, [model.id])[model.id]
    if held:
        listed = ", ".join(f"{alias} -> v{number}" for alias, number in held.items())
        raise Conflict(f"model {name!r} still has aliases ({listed}); remove them before deleting the model")
    serving = repo.deployments_using(session, project.id, name)
    if serving:
        raise Conflict(f"model {name!r} is used by deployments {', '.join(serving)}; undeploy them first")
    versions = repo.latest_versions(session, [model.id]).get(model.id, 0)
    session.delete(model)
    session.flush()
    record(
        session,
        principal,
        "model.delete",
        target(project_name, name),
        project=project_name,
        summary=f"deleted model {name} and its {versions} version(s)",
    )


# -- aliases -----------------------------------------------------------------------------------------------------


def _check_alias_name(alias: str) -> None:
    if not re.match(ALIAS_PATTERN, alias):
        raise InvalidInput(
            f"alias {alias!r} must start with a lowercase letter, then letters, digits, `_` or `-` (at most 63)",
            field="alias",
        )
    if alias in RESERVED_ALIASES:
        raise InvalidInput(f"alias {alias!r} is reserved: it always means the highest version", field="alias")


def set_alias(
    session: Session, principal: Principal, project_name: str, name: str, alias: str, number: int
) -> AliasRead:
    _check_alias_name(alias)
    project = access.project_for(session, principal, project_name, Role.editor)
    model = load_model(session, project, name)
    version = repo.version_by_number(session, model.id, number)
    if version is None:
        raise InvalidInput(f"model {name!r} has no version {number}", field="version")
    row = repo.alias(session, model.id, alias)
    previous = None
    if row is not None:
        moved_from = session.get(ModelVersion, row.version_id)
        previous = moved_from.version if moved_from is not None else None
    if row is not None and row.version_id == version.id:
        return AliasRead(alias=alias, version=number, updated_by=row.updated_by, updated_at=row.updated_at)
    now = utcnow()
    if row is None:
        row = ModelAlias(model_id=model.id, alias=alias, version_id=version.id, updated_by=principal.user)
        session.add(row)
    row.version_id, row.updated_by, row.updated_at = version.id, principal.user, now
    session.flush()
    summary = f"{alias} -> v{number}" if previous is None else f"moved {alias} from v{previous} to v{number}"
    record(
        session,
        principal,
        "model.alias.set",
        target(project_name, name, f"alias:{alias}"),
        project=project_name,
        summary=summary,
        details={"model": name, "alias": alias, "from": previous, "to": number},
    )
    return AliasRead(alias=alias, version=number, updated_by=row.updated_by, updated_at=row.updated_at)


def delete_alias(session: Session, principal: Principal, project_name: str, name: str, alias: str) -> None:
    project = access.project_for(session, principal, project_name, Role.editor)
    model = load_model(session, project, name)
    row = repo.alias(session, model.id, alias)
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    version = session.get(ModelVersion, row.version_id)
    previous = version.version if version is not None else None
    session.delete(row)
    session.flush()
    record(
        session,
        principal,
        "model.alias.delete",
        target(project_name, name, f"alias:{alias}"),
        project=project_name,
        summary=f"removed alias {alias} (was v{previous})",
        details={"model": name, "alias": alias, "from": previous, "to": None},
    )


def list_aliases(session: Session, principal: Principal, project_name: str, name: str) -> list[AliasRead]:
    project = access.project_for(session, principal, project_name, Role.viewer)
    model = load_model(session, project, name)
    return [
        AliasRead(alias=row.alias, version=number, updated_by=row.updated_by, updated_at=row.updated_at)
        for row, number in repo.aliases(session, model.id)
    ]
