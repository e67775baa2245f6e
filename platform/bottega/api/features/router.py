"""HTTP routes of the feature catalog: entities and versioned feature groups under a project (viewers read, editors
register and report statistics, owners delete), and the search and resolution of features across projects."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi import status as http_status

from bottega.api.auth.schemas import NAME_PATTERN as PROJECT_PATTERN
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.features import catalog, entities, service
from bottega.api.features.schemas import (
    NAME_PATTERN,
    DefinitionsApplied,
    DefinitionsApply,
    EntityPut,
    EntityRead,
    EntityWritten,
    FeatureHit,
    GroupKind,
    GroupRead,
    GroupRegister,
    GroupRegistered,
    GroupStats,
    GroupVersionRead,
    Resolution,
    StatsReport,
    ValueType,
)
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params

router = APIRouter(tags=["features"])
ProjectName = Annotated[str, Path(pattern=PROJECT_PATTERN)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="lowercase letters, digits and `_`, a letter first")]
Pagination = Annotated[PageParams, Depends(page_params)]
BASE = "/projects/{project}/features"
GROUP = BASE + "/groups/{group}"


@router.put(BASE + "/entities/{name}")
def put_entity(
    project: ProjectName, name: Name, body: EntityPut, session: SessionDep, principal: PrincipalDep
) -> EntityWritten:
    """Create or update an entity (`outcome` says which); its join keys cannot change while a group uses it."""
    return entities.put_entity(session, principal, project, name, body)


@router.get(BASE + "/entities")
def list_entities(
    project: ProjectName, session: SessionDep, principal: PrincipalDep, page: Pagination
) -> Page[EntityRead]:
    return entities.list_entities(session, principal, project, page)


@router.get(BASE + "/entities/{name}")
def get_entity(project: ProjectName, name: Name, session: SessionDep, principal: PrincipalDep) -> EntityRead:
    return entities.get_entity(session, principal, project, name)


@router.delete(BASE + "/entities/{name}", status_code=http_status.HTTP_204_NO_CONTENT)
def delete_entity(project: ProjectName, name: Name, session: SessionDep, principal: PrincipalDep) -> None:
    """Delete an entity no feature group uses (owners)."""
    entities.delete_entity(session, principal, project, name)


@router.post(BASE + "/apply")
def apply_definitions(
    project: ProjectName, body: DefinitionsApply, session: SessionDep, principal: PrincipalDep
) -> DefinitionsApplied:
    """Apply a definitions file (the feature store's `Definitions`) in one transaction: entities, then groups."""
    return service.apply(session, principal, project, body)


@router.post(
    BASE + "/groups",
    status_code=http_status.HTTP_201_CREATED,
    responses={200: {"description": "the definition is the current version's: nothing changed"}},
)
def register_group(
    project: ProjectName, body: GroupRegister, response: Response, session: SessionDep, principal: PrincipalDep
) -> GroupRegistered:
    """Register a batch or stream group. New name: version 1 (201). Same definition: unchanged (200). Compatible
    change: the next version (201). Breaking change: 409, unless `new_version` is true (then the next version)."""
    definition = service.definition_of(body)
    registered = service.register_group(session, principal, project, definition, body.new_version)
    if registered.outcome == "unchanged":
        response.status_code = http_status.HTTP_200_OK
    return registered


@router.get(BASE + "/groups")
def list_groups(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Pagination,
    kind: GroupKind | None = None,
    entity: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> Page[GroupRead]:
    return service.list_groups(session, principal, project, kind, entity, page)


@router.get(GROUP)
def get_group(project: ProjectName, group: Name, session: SessionDep, principal: PrincipalDep) -> GroupRead:
    """The current version, with the entity's join keys and every feature's reference."""
    return service.get_group(session, principal, project, group)


@router.get(GROUP + "/versions")
def list_versions(
    project: ProjectName, group: Name, session: SessionDep, principal: PrincipalDep, page: Pagination
) -> Page[GroupVersionRead]:
    """Every version, newest first."""
    return service.list_versions(session, principal, project, group, page)


@router.get(GROUP + "/versions/{number}")
def get_version(
    project: ProjectName,
    group: Name,
    number: Annotated[int, Path(ge=1, le=2_000_000_000)],
    session: SessionDep,
    principal: PrincipalDep,
) -> GroupVersionRead:
    return service.get_version(session, principal, project, group, number)


@router.delete(GROUP, status_code=http_status.HTTP_204_NO_CONTENT)
def delete_group(project: ProjectName, group: Name, session: SessionDep, principal: PrincipalDep) -> None:
    """Delete a group and its versions (owners); 409 while a model version's signature uses one of its features."""
    service.delete_group(session, principal, project, group)


@router.post(GROUP + "/stats")
def report_stats(
    project: ProjectName, group: Name, body: StatsReport, session: SessionDep, principal: PrincipalDep
) -> GroupStats:
    """Pipelines report a group's statistics after each run (editors; not audited: too frequent)."""
    return service.report_stats(session, principal, project, group, body)


@router.get("/features/search")
def search_features(
    session: SessionDep,
    principal: PrincipalDep,
    page: Pagination,
    q: Annotated[str | None, Query(max_length=255, description="substring of a feature, group or description")] = None,
    tag: Annotated[list[str] | None, Query(description="`key:value`, repeatable (all must match)")] = None,
    owner: Annotated[str | None, Query(max_length=255)] = None,
    entity: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    project: Annotated[str | None, Query(pattern=PROJECT_PATTERN)] = None,
    kind: GroupKind | None = None,
    dtype: ValueType | None = None,
) -> Page[FeatureHit]:
    """Features of every project you can read, one row per feature, with the model versions that use each."""
    return catalog.search(
        session,
        principal,
        q=q,
        tags=tag or [],
        owner=owner,
        entity=entity,
        project=project,
        kind=kind,
        dtype=dtype,
        page=page,
    )


@router.get("/features/resolve")
def resolve_features(
    session: SessionDep,
    principal: PrincipalDep,
    refs: Annotated[str, Query(max_length=200_000, description="`project:group:feature`, comma-separated")],
) -> Resolution:
    """What serving and training sets need to read each reference: entity keys and types, dtype, max_age."""
    return catalog.resolve(session, principal, refs)
