"""Rows of the `blobs` table: one per stored SHA-256, shared by run and model-version artifacts."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.orm import Session

from bottega.api.db.base import utcnow
from bottega.api.db.dialect import insert_ignore
from bottega.api.db.tables import Blob


def record_blob(session: Session, sha256: str, size: int) -> None:
    """Insert the Blob row of `sha256` unless present; concurrent uploads of the same bytes do not collide."""
    table: Table = Blob.__table__  # type: ignore[assignment]
    insert_ignore(session, table, {"sha256": sha256, "size": size, "created_at": utcnow()})
