"""HTTP routes of deployments, their revisions and the watch feed of serving replicas."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status

from bottega.api import etags
from bottega.api.auth.principal import Principal
from bottega.api.auth.schemas import NAME_PATTERN
from bottega.api.deployments import service, watch
from bottega.api.deployments.schemas import (
    MAX_REASON,
    WATCH_MAX_TIMEOUT_S,
    DeploymentCreate,
    DeploymentRead,
    DeploymentRollback,
    DeploymentUpdate,
    RevisionRead,
    WatchResult,
)
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params

router = APIRouter(tags=["deployments"])
ProjectName = Annotated[str, Path(pattern=NAME_PATTERN)]
DeploymentName = Annotated[str, Path(pattern=NAME_PATTERN)]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='the revision the change is based on, as an ETag: `"3"`'),
]
BASE = "/projects/{project}/deployments"
ITEM = BASE + "/{name}"


def _tagged(response: Response, read: DeploymentRead) -> DeploymentRead:
    response.headers["ETag"] = etags.etag(read.revision)
    return read


@router.post(BASE, status_code=status.HTTP_201_CREATED)
def create_deployment(
    project: ProjectName,
    body: Annotated[DeploymentCreate, Body()],
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
) -> DeploymentRead:
    """Create an online or batch deployment at revision 1 (editors)."""
    return _tagged(response, service.create(session, principal, project, body))


@router.get(BASE)
def list_deployments(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
    kind: Annotated[Literal["online", "batch"] | None, Query(description="only this kind")] = None,
    include_undeployed: Annotated[bool, Query(description="also list undeployed deployments")] = False,
) -> Page[DeploymentRead]:
    return service.list_deployments(session, principal, project, kind, include_undeployed, page)


@router.get(ITEM)
def get_deployment(
    project: ProjectName, name: DeploymentName, session: SessionDep, principal: PrincipalDep, response: Response
) -> DeploymentRead:
    """The current revision: spec, who made it, when and why. The ETag is the revision number."""
    return _tagged(response, service.get(session, principal, project, name))


@router.put(ITEM)
def update_deployment(
    project: ProjectName,
    name: DeploymentName,
    body: DeploymentUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    if_match: IfMatch = None,
) -> DeploymentRead:
    """Write revision N+1 (and redeploy an undeployed deployment).

    The revision the change is based on is required, as `If-Match: "N"` or `expected_revision`: 412 without one,
    409 (with `current_revision`) when it is no longer the current revision.
    """
    expected = etags.parse_etag(if_match)
    return _tagged(response, service.update(session, principal, project, name, body, expected))


@router.post(ITEM + "/rollback")
def rollback_deployment(
    project: ProjectName,
    name: DeploymentName,
    body: DeploymentRollback,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    if_match: IfMatch = None,
) -> DeploymentRead:
    """Restore the spec of the previous revision (or of `to_revision`) as a new revision."""
    expected = etags.parse_etag(if_match)
    return _tagged(response, service.rollback(session, principal, project, name, body, expected))


@router.delete(ITEM)
def undeploy_deployment(
    project: ProjectName,
    name: DeploymentName,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    reason: Annotated[str, Query(max_length=MAX_REASON, description="why")] = "",
    if_match: IfMatch = None,
) -> DeploymentRead:
    """Undeploy (owners): a new revision with `active=false`; the history stays and a PUT redeploys it."""
    expected = etags.parse_etag(if_match)
    return _tagged(response, service.undeploy(session, principal, project, name, reason, expected))


@router.get(ITEM + "/revisions")
def list_revisions(
    project: ProjectName,
    name: DeploymentName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[RevisionRead]:
    """Every revision, newest first."""
    return service.history(session, principal, project, name, page)


@router.get(ITEM + "/revisions/{number}")
def get_revision(
    project: ProjectName,
    name: DeploymentName,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    principal: PrincipalDep,
) -> RevisionRead:
    return service.revision(session, principal, project, name, number)


@router.get("/deployments/watch", response_model=WatchResult, responses={304: {"description": "nothing changed"}})
async def watch_deployments(
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(watch.principal_briefly)],
    since: Annotated[
        int | None, Query(ge=0, le=2**62, description="the last sequence seen; omit it for a snapshot")
    ] = None,
    timeout: Annotated[float, Query(ge=0, le=WATCH_MAX_TIMEOUT_S, description="seconds to wait")] = 30.0,
    project: Annotated[str | None, Query(pattern=NAME_PATTERN, description="only this project")] = None,
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", description='the last sequence seen, as an ETag: `"42"`')
    ] = None,
) -> WatchResult | Response:
    """Long poll for deployment changes (serving replicas follow this).

    Without `since` (or `If-None-Match`) the answer is a snapshot at once: the current revision of every active
    deployment the caller can see (all projects for admins, the key's project for a project-scoped key, the
    member's projects otherwise). With it, the answer comes as soon as a revision with a greater sequence exists,
    or after `timeout` seconds with no changes (200; 304 when the sequence came as `If-None-Match`). Pass the
    answer's `sequence` (also its ETag) next time; `more: true` means ask again at once.
    """
    by_header = since is None and if_none_match is not None
    if by_header:
        since = etags.parse_etag(if_none_match, "If-None-Match")
    result = await watch.long_poll(request, principal, since, timeout, project)
    if result is None:
        assert since is not None
        if by_header:
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etags.etag(since)})
        result = WatchResult(sequence=since, changes=[])
    response.headers["ETag"] = etags.etag(result.sequence)
    return result
