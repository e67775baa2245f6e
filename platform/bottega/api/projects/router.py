"""HTTP routes of projects and members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from bottega.api.auth.schemas import NAME_PATTERN, MemberPut, MemberRead
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params
from bottega.api.projects import service
from bottega.api.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate

router = APIRouter(prefix="/projects", tags=["projects"])
ProjectName = Annotated[str, Path(pattern=NAME_PATTERN)]
UserName = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, session: SessionDep, principal: PrincipalDep) -> ProjectRead:
    return service.create(session, principal, body)


@router.get("")
def list_projects(
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
    archived: Annotated[bool | None, Query(description="only archived (true) or active (false) projects")] = None,
) -> Page[ProjectRead]:
    return service.list_projects(session, principal, archived, page)


@router.get("/{project}")
def get_project(project: ProjectName, session: SessionDep, principal: PrincipalDep) -> ProjectRead:
    return service.get(session, principal, project)


@router.patch("/{project}")
def update_project(
    project: ProjectName, body: ProjectUpdate, session: SessionDep, principal: PrincipalDep
) -> ProjectRead:
    return service.update(session, principal, project, body)


@router.post("/{project}/archive")
def archive_project(project: ProjectName, session: SessionDep, principal: PrincipalDep) -> ProjectRead:
    return service.set_archived(session, principal, project, True)


@router.post("/{project}/unarchive")
def unarchive_project(project: ProjectName, session: SessionDep, principal: PrincipalDep) -> ProjectRead:
    return service.set_archived(session, principal, project, False)


@router.delete("/{project}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(project: ProjectName, session: SessionDep, principal: PrincipalDep) -> None:
    service.delete(session, principal, project)


@router.get("/{project}/members")
def list_members(project: ProjectName, session: SessionDep, principal: PrincipalDep) -> list[MemberRead]:
    return service.members(session, principal, project)


@router.put("/{project}/members/{user}")
def put_member(
    project: ProjectName, user: UserName, body: MemberPut, session: SessionDep, principal: PrincipalDep
) -> MemberRead:
    return service.put_member(session, principal, project, user, body.role)


@router.delete("/{project}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(project: ProjectName, user: UserName, session: SessionDep, principal: PrincipalDep) -> None:
    service.remove_member(session, principal, project, user)
