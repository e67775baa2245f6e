"""The job type `training.evaluate`: `bottega models evaluate` run by a platform worker (queued, or on a cron
schedule after each labelling batch lands).

Params: `model`, `version` (a number or an alias such as `production`), `labels` (a path or URL the workers can
read), and optionally `name` (default `<labels stem>-<date>`; a scheduled run should use `{date}` in it, e.g.
`holdout-{date}`, since a name is stored once per version), `label_column`, `timestamp_column`, `key_columns`,
`on_duplicates` and `description`. The result: the stored evaluation's name, version and metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bottega.api.jobs.types import JobContext, JobType
from bottega.core.names import EVALUATE_JOB

JOB_TYPE = EVALUATE_JOB


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=127)
    version: str = Field(min_length=1, max_length=63, description="a version number or an alias")
    labels: str = Field(min_length=1, max_length=4096, description="the new label table (Parquet or CSV)")
    name: str | None = Field(default=None, max_length=63, description="evaluation name; `{date}` is today (UTC)")
    label_column: str | None = None
    timestamp_column: str | None = None
    key_columns: dict[str, str] | None = None
    on_duplicates: Literal["error", "warn", "keep"] = "warn"
    description: str = Field(default="", max_length=10_000)


def run_evaluate_job(ctx: JobContext[EvaluateParams]) -> dict[str, Any]:
    from bottega.training.reevaluate import Overrides, evaluate_version

    params = ctx.params
    name = params.name.replace("{date}", datetime.now(UTC).date().isoformat()) if params.name else None
    over = Overrides(params.label_column, params.timestamp_column, params.key_columns, None, params.on_duplicates)
    ctx.log.info("evaluating %s@%s on %s", params.model, params.version, params.labels)
    with ctx.client() as client:
        stored = evaluate_version(
            client,
            ctx.project,
            params.model,
            params.version,
            params.labels,
            name=name,
            description=params.description,
            overrides=over,
        )
    ctx.log.info("stored evaluation %s of %s v%d", stored.name, stored.model, stored.version)
    return {"model": stored.model, "version": stored.version, "name": stored.name, "metrics": stored.metrics}


def job_types() -> list[JobType[Any]]:
    return [
        JobType(
            JOB_TYPE,
            "Evaluate a model version on newly labelled data and store the report as a named evaluation.",
            run_evaluate_job,
            EvaluateParams,
        )
    ]
