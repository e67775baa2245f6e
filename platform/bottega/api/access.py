"""Project-level authorization, shared by every domain: load a project by name and check the caller's role."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bottega.api.auth import repository as auth_repo
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.tables import Project
from bottega.core.errors import Conflict, Forbidden, ProjectNotFound


def role_in(session: Session, principal: Principal, project: Project) -> Role | None:
    """The caller's effective role in a project (admins are owners everywhere), or None."""
    if principal.project_id is not None and principal.project_id != project.id:
        return None
    if principal.is_admin:
        return Role.owner
    member = auth_repo.membership(session, project.id, principal.user)
    return Role(member.role) if member else None


def project_for(
    session: Session, principal: Principal, name: str, needed: Role, *, allow_archived: bool = False
) -> Project:
    """The project called `name` if the caller holds at least `needed` in it.

    Raises NotFound for a missing project, Forbidden without the role, and Conflict for writes to an archived
    project (reads of archived projects are allowed).
    """
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise ProjectNotFound(f"project {name!r} does not exist", project=name)
    role = role_in(session, principal, project)
    if role is None:
        raise Forbidden(f"{principal.user!r} has no role in project {name!r}")
    if not role.allows(needed):
        raise Forbidden(f"this needs the {needed.value} role in project {name!r}; {principal.user!r} is {role.value}")
    if project.archived and needed is not Role.viewer and not allow_archived:
        raise Conflict(f"project {name!r} is archived; unarchive it before changing it")
    return project
