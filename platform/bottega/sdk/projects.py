"""SDK methods for projects, members, API keys and the audit trail."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bottega.api.audit.schemas import AuditEventRead
from bottega.api.auth.schemas import KeyCreate, KeyCreated, KeyRead, MemberRead
from bottega.api.pages import Page
from bottega.api.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport


def _params(**values: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items() if v is not None}


class ProjectsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._base = f"{api}/projects"

    def create(self, name: str, description: str = "") -> ProjectRead:
        body = ProjectCreate(name=name, description=description).model_dump()
        return ProjectRead.model_validate(self._t.json("POST", self._base, json=body))

    def list(self, *, archived: bool | None = None, limit: int = 50, offset: int = 0) -> Page[ProjectRead]:
        params = _params(archived=archived, limit=limit, offset=offset)
        return Page[ProjectRead].model_validate(self._t.json("GET", self._base, params=params))

    def get(self, name: str) -> ProjectRead:
        return ProjectRead.model_validate(self._t.json("GET", f"{self._base}/{name}"))

    def update(self, name: str, *, description: str | None = None) -> ProjectRead:
        body = ProjectUpdate(description=description).model_dump(exclude_none=True)
        return ProjectRead.model_validate(self._t.json("PATCH", f"{self._base}/{name}", json=body))

    def archive(self, name: str) -> ProjectRead:
        return ProjectRead.model_validate(self._t.json("POST", f"{self._base}/{name}/archive"))

    def unarchive(self, name: str) -> ProjectRead:
        return ProjectRead.model_validate(self._t.json("POST", f"{self._base}/{name}/unarchive"))

    def delete(self, name: str) -> None:
        self._t.json("DELETE", f"{self._base}/{name}")

    def members(self, name: str) -> builtins.list[MemberRead]:
        return [MemberRead.model_validate(m) for m in self._t.json("GET", f"{self._base}/{name}/members")]

    def set_member(self, name: str, user: str, role: str) -> MemberRead:
        body = self._t.json("PUT", f"{self._base}/{name}/members/{user}", json={"role": role})
        return MemberRead.model_validate(body)

    def remove_member(self, name: str, user: str) -> None:
        self._t.json("DELETE", f"{self._base}/{name}/members/{user}")


class KeysAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._base = f"{api}/keys"

    def create(
        self, name: str = "", *, user: str | None = None, admin: bool = False, project: str | None = None
    ) -> KeyCreated:
        body = KeyCreate(name=name, user=user, admin=admin, project=project).model_dump(exclude_none=True)
        return KeyCreated.model_validate(self._t.json("POST", self._base, json=body))

    def list(self, *, user: str | None = None) -> builtins.list[KeyRead]:
        return [KeyRead.model_validate(k) for k in self._t.json("GET", self._base, params=_params(user=user))]

    def revoke(self, key_id: str) -> KeyRead:
        return KeyRead.model_validate(self._t.json("POST", f"{self._base}/{key_id}/revoke"))


class AuditAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._base = f"{api}/audit"

    def list(
        self,
        *,
        project: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[AuditEventRead]:
        params = _params(
            project=project, actor=actor, action=action, since=since, until=until, limit=limit, offset=offset
        )
        return Page[AuditEventRead].model_validate(self._t.json("GET", self._base, params=params))
