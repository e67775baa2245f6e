"""Project lifecycle and membership. Viewers read, editors write, owners manage members and delete."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth import repository as auth_repo
from bottega.api.auth.principal import Principal, Role
from bottega.api.auth.schemas import MemberRead
from bottega.api.db.base import utcnow
from bottega.api.db.tables import Membership, Project
from bottega.api.pages import Page, PageParams
from bottega.api.projects import repository as repo
from bottega.api.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate
from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound


def _read(session: Session, principal: Principal, project: Project) -> ProjectRead:
    return ProjectRead(
        name=project.name,
        description=project.description,
        archived=project.archived,
        created_by=project.created_by,
        created_at=project.created_at,
        updated_at=project.updated_at,
        role=access.role_in(session, principal, project),
    )


def create(session: Session, principal: Principal, body: ProjectCreate) -> ProjectRead:
    if principal.project_id is not None:
        raise Forbidden("a project-scoped key cannot create projects")
    if repo.by_name(session, body.name) is not None:
        raise Conflict(f"project {body.name!r} already exists")
    now = utcnow()
    project = Project(
        name=body.name, description=body.description, created_by=principal.user, created_at=now, updated_at=now
    )
    session.add(project)
    session.flush()
    session.add(Membership(project_id=project.id, user=principal.user, role=Role.owner.value, created_at=now))
    record(
        session,
        principal,
        "project.create",
        f"project:{body.name}",
        project=body.name,
        summary=f"created project {body.name}",
    )
    session.flush()
    return _read(session, principal, project)


def list_projects(session: Session, principal: Principal, archived: bool | None, page: PageParams) -> Page[ProjectRead]:
    user = None if principal.is_admin else principal.user
    rows, total = repo.visible(session, user, principal.project_id, archived, page.limit, page.offset)
    return Page.of([_read(session, principal, p) for p in rows], total, page)


def get(session: Session, principal: Principal, name: str) -> ProjectRead:
    return _read(session, principal, access.project_for(session, principal, name, Role.viewer))


def update(session: Session, principal: Principal, name: str, body: ProjectUpdate) -> ProjectRead:
    project = access.project_for(session, principal, name, Role.editor)
    if body.description is not None:
        project.description = body.description
    project.updated_at = utcnow()
    record(session, principal, "project.update", f"project:{name}", project=name, summary="updated description")
    return _read(session, principal, project)


def set_archived(session: Session, principal: Principal, name: str, archived: bool) -> ProjectRead:
    project = access.project_for(session, principal, name, Role.owner, allow_archived=True)
    if project.archived != archived:
        project.archived = archived
        project.updated_at = utcnow()
        action = "project.archive" if archived else "project.unarchive"
        record(session, principal, action, f"project:{name}", project=name, summary=action.split(".")[1] + "d")
    return _read(session, principal, project)


def delete(session: Session, principal: Principal, name: str) -> None:
    project = access.project_for(session, principal, name, Role.owner, allow_archived=True)
    session.delete(project)
    record(session, principal, "project.delete", f"project:{name}", project=name, summary=f"deleted project {name}")


def members(session: Session, principal: Principal, name: str) -> list[MemberRead]:
    project = access.project_for(session, principal, name, Role.viewer)
    return [
        MemberRead(user=m.user, role=Role(m.role), created_at=m.created_at)
        for m in auth_repo.memberships(session, project.id)
    ]


def put_member(session: Session, principal: Principal, name: str, user: str, role: Role) -> MemberRead:
    project = access.project_for(session, principal, name, Role.owner)
    member = auth_repo.membership(session, project.id, user)
    if member is None:
        member = Membership(project_id=project.id, user=user, role=role.value, created_at=utcnow())
        session.add(member)
    else:
        if member.role == Role.owner.value and role is not Role.owner and auth_repo.owners(session, project.id) <= 1:
            raise InvalidInput(f"{user!r} is the last owner of {name!r}; make someone else owner first")
        member.role = role.value
    session.flush()
    record(
        session,
        principal,
        "project.member.put",
        f"project:{name}/member:{user}",
        project=name,
        summary=f"{user} is {role.value}",
    )
    return MemberRead(user=member.user, role=Role(member.role), created_at=member.created_at)


def remove_member(session: Session, principal: Principal, name: str, user: str) -> None:
    project = access.project_for(session, principal, name, Role.owner)
    member = auth_repo.membership(session, project.id, user)
    if member is None:
        raise NotFound(f"{user!r} is not a member of {name!r}")
    if member.role == Role.owner.value and auth_repo.owners(session, project.id) <= 1:
        raise InvalidInput(f"{user!r} is the last owner of {name!r}; make someone else owner first")
    session.delete(member)
    record(
        session,
        principal,
        "project.member.remove",
        f"project:{name}/member:{user}",
        project=name,
        summary=f"removed {user}",
    )
