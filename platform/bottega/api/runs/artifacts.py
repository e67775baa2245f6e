"""Run artifacts: uploads streamed into the content-addressed blob store, downloads streamed out of it, verified.

An upload never sits whole in memory: the request body flows chunk by chunk into `BlobStore.put_stream`, which
hashes it, checks the declared `X-Bottega-Sha256` and only then moves the bytes into place. The database work
(reading the run before the transfer, recording the blob and the artifact row after it) runs in a worker thread on
the request's session, so the event loop never blocks on the database; the session dependency commits once the
handler returns.

A download refuses a blob whose size changed before sending anything (problem+json, type `integrity`). A blob whose
bytes changed but not their size is only detectable once read: the stream holds back its last chunk until the hash
is confirmed, so on a mismatch the server logs it and ends the response short of its Content-Length; clients see a
cut transfer (the SDK also re-hashes what it receives and raises IntegrityFailure).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import anyio.to_thread
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from bottega.api.artifacts.repository import record_blob
from bottega.api.artifacts.store import BlobStore
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.pages import Page, PageParams
from bottega.api.runs import repository as repo
from bottega.api.runs.filters import invalid
from bottega.api.runs.schemas import ArtifactRead, artifact_path_problem
from bottega.api.runs.service import load, target
from bottega.core.errors import BadRequest, IntegrityFailure, NotFound

log = logging.getLogger("bottega.api.runs")
OCTET_STREAM = "application/octet-stream"


def validate_path(path: str) -> str:
    """A relative path of `/`-separated names: no `..` or `.`, no empty names, no absolute or control chars."""
    problem = artifact_path_problem(path)
    if problem is not None:
        raise invalid("path.path", problem)
    return path


def _read(path: str, sha256: str, size: int, created_at: datetime) -> ArtifactRead:
    return ArtifactRead(path=path, sha256=sha256, size=size, created_at=created_at)


def _check_writable(session: Session, principal: Principal, project: str, run_id: str) -> None:
    load(session, principal, project, run_id, Role.editor)


def _record(
    session: Session, principal: Principal, project: str, run_id: str, path: str, sha256: str, size: int
) -> ArtifactRead:
    _, run = load(session, principal, project, run_id, Role.editor)  # the run may have gone during the transfer
    now = utcnow()
    record_blob(session, sha256, size)
    repo.put_artifact(session, run.id, path, sha256, size, now)
    session.flush()
    record(
        session,
        principal,
        "run.artifact.put",
        target(project, run_id),
        project=project,
        summary=f"uploaded {path} ({size} bytes)",
        details={"path": path, "sha256": sha256, "size": size},
    )
    return _read(path, sha256, size, now)


async def upload(
    session: Session,
    principal: Principal,
    blobs: BlobStore,
    *,
    project: str,
    run_id: str,
    path: str,
    content_type: str | None,
    expected_sha256: str | None,
    body: AsyncIterator[bytes],
    max_bytes: int,
) -> ArtifactRead:
    """Check access, stream the body into the blob store, then record the artifact (replacing the same path)."""
    validate_path(path)
    if not (content_type or "").lower().startswith(OCTET_STREAM):
        raise invalid("header.content-type", f"artifact uploads are sent as {OCTET_STREAM}, not {content_type!r}")
    await anyio.to_thread.run_sync(partial(_check_writable, session, principal, project, run_id))
    try:
        sha256, size = await blobs.put_stream(body, expected_sha256=expected_sha256, max_bytes=max_bytes)
    except ClientDisconnect:
        raise BadRequest(f"the client went away while uploading {path!r}; nothing was stored") from None
    return await anyio.to_thread.run_sync(partial(_record, session, principal, project, run_id, path, sha256, size))


def list_artifacts(
    session: Session, principal: Principal, project: str, run_id: str, prefix: str | None, page: PageParams
) -> Page[ArtifactRead]:
    _, run = load(session, principal, project, run_id, Role.viewer)
    rows, total = repo.artifacts(session, run.id, prefix, page.limit, page.offset)
    return Page.of([_read(r.path, r.sha256, r.size, r.created_at) for r in rows], total, page)


@dataclass(frozen=True)
class Download:
    artifact: ArtifactRead
    chunks: Iterator[bytes] | None  # None when the client already holds these bytes (If-None-Match)

    @property
    def etag(self) -> str:
        return f'"{self.artifact.sha256}"'


def open_download(
    session: Session,
    principal: Principal,
    blobs: BlobStore,
    *,
    project: str,
    run_id: str,
    path: str,
    if_none_match: str | None,
) -> Download:
    validate_path(path)
    _, run = load(session, principal, project, run_id, Role.viewer)
    row = repo.artifact(session, run.id, path)
    if row is None:
        raise NotFound(f"run {run_id} has no artifact {path!r}")
    artifact = _read(row.path, row.sha256, row.size, row.created_at)
    tags = {tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")}
    if f'"{row.sha256}"' in tags or "*" in tags:
        return Download(artifact, None)
    what = f"{path!r} of run {run_id} (blob {row.sha256})"
    try:
        chunks = blobs.open_for_response(row.sha256, row.size, what)
    except NotFound:
        raise IntegrityFailure(f"artifact {what} is missing from the artifact store") from None
    except IntegrityFailure as exc:
        raise IntegrityFailure(f"artifact {what}: {exc.detail}") from None
    return Download(artifact, chunks)
