"""SDK methods for jobs: job types, runs, cron schedules and the worker protocol."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bottega.api.jobs.schemas import (
    TERMINAL_STATUSES,
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
)
from bottega.api.pages import Page

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class JobsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api

    def _runs(self, project: str) -> str:
        return f"{self._api}/projects/{project}/jobs/runs"

    def _schedules(self, project: str) -> str:
        return f"{self._api}/projects/{project}/jobs/schedules"

    # Job types and runs ---------------------------------------------------------------------------------------------

    def job_types(self) -> builtins.list[JobTypeRead]:
        """The job types the server accepts, with the JSON schema of their params."""
        return [JobTypeRead.model_validate(t) for t in self._t.json("GET", f"{self._api}/job-types")]

    def submit(self, project: str, job_type: str, params: Mapping[str, Any] | None = None) -> JobRunRead:
        """Queue a run of `job_type` in `project`; InvalidInput for an unknown type or invalid params."""
        body = JobRunCreate(job_type=job_type, params=dict(params or {})).model_dump()
        return JobRunRead.model_validate(self._t.json("POST", self._runs(project), json=body))

    def get(self, project: str, run_id: str) -> JobRunRead:
        return JobRunRead.model_validate(self._t.json("GET", f"{self._runs(project)}/{run_id}"))

    def list(
        self,
        project: str,
        *,
        status: str | None = None,
        job_type: str | None = None,
        schedule: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[JobRunSummary]:
        """Runs of a project, newest first."""
        params = _params(status=status, job_type=job_type, schedule=schedule, limit=limit, offset=offset)
        return Page[JobRunSummary].model_validate(self._t.json("GET", self._runs(project), params=params))

    def cancel(self, project: str, run_id: str) -> JobRunRead:
        """Cancel a queued run at once, or ask the worker to stop a running one; Conflict once it finished."""
        return JobRunRead.model_validate(self._t.json("POST", f"{self._runs(project)}/{run_id}/cancel"))

    def wait(
        self, project: str, run_id: str, timeout: float | None = None, *, poll_interval: float = 0.5
    ) -> JobRunRead:
        """Poll until the run finished (succeeded, failed or cancelled); TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get(project, run_id)
            if run.status in TERMINAL_STATUSES:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job run {run_id} is still {run.status} after {timeout} s")
            pause = poll_interval if deadline is None else min(poll_interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    # Schedules ------------------------------------------------------------------------------------------------------

    def create_schedule(
        self,
        project: str,
        name: str,
        job_type: str,
        cron: str,
        params: Mapping[str, Any] | None = None,
        *,
        enabled: bool = True,
    ) -> JobScheduleRead:
        """A cron schedule (UTC; 5 fields, or 6 with seconds first) that queues `job_type` runs."""
        body = JobScheduleCreate(
            name=name, job_type=job_type, params=dict(params or {}), cron=cron, enabled=enabled
        ).model_dump()
        return JobScheduleRead.model_validate(self._t.json("POST", self._schedules(project), json=body))

    def list_schedules(
        self, project: str, *, enabled: bool | None = None, limit: int = 50, offset: int = 0
    ) -> Page[JobScheduleRead]:
        params = _params(enabled=enabled, limit=limit, offset=offset)
        return Page[JobScheduleRead].model_validate(self._t.json("GET", self._schedules(project), params=params))

    def get_schedule(self, project: str, name: str) -> JobScheduleRead:
        """A schedule with its next occurrence and its most recent runs."""
        return JobScheduleRead.model_validate(self._t.json("GET", f"{self._schedules(project)}/{name}"))

    def update_schedule(
        self,
        project: str,
        name: str,
        *,
        cron: str | None = None,
        params: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> JobScheduleRead:
        body = JobScheduleUpdate(
            cron=cron, params=dict(params) if params is not None else None, enabled=enabled
        ).model_dump(exclude_none=True)
        return JobScheduleRead.model_validate(self._t.json("PATCH", f"{self._schedules(project)}/{name}", json=body))

    def delete_schedule(self, project: str, name: str) -> None:
        self._t.json("DELETE", f"{self._schedules(project)}/{name}")

    # Worker protocol (admin keys) -----------------------------------------------------------------------------------

    def claim(self, worker: str, job_types: builtins.list[str] | None = None) -> ClaimedRun | None:
        """Take the oldest queued run of `job_types` (any type when None); None when there is nothing to run."""
        body = ClaimRequest(worker=worker, job_types=job_types).model_dump()
        answer = self._t.json("POST", f"{self._api}/jobs/claim", json=body)
        return None if answer is None else ClaimedRun.model_validate(answer)

    def heartbeat(self, run_id: str, *, worker: str, attempt: int, log_tail: str | None = None) -> HeartbeatReply:
        """Tell the server the run is alive; Conflict means the run is no longer this worker's."""
        body = HeartbeatRequest(worker=worker, attempt=attempt, log_tail=log_tail).model_dump(exclude_none=True)
        return HeartbeatReply.model_validate(
            self._t.json("POST", f"{self._api}/jobs/runs/{run_id}/heartbeat", json=body)
        )

    def complete(
        self,
        run_id: str,
        *,
        worker: str,
        attempt: int,
        status: str,
        result: Mapping[str, Any] | None = None,
        error: str = "",
        log_tail: str = "",
    ) -> JobRunRead:
        """Report a run's outcome: succeeded, failed, cancelled, or `queued` to hand it back."""
        body = CompleteRequest.model_validate(
            {
                "worker": worker,
                "attempt": attempt,
                "status": status,
                "result": dict(result or {}),
                "error": error,
                "log_tail": log_tail,
            }
        ).model_dump()
        return JobRunRead.model_validate(self._t.json("POST", f"{self._api}/jobs/runs/{run_id}/complete", json=body))
