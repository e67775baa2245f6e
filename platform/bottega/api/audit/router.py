"""HTTP route of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from bottega.api.audit import service
from bottega.api.audit.schemas import AuditEventRead
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def list_audit_events(
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
    project: Annotated[str | None, Query(max_length=63)] = None,
    actor: Annotated[str | None, Query(max_length=63)] = None,
    action: Annotated[str | None, Query(max_length=63, description="exact, or a prefix ending in '.'")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEventRead]:
    rows, total = service.search(
        session,
        principal,
        project=project,
        actor=actor,
        action=action,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    return Page.of([AuditEventRead.model_validate(row) for row in rows], total, page)
