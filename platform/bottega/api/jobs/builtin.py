"""Built-in job types: `builtin.echo`, `builtin.sleep` and `builtin.fail` (for smoke checks, demos and tests).

Registered under the `bottega.job_types` entry point `builtin` (see pyproject.toml); `JobTypeRegistry.discover()`
also adds them directly so a source checkout works before the package metadata is refreshed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bottega.api.jobs.types import JobContext, JobType


class EchoParams(BaseModel):
    """Any JSON object: it is logged and returned as the result."""

    model_config = ConfigDict(extra="allow")


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=7 * 24 * 3600, description="how long to sleep")


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="builtin.fail failed, as asked", max_length=10_000)


class JobFailed(Exception):
    """The error `builtin.fail` raises."""


def echo(ctx: JobContext[EchoParams]) -> dict[str, Any]:
    ctx.log.info("echo: %s", json.dumps(ctx.raw_params, sort_keys=True, default=str))
    return dict(ctx.raw_params)


def sleep(ctx: JobContext[SleepParams]) -> dict[str, Any]:
    seconds = ctx.params.seconds
    ctx.log.info("sleeping for %s s", seconds)
    ctx.sleep(seconds)
    ctx.log.info("slept for %s s", seconds)
    return {"slept_s": seconds}


def fail(ctx: JobContext[FailParams]) -> dict[str, Any]:
    ctx.log.error("about to fail: %s", ctx.params.message)
    raise JobFailed(ctx.params.message)


def job_types() -> list[JobType[Any]]:
    """The entry point `bottega.job_types:builtin`."""
    return [
        JobType("builtin.echo", "Log the params and return them as the result.", echo, EchoParams),
        JobType("builtin.sleep", "Sleep for `seconds` (stops early when cancelled).", sleep, SleepParams),
        JobType("builtin.fail", "Fail with `message` (to check error handling and alerts).", fail, FailParams),
    ]
