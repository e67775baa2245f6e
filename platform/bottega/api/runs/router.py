"""HTTP routes of runs: experiment tracking nested under a project (viewers read, editors write, owners delete)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi import status as http_status
from fastapi.responses import StreamingResponse

from bottega.api.auth.schemas import NAME_PATTERN
from bottega.api.deps import BlobsDep, PrincipalDep, SessionDep, SettingsDep
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params
from bottega.api.runs import artifacts, filters, service
from bottega.api.runs.schemas import (
    KEY_PATTERN,
    RUN_ID_PATTERN,
    ArtifactRead,
    MetricHistory,
    MetricsLog,
    MetricsLogged,
    ParamsLog,
    RunComparison,
    RunCreate,
    RunRead,
    RunStatus,
    RunUpdate,
    TagsPut,
    param_text,
)

router = APIRouter(prefix="/projects/{project}/runs", tags=["runs"])
ProjectName = Annotated[str, Path(pattern=NAME_PATTERN)]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="32 lowercase hex digits")]
MetricKey = Annotated[str, Path(pattern=KEY_PATTERN)]
Pagination = Annotated[PageParams, Depends(page_params)]
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
DOWNLOAD_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the bytes, with `X-Bottega-Sha256`, `Content-Length` and `ETag` headers",
    },
    304: {"description": "the client's If-None-Match already names these bytes"},
}


@router.post("", status_code=http_status.HTTP_201_CREATED)
def create_run(project: ProjectName, body: RunCreate, session: SessionDep, principal: PrincipalDep) -> RunRead:
    return service.create(session, principal, project, body)


@router.get("")
def list_runs(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Pagination,
    status: RunStatus | None = None,
    tag: Annotated[list[str] | None, Query(description="`key:value`, repeatable (all must match)")] = None,
    param: Annotated[list[str] | None, Query(description="`key:value`, repeatable")] = None,
    metric: Annotated[
        list[str] | None, Query(description="`<key><op><number>` on the latest value, op in > >= < <= = !=")
    ] = None,
    name: Annotated[str | None, Query(max_length=255, description="substring of the name, any case")] = None,
    parent_run_id: Annotated[str | None, Query(pattern=RUN_ID_PATTERN)] = None,
    order_by: Annotated[
        str | None, Query(description="start_time, name or metrics.<key>; prefix `-` for descending")
    ] = None,
) -> Page[RunRead]:
    query = filters.parse(
        status=status,
        tags=tag or [],
        params=param or [],
        metrics=metric or [],
        name=name,
        parent_run_id=parent_run_id,
        order_by=order_by,
    )
    return service.list_runs(session, principal, project, query, page)


@router.get("/compare")
def compare_runs(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    ids: Annotated[str, Query(description="2 to 20 run ids, comma-separated")],
) -> RunComparison:
    return service.compare(session, principal, project, ids)


@router.get("/{run_id}")
def get_run(project: ProjectName, run_id: RunId, session: SessionDep, principal: PrincipalDep) -> RunRead:
    return service.get(session, principal, project, run_id)


@router.patch("/{run_id}")
def update_run(
    project: ProjectName, run_id: RunId, body: RunUpdate, session: SessionDep, principal: PrincipalDep
) -> RunRead:
    return service.update(session, principal, project, run_id, body)


@router.delete("/{run_id}", status_code=http_status.HTTP_204_NO_CONTENT)
def delete_run(project: ProjectName, run_id: RunId, session: SessionDep, principal: PrincipalDep) -> None:
    service.delete(session, principal, project, run_id)


@router.post("/{run_id}/params")
def log_params(
    project: ProjectName, run_id: RunId, body: ParamsLog, session: SessionDep, principal: PrincipalDep
) -> RunRead:
    values = {key: param_text(value) for key, value in body.params.items()}
    return service.log_params(session, principal, project, run_id, values)


@router.post("/{run_id}/metrics")
def log_metrics(
    project: ProjectName, run_id: RunId, body: MetricsLog, session: SessionDep, principal: PrincipalDep
) -> MetricsLogged:
    return service.log_metrics(session, principal, project, run_id, body)


@router.get("/{run_id}/metrics/{key:path}")
def metric_history(
    project: ProjectName, run_id: RunId, key: MetricKey, session: SessionDep, principal: PrincipalDep
) -> MetricHistory:
    return service.metric_history(session, principal, project, run_id, key)


@router.put("/{run_id}/tags")
def put_tags(
    project: ProjectName, run_id: RunId, body: TagsPut, session: SessionDep, principal: PrincipalDep
) -> RunRead:
    return service.put_tags(session, principal, project, run_id, body.tags)


@router.delete("/{run_id}/tags/{key:path}", status_code=http_status.HTTP_204_NO_CONTENT)
def delete_tag(
    project: ProjectName, run_id: RunId, key: MetricKey, session: SessionDep, principal: PrincipalDep
) -> None:
    service.delete_tag(session, principal, project, run_id, key)


@router.get("/{run_id}/artifacts")
def list_artifacts(
    project: ProjectName,
    run_id: RunId,
    session: SessionDep,
    principal: PrincipalDep,
    page: Pagination,
    prefix: Annotated[str | None, Query(max_length=1024, description="only paths starting with this")] = None,
) -> Page[ArtifactRead]:
    return artifacts.list_artifacts(session, principal, project, run_id, prefix, page)


@router.put("/{run_id}/artifacts/{path:path}", status_code=http_status.HTTP_201_CREATED, openapi_extra=UPLOAD_BODY)
async def upload_artifact(
    project: ProjectName,
    run_id: RunId,
    path: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    content_type: Annotated[str | None, Header()] = None,
    x_bottega_sha256: Annotated[
        str | None, Header(description="the sha256 the client computed; a mismatch stores nothing (422)")
    ] = None,
) -> ArtifactRead:
    """Stream the request body (`application/octet-stream`) into the artifact store; replaces the same path."""
    return await artifacts.upload(
        session,
        principal,
        blobs,
        project=project,
        run_id=run_id,
        path=path,
        content_type=content_type,
        expected_sha256=x_bottega_sha256,
        body=request.stream(),
        max_bytes=settings.max_upload_bytes,
    )


@router.get("/{run_id}/artifacts/{path:path}", response_class=StreamingResponse, responses=DOWNLOAD_RESPONSE)
def download_artifact(
    project: ProjectName,
    run_id: RunId,
    path: str,
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Stream an artifact's bytes; the store re-hashes them as they go out."""
    download = artifacts.open_download(
        session, principal, blobs, project=project, run_id=run_id, path=path, if_none_match=if_none_match
    )
    headers = {"ETag": download.etag, "X-Bottega-Sha256": download.artifact.sha256}
    if download.chunks is None:
        return Response(status_code=http_status.HTTP_304_NOT_MODIFIED, headers=headers)
    headers["Content-Length"] = str(download.artifact.size)
    return StreamingResponse(download.chunks, media_type="application/octet-stream", headers=headers)
