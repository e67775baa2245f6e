"""HTTP routes of jobs: job types, runs, schedules (per project) and the worker protocol (admin keys only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from bottega.api.auth.schemas import NAME_PATTERN
from bottega.api.deps import PrincipalDep, SessionDep
from bottega.api.jobs import dispatch, service
from bottega.api.jobs.runtime import RuntimeDep
from bottega.api.jobs.schemas import (
    RUN_ID_PATTERN,
    ClaimedRun,
    ClaimRequest,
    CompleteRequest,
    HeartbeatReply,
    HeartbeatRequest,
    JobRunCreate,
    JobRunRead,
    JobRunSummary,
    JobScheduleCreate,
    JobScheduleRead,
    JobScheduleUpdate,
    JobTypeRead,
    RunStatus,
)
from bottega.api.pages import Page, PageParams
from bottega.api.pagination import page_params
from bottega.core.names import JOB_TYPE_PATTERN

router = APIRouter(tags=["jobs"])
ProjectName = Annotated[str, Path(pattern=NAME_PATTERN)]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN)]
ScheduleName = Annotated[str, Path(pattern=NAME_PATTERN)]
RUNS = "/projects/{project}/jobs/runs"
SCHEDULES = "/projects/{project}/jobs/schedules"


@router.get("/job-types")
def list_job_types(principal: PrincipalDep, runtime: RuntimeDep) -> list[JobTypeRead]:
    """The job types this server accepts, with the JSON schema of their params."""
    return service.job_types(runtime.registry)


@router.post(RUNS, status_code=status.HTTP_201_CREATED)
def submit_run(
    project: ProjectName, body: JobRunCreate, session: SessionDep, principal: PrincipalDep, runtime: RuntimeDep
) -> JobRunRead:
    """Queue a run (editors). Unknown job types and invalid params are 422."""
    return service.submit(session, principal, runtime.registry, project, body)


@router.get(RUNS)
def list_runs(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    job_type: Annotated[str | None, Query(pattern=JOB_TYPE_PATTERN)] = None,
    schedule: Annotated[str | None, Query(pattern=NAME_PATTERN, description="runs queued by this schedule")] = None,
) -> Page[JobRunSummary]:
    """Runs of a project, newest first."""
    return service.list_runs(
        session, principal, project, status=status_, job_type=job_type, schedule=schedule, page=page
    )


@router.get(RUNS + "/{run_id}")
def get_run(project: ProjectName, run_id: RunId, session: SessionDep, principal: PrincipalDep) -> JobRunRead:
    return service.get_run(session, principal, project, run_id)


@router.post(RUNS + "/{run_id}/cancel")
def cancel_run(project: ProjectName, run_id: RunId, session: SessionDep, principal: PrincipalDep) -> JobRunRead:
    """Queued: cancelled at once. Running: cancel requested, the worker stops it. Finished: 409."""
    return service.cancel(session, principal, project, run_id)


@router.post(SCHEDULES, status_code=status.HTTP_201_CREATED)
def create_schedule(
    project: ProjectName, body: JobScheduleCreate, session: SessionDep, principal: PrincipalDep, runtime: RuntimeDep
) -> JobScheduleRead:
    return service.create_schedule(session, principal, runtime.registry, project, body)


@router.get(SCHEDULES)
def list_schedules(
    project: ProjectName,
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[PageParams, Depends(page_params)],
    enabled: Annotated[bool | None, Query(description="only enabled (true) or paused (false) schedules")] = None,
) -> Page[JobScheduleRead]:
    return service.list_schedules(session, principal, project, enabled, page)


@router.get(SCHEDULES + "/{name}")
def get_schedule(
    project: ProjectName, name: ScheduleName, session: SessionDep, principal: PrincipalDep
) -> JobScheduleRead:
    """A schedule with its next occurrence and its most recent runs."""
    return service.get_schedule(session, principal, project, name)


@router.patch(SCHEDULES + "/{name}")
def update_schedule(
    project: ProjectName,
    name: ScheduleName,
    body: JobScheduleUpdate,
    session: SessionDep,
    principal: PrincipalDep,
    runtime: RuntimeDep,
) -> JobScheduleRead:
    return service.update_schedule(session, principal, runtime.registry, project, name, body)


@router.delete(SCHEDULES + "/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(project: ProjectName, name: ScheduleName, session: SessionDep, principal: PrincipalDep) -> None:
    """Delete a schedule (owners); its runs stay."""
    service.delete_schedule(session, principal, project, name)


@router.post(
    "/jobs/claim",
    response_model=ClaimedRun,
    responses={204: {"description": "no queued run this worker may execute"}},
)
def claim_run(
    body: ClaimRequest, session: SessionDep, principal: PrincipalDep, runtime: RuntimeDep
) -> ClaimedRun | Response:
    """Workers (admin keys): atomically take the oldest queued run of the given job types."""
    claimed = dispatch.claim(session, principal, body, runtime.settings)
    return claimed if claimed is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/jobs/runs/{run_id}/heartbeat")
def heartbeat(run_id: RunId, body: HeartbeatRequest, session: SessionDep, principal: PrincipalDep) -> HeartbeatReply:
    """Workers (admin keys): still alive; the reply says whether a cancel was requested. 409: abandon the run."""
    return dispatch.heartbeat(session, principal, run_id, body)


@router.post("/jobs/runs/{run_id}/complete")
def complete_run(run_id: RunId, body: CompleteRequest, session: SessionDep, principal: PrincipalDep) -> JobRunRead:
    """Workers (admin keys): report the outcome (or `queued` to hand the run back)."""
    return dispatch.complete(session, principal, run_id, body)
