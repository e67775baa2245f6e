"""What the jobs domain needs from the API process: its job-type registry and its settings, kept on `app.state`.

Built when the app starts (`background.start`) or, failing that, on the first request that needs it; never at
import, and never in a module-level global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bottega.api.jobs.types import JobTypeRegistry


class JobsSettings(BaseSettings):
    """Worker-protocol settings, read from `BOTTEGA_JOBS_*` when the server starts."""

    model_config = SettingsConfigDict(env_prefix="BOTTEGA_JOBS_", extra="ignore")

    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="workers send a heartbeat this often")
    heartbeat_timeout_s: float = Field(default=60.0, gt=0, description="a running run silent this long is lost")
    max_attempts: int = Field(default=3, ge=1, description="a lost run is re-queued until it has had this many")


@dataclass(frozen=True)
class JobsRuntime:
    registry: JobTypeRegistry
    settings: JobsSettings


def runtime_for(app: FastAPI) -> JobsRuntime:
    runtime = getattr(app.state, "jobs", None)
    if not isinstance(runtime, JobsRuntime):
        runtime = JobsRuntime(registry=JobTypeRegistry.discover(), settings=JobsSettings())
        app.state.jobs = runtime
    return runtime


def get_runtime(request: Request) -> JobsRuntime:
    return runtime_for(request.app)


RuntimeDep = Annotated[JobsRuntime, Depends(get_runtime)]
