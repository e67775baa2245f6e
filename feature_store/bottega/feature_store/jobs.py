"""Job types of the feature store, registered with the platform scheduler (entry point `bottega.job_types`).

`features.batch` computes a registered batch feature group for a time range (by default the `lookback` before now),
on the `engine` chosen (`duckdb`, the default, or `spark`), upserts it offline, materializes it online and reports
row counts to the catalog. Re-running a range changes
nothing, so a cron schedule may overlap its ranges safely.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bottega.api.jobs.types import JobContext, JobType
from bottega.core.names import FEATURES_BATCH_JOB
from bottega.feature_store.definitions import parse_duration


class BatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, description="the batch feature group's name in the job's project")
    start: datetime | None = Field(default=None, description="range start (default: end - lookback)")
    end: datetime | None = Field(default=None, description="range end, exclusive (default: now)")
    lookback: str = Field(default="1d", description="how far back a scheduled run recomputes, e.g. 6h, 2d")
    engine: Literal["duckdb", "spark"] = Field(
        default="duckdb", description="duckdb (embedded) or spark (scale-out; BOTTEGA_SPARK_MASTER picks the cluster)"
    )

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        from bottega.core.timestamps import as_utc

        return None if value is None else as_utc(value, "start/end")

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        end = self.end or now
        return self.start or end - parse_duration(self.lookback), end


def run_batch_job(ctx: JobContext[BatchParams]) -> dict[str, Any]:
    from bottega.feature_store.batch.spark_pipeline import run_batch_engine
    from bottega.feature_store.catalog import batch_group, batch_stats
    from bottega.feature_store.config import StoreSettings

    client = ctx.client()
    group, schema = batch_group(client, ctx.project, ctx.params.group)
    started = datetime.now(UTC)
    start, end = ctx.params.window(started)
    settings = StoreSettings.from_env()
    online = settings.online() if group.online else None
    ctx.log.info(
        "computing %s:%s for [%s, %s) on %s",
        ctx.project,
        group.name,
        start.isoformat(),
        end.isoformat(),
        ctx.params.engine,
    )
    try:
        result = run_batch_engine(
            ctx.params.engine,
            group,
            schema,
            settings.offline(),
            online,
            start,
            end,
            progress=lambda stage, rows: ctx.log.info("%s: %d rows", stage, rows),
        )
    finally:
        if online is not None:
            online.close()
    client.features.report_stats(ctx.project, group.name, **batch_stats(result))
    return {
        "group": group.name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows_offline": result.rows_offline,
        "rows_online": result.rows_online,
        "last_event_time": result.last_event_time.isoformat() if result.last_event_time else None,
        "engine": ctx.params.engine,
    }


def job_types() -> list[JobType[Any]]:
    """The entry point `bottega.job_types:feature_store`."""
    return [
        JobType(
            FEATURES_BATCH_JOB,
            "Compute a batch feature group for a time range, write it offline and online.",
            run_batch_job,
            BatchParams,
        ),
    ]
