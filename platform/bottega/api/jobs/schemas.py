"""Wire schemas of jobs: job types, runs, schedules and the worker protocol (pydantic only: the SDK imports them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bottega.api.auth.schemas import NAME_PATTERN
from bottega.core.names import JOB_RUN_ID_PATTERN, JOB_TYPE_PATTERN

RunStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
FinalStatus = Literal["succeeded", "failed", "cancelled", "queued"]
TERMINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
ACTIVE_STATUSES: tuple[str, ...] = ("running", "cancelling")
RUN_ID_PATTERN = JOB_RUN_ID_PATTERN
WORKER_PATTERN = r"^[\x21-\x7e]{1,127}$"
LOG_TAIL_MAX_BYTES = 64 * 1024
LOG_TAIL_MAX_LINES = 200
ERROR_MAX_CHARS = 64 * 1024


class JobTypeRead(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any] = Field(description="JSON schema of the job type's params")


class JobRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_type: str = Field(pattern=JOB_TYPE_PATTERN, description="a name listed by `GET /job-types`")
    params: dict[str, Any] = Field(default_factory=dict, description="validated against the job type's schema")


class JobRunSummary(BaseModel):
    """A run as lists show it (no log tail, no result)."""

    id: str
    project: str
    job_type: str
    params: dict[str, Any]
    status: RunStatus
    cancel_requested: bool = Field(description="a cancel was asked for while the run was running")
    schedule: str | None = Field(description="the schedule that queued it (None for ad-hoc runs)")
    scheduled_for: datetime | None = Field(description="the cron occurrence this run is for")
    attempt: int = Field(description="how many times a worker has claimed this run")
    worker: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str


class JobRunRead(JobRunSummary):
    log_tail: str = Field(description=f"the last {LOG_TAIL_MAX_LINES} lines (at most 64 KiB) the job logged")
    result: dict[str, Any]


class JobScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, `_ . -`; at most 63 chars")
    job_type: str = Field(pattern=JOB_TYPE_PATTERN)
    params: dict[str, Any] = Field(default_factory=dict)
    cron: str = Field(
        min_length=1,
        max_length=127,
        description="UTC cron: 5 fields (minute hour day month weekday), 6 with seconds first, or @hourly/@daily/...",
    )
    enabled: bool = True


class JobScheduleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, min_length=1, max_length=127)
    params: dict[str, Any] | None = Field(default=None, description="replaces the params as a whole")
    enabled: bool | None = None


class JobScheduleRead(BaseModel):
    name: str
    project: str
    job_type: str
    params: dict[str, Any]
    cron: str
    enabled: bool
    next_run_at: datetime | None = Field(description="the next occurrence (None while disabled)")
    created_by: str
    created_at: datetime
    updated_at: datetime
    recent_runs: list[JobRunSummary] = Field(default_factory=list, description="newest first (only on get)")


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(pattern=WORKER_PATTERN, description="a name for the worker, e.g. host:pid")
    job_types: list[str] | None = Field(
        default=None, max_length=1000, description="only runs of these types (None: any type)"
    )


class ClaimedRun(BaseModel):
    id: str
    project: str
    job_type: str
    params: dict[str, Any]
    attempt: int
    worker: str
    schedule: str | None
    scheduled_for: datetime | None
    heartbeat_interval_s: float = Field(description="send a heartbeat this often")
    heartbeat_timeout_s: float = Field(description="a run silent for this long is re-queued or failed")


class HeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(pattern=WORKER_PATTERN)
    attempt: int = Field(ge=1)
    log_tail: str | None = Field(default=None, max_length=4 * LOG_TAIL_MAX_BYTES)


class HeartbeatReply(BaseModel):
    status: RunStatus
    cancel_requested: bool


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(pattern=WORKER_PATTERN)
    attempt: int = Field(ge=1)
    status: FinalStatus = Field(description="`queued` hands the run back to the queue (a worker shutting down)")
    result: dict[str, Any] = Field(default_factory=dict)
    error: str = Field(default="", max_length=4 * ERROR_MAX_CHARS)
    log_tail: str = Field(default="", max_length=4 * LOG_TAIL_MAX_BYTES)


def clip_log_tail(text: str, max_bytes: int = LOG_TAIL_MAX_BYTES, max_lines: int = LOG_TAIL_MAX_LINES) -> str:
    """The end of `text`: at most `max_lines` lines and `max_bytes` UTF-8 bytes (cut on a character boundary)."""
    lines = text.splitlines(keepends=True)
    if len(lines) > max_lines:
        text = "".join(lines[-max_lines:])
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[-max_bytes:].decode("utf-8", errors="ignore")
