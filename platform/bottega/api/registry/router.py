"""HTTP routes of the model DB: blobs, models, immutable versions, their artifacts and aliases.

Two routes stream: the blob upload reads `request.stream()` into the blob store one chunk at a time, and an
artifact download streams the stored blob while re-hashing it. Neither holds a database transaction while bytes
flow: the upload commits the authorization check before reading the body; the download's transaction ends when the
handler returns, before the first byte is sent.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from bottega.api.auth.schemas import NAME_PATTERN
from bottega.api.deps import BlobsDep, PrincipalDep, SessionDep, SettingsDep
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params
from bottega.api.registry import blobs as blob_service
from bottega.api.registry import evaluations, service, versions
from bottega.api.registry.schemas import (
    AliasPut,
    AliasRead,
    ArtifactRead,
    BlobRead,
    EvaluationCreate,
    EvaluationRead,
    EvaluationSummary,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    VerifyReport,
    VersionCreate,
    VersionRead,
    VersionSummary,
    VersionUpdate,
)
from bottega.core.errors import IntegrityFailure, InvalidInput, NotFound
from bottega.core.names import EVALUATION_NAME_PATTERN, MODEL_NAME_PATTERN, SHA256_PATTERN, VERSION_REF_PATTERN

log = logging.getLogger("bottega.api.registry")
router = APIRouter(tags=["registry"])

ProjectName = Annotated[str, Path(pattern=NAME_PATTERN)]
ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
VersionRef = Annotated[
    str, Path(pattern=VERSION_REF_PATTERN, description="a version number, an alias, or `latest` (the highest)")
]
AliasName = Annotated[str, Path(min_length=1, max_length=63)]
Sha256 = Annotated[str, Path(pattern=SHA256_PATTERN)]
PageDep = Annotated[PageParams, Depends(page_params)]
EvaluationName = Annotated[str, Path(pattern=EVALUATION_NAME_PATTERN)]
MODELS = "/projects/{project}/models"
MODEL = MODELS + "/{model}"
VERSION = MODEL + "/versions/{version}"
OCTET_STREAM = "application/octet-stream"


# -- blobs -------------------------------------------------------------------------------------------------------


@router.put(
    "/projects/{project}/blobs",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"required": True, "content": {OCTET_STREAM: {"schema": {"type": "string"}}}}},
)
async def upload_blob(
    project: ProjectName,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    sha256: Annotated[
        str | None,
        Header(alias="X-Bottega-Sha256", description="refuse the upload (422) if the bytes hash to anything else"),
    ] = None,
) -> BlobRead:
    """Stream bytes (`Content-Type: application/octet-stream`) into the content-addressed store."""
    if not request.headers.get("content-type", "").startswith(OCTET_STREAM):
        raise InvalidInput(f"upload the bytes with `Content-Type: {OCTET_STREAM}`", field="content-type")
    await anyio.to_thread.run_sync(blob_service.authorize_upload, session, principal, project)
    await anyio.to_thread.run_sync(session.commit)  # hold no transaction (nor SQLite's write lock) during the upload
    sha, size = await blobs.put_stream(request.stream(), expected_sha256=sha256, max_bytes=settings.max_upload_bytes)
    return await anyio.to_thread.run_sync(blob_service.record_upload, session, principal, project, sha, size)


@router.get("/projects/{project}/blobs/{sha256}")
def get_blob(
    project: ProjectName, sha256: Sha256, session: SessionDep, principal: PrincipalDep, blobs: BlobsDep
) -> BlobRead:
    """200 when the project may reference this blob and the store holds it (then an upload can be skipped)."""
    return blob_service.get(session, principal, blobs, project, sha256)


# -- models ------------------------------------------------------------------------------------------------------


@router.post(MODELS, status_code=status.HTTP_201_CREATED)
def create_model(project: ProjectName, body: ModelCreate, session: SessionDep, principal: PrincipalDep) -> ModelRead:
    return service.create(session, principal, project, body)


@router.get(MODELS)
def list_models(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=127, description="a substring of the model name")] = None,
    tag: Annotated[list[str], Query(description="`key:value`; repeat for several (all must match)")] = [],  # noqa: B006
) -> Page[ModelRead]:
    return service.list_models(session, principal, project, q, tag, page)


@router.get(MODEL)
def get_model(project: ProjectName, model: ModelName, session: SessionDep, principal: PrincipalDep) -> ModelRead:
    return service.get(session, principal, project, model)


@router.patch(MODEL)
def update_model(
    project: ProjectName, model: ModelName, body: ModelUpdate, session: SessionDep, principal: PrincipalDep
) -> ModelRead:
    return service.update(session, principal, project, model, body)


@router.delete(MODEL, status_code=status.HTTP_204_NO_CONTENT)
def delete_model(project: ProjectName, model: ModelName, session: SessionDep, principal: PrincipalDep) -> None:
    """Delete a model with all its versions (owners). Refused (409) while it has aliases."""
    service.delete(session, principal, project, model)


# -- versions ----------------------------------------------------------------------------------------------------


@router.post(MODEL + "/versions", status_code=status.HTTP_201_CREATED)
def create_version(
    project: ProjectName, model: ModelName, body: VersionCreate, session: SessionDep, principal: PrincipalDep
) -> VersionRead:
    """Register the next version (1, 2, 3...). Versions are immutable and are never deleted on their own."""
    return versions.create(session, principal, project, model, body)


@router.get(MODEL + "/versions")
def list_versions(
    project: ProjectName,
    model: ModelName,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    order: Annotated[Literal["desc", "asc"], Query(description="by version number")] = "desc",
) -> Page[VersionSummary]:
    return versions.list_versions(session, principal, project, model, page, order == "desc")


@router.get(VERSION)
def get_version(
    project: ProjectName, model: ModelName, version: VersionRef, session: SessionDep, principal: PrincipalDep
) -> VersionRead:
    return versions.get(session, principal, project, model, version)


@router.patch(VERSION)
def update_version(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    body: VersionUpdate,
    session: SessionDep,
    principal: PrincipalDep,
) -> VersionRead:
    """Only the description changes: any other field is refused (422)."""
    return versions.update(session, principal, project, model, version, body)


@router.get(VERSION + "/artifacts")
def list_artifacts(
    project: ProjectName, model: ModelName, version: VersionRef, session: SessionDep, principal: PrincipalDep
) -> list[ArtifactRead]:
    return versions.artifacts(session, principal, project, model, version)


@router.get(
    VERSION + "/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}},
)
def download_artifact(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    path: str,
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The bytes of one artifact, with `X-Bottega-Sha256`, `Content-Length` and an `ETag` (304 on a matching
    `If-None-Match`). A blob whose size changed is refused before streaming (500, type `integrity`); one whose bytes
    changed is cut short at its end."""
    found = versions.download(session, principal, project, model, version, path)
    headers = {"ETag": f'"{found.sha256}"', "X-Bottega-Sha256": found.sha256}
    offered = {tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")}
    if headers["ETag"] in offered or "*" in offered:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    what = f"{project}/{model}@{version}/{found.path}"
    try:
        chunks = blobs.open_for_response(found.sha256, found.size, what)
    except NotFound as exc:
        raise IntegrityFailure(f"artifact {what}: blob {found.sha256} is missing from the artifact store") from exc
    except IntegrityFailure as exc:
        raise IntegrityFailure(f"artifact {what}: {exc.detail}") from exc
    headers["Content-Length"] = str(found.size)
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(found.path.rsplit('/', 1)[-1])}"
    return StreamingResponse(chunks, media_type=OCTET_STREAM, headers=headers)


@router.post(VERSION + "/verify")
def verify_version(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    session: SessionDep,
    principal: PrincipalDep,
    blobs: BlobsDep,
) -> VerifyReport:
    """Re-hash every artifact in the store; per-file status ok, missing, size_mismatch or corrupted."""
    name, number, files = versions.verify_targets(session, principal, project, model, version)
    session.commit()  # no transaction stays open while every byte is read
    return versions.verify(blobs, name, number, files)


# -- aliases -----------------------------------------------------------------------------------------------------


# -- evaluations -------------------------------------------------------------------------------------------------


@router.post(VERSION + "/evaluations", status_code=status.HTTP_201_CREATED)
def create_evaluation(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    body: EvaluationCreate,
    session: SessionDep,
    principal: PrincipalDep,
) -> EvaluationRead:
    """Store a named evaluation of the version on other labelled data (409 when the name is taken)."""
    return evaluations.create(session, principal, project, model, version, body)


@router.get(VERSION + "/evaluations")
def list_version_evaluations(
    project: ProjectName, model: ModelName, version: VersionRef, session: SessionDep, principal: PrincipalDep
) -> list[EvaluationSummary]:
    """The version's evaluations: `training` (its own) first, then the named ones, oldest first."""
    return evaluations.list_for_version(session, principal, project, model, version)


@router.get(VERSION + "/evaluations/{name}")
def get_evaluation(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    name: EvaluationName,
    session: SessionDep,
    principal: PrincipalDep,
) -> EvaluationRead:
    return evaluations.get(session, principal, project, model, version, name)


@router.delete(VERSION + "/evaluations/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_evaluation(
    project: ProjectName,
    model: ModelName,
    version: VersionRef,
    name: EvaluationName,
    session: SessionDep,
    principal: PrincipalDep,
) -> None:
    evaluations.delete(session, principal, project, model, version, name)


@router.get(MODEL + "/evaluations")
def list_model_evaluations(
    project: ProjectName,
    model: ModelName,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    name: Annotated[
        str | None, Query(pattern=EVALUATION_NAME_PATTERN, description="only this name; training: each version's own")
    ] = None,
) -> Page[EvaluationSummary]:
    """Evaluations across versions, newest version first: compare versions scored on the same labels."""
    return evaluations.list_for_model(session, principal, project, model, name, page)


@router.get(MODEL + "/aliases")
def list_aliases(
    project: ProjectName, model: ModelName, session: SessionDep, principal: PrincipalDep
) -> list[AliasRead]:
    return service.list_aliases(session, principal, project, model)


@router.put(MODEL + "/aliases/{alias}")
def set_alias(
    project: ProjectName,
    model: ModelName,
    alias: AliasName,
    body: AliasPut,
    session: SessionDep,
    principal: PrincipalDep,
) -> AliasRead:
    """Point an alias (`production`, `challenger`, ...) at a version; moving it is audited with from/to."""
    return service.set_alias(session, principal, project, model, alias, body.version)


@router.delete(MODEL + "/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(
    project: ProjectName, model: ModelName, alias: AliasName, session: SessionDep, principal: PrincipalDep
) -> None:
    service.delete_alias(session, principal, project, model, alias)
