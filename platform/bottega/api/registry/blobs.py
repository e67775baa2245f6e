"""Blob uploads for version artifacts: bytes streamed into the content-addressed store, then recorded.

An upload grants the project the right to reference the blob (`ProjectBlob`): streaming the bytes proves the
caller has them, which knowing a SHA-256 does not.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.artifacts.repository import record_blob
from bottega.api.artifacts.store import BlobStore
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.registry import repository as repo
from bottega.api.registry.schemas import BlobRead
from bottega.core.errors import NotFound


def authorize_upload(session: Session, principal: Principal, project_name: str) -> None:
    """Check the caller may upload to the project before a single byte is read."""
    access.project_for(session, principal, project_name, Role.editor)


def record_upload(session: Session, principal: Principal, project_name: str, sha256: str, size: int) -> BlobRead:
    project = access.project_for(session, principal, project_name, Role.editor)
    record_blob(session, sha256, size)
    repo.grant_blob(session, project.id, sha256, principal.user)
    record(
        session,
        principal,
        "blob.upload",
        f"project:{project_name}/blob:{sha256}",
        project=project_name,
        summary=f"uploaded blob {sha256[:12]} ({size} bytes)",
        details={"sha256": sha256, "size": size},
    )
    return BlobRead(sha256=sha256, size=size)


def get(session: Session, principal: Principal, blobs: BlobStore, project_name: str, sha256: str) -> BlobRead:
    """A blob the project may reference and the store holds (lets clients skip uploading bytes again)."""
    project = access.project_for(session, principal, project_name, Role.viewer)
    sizes = repo.blob_sizes(session, [sha256])
    known = sha256 in sizes and sha256 in repo.accessible_blobs(session, project.id, [sha256])
    if not known or not blobs.exists(sha256):
        raise NotFound(f"blob {sha256} is not in project {project_name!r}")
    return BlobRead(sha256=sha256, size=sizes[sha256])
