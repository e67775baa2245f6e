"""Rows of the `blobs` table: one per stored SHA-256, shared by run and model-version artifacts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bottega.api.db.base import utcnow
from bottega.api.db.tables import Blob


def record_blob(session: Session, sha256: str, size: int) -> Blob:
    """The Blob row for `sha256`, inserted if new (idempotent within and across transactions)."""
    blob = session.get(Blob, sha256)
    if blob is None:
        blob = Blob(sha256=sha256, size=size, created_at=utcnow())
        session.add(blob)
        session.flush()
    return blob
