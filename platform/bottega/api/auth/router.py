"""HTTP routes of API keys and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from bottega.api.auth import service
from bottega.api.auth.schemas import NAME_PATTERN, KeyCreate, KeyCreated, KeyRead, WhoAmI
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.projects import repository as projects

router = APIRouter(tags=["auth"])


@router.get("/whoami")
def whoami(session: SessionDep, principal: PrincipalDep) -> WhoAmI:
    project = None
    if principal.project_id is not None:
        project = next((p.name for p in projects.visible(session, None, principal.project_id, None, 1, 0)[0]), None)
    return WhoAmI(user=principal.user, key_id=principal.key_id, is_admin=principal.is_admin, project=project)


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, session: SessionDep, principal: PrincipalDep) -> KeyCreated:
    return service.create_key(session, principal, body)


@router.get("/keys")
def list_keys(
    session: SessionDep,
    principal: PrincipalDep,
    user: Annotated[str | None, Query(pattern=NAME_PATTERN, description="admins: another user's keys")] = None,
) -> list[KeyRead]:
    return service.list_keys(session, principal, user)


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: Annotated[str, Path(pattern=r"^[a-z0-9]{12}$")], session: SessionDep, principal: PrincipalDep
) -> KeyRead:
    return service.revoke_key(session, principal, key_id)
