"""`bottega features run | stream | training-set`: the feature store's pipelines from the shell.

They read group definitions from the API's catalog and the stores from `BOTTEGA_*` settings (see
`bottega.feature_store.config`); they need `bottega[store,spark]` (and `stream` for Kafka).
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bottega.cli.common import client, done, emit, state
from bottega.core.extras import require


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint=option) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_group(
    ctx: typer.Context,
    project: str,
    group: str,
    start: Annotated[str | None, typer.Option(help="range start, ISO-8601 (default: end - lookback)")] = None,
    end: Annotated[str | None, typer.Option(help="range end, exclusive (default: now)")] = None,
    lookback: Annotated[str, typer.Option(help="default range length, e.g. 6h, 2d")] = "1d",
) -> None:
    """Compute a batch feature group for a time range: offline upsert, online materialization (idempotent)."""
    require("duckdb", "store")
    from bottega.feature_store.batch.duckdb_pipeline import run_batch
    from bottega.feature_store.catalog import batch_group
    from bottega.feature_store.config import StoreSettings
    from bottega.feature_store.definitions import parse_duration

    stop = _when(end, "--end") or datetime.now(UTC)
    begin = _when(start, "--start") or stop - parse_duration(lookback)
    settings = StoreSettings.from_env()
    with client(ctx) as sdk:
        definition, schema = batch_group(sdk, project, group)
        online = settings.online() if definition.online else None
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"{project}:{group}", total=3, rows=0)

            def step(stage: str, rows: int) -> None:
                bar.update(task, advance=1, description=f"{project}:{group} {stage}", rows=rows)

            try:
                result = run_batch(definition, schema, settings.offline(), online, begin, stop, progress=step)
            finally:
                if online is not None:
                    online.close()
        sdk.features.report_stats(
            project,
            group,
            rows_offline=result.rows_offline,
            rows_online=result.rows_online,
            last_run_at=datetime.now(UTC),
        )
    done(
        ctx,
        f"{project}:{group} [{begin.isoformat()}, {stop.isoformat()}): {result.rows_offline} rows offline, "
        f"{result.rows_online} entities online",
        result.__dict__,
    )


def stream_group(
    ctx: typer.Context,
    project: str,
    group: str,
    group_id: Annotated[
        str | None, typer.Option(help="Kafka consumer group (default: bottega-<project>-<group>)")
    ] = None,
    max_events: Annotated[int | None, typer.Option(help="stop after this many new events")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="stop after this many idle seconds")] = None,
    report_every: Annotated[
        float, typer.Option(help="seconds between freshness and row-count reports to the catalog")
    ] = 30.0,
) -> None:
    """Run a streaming feature group's consumer: windowed aggregates written online and offline (Ctrl-C stops)."""
    require("kafka", "stream")
    from bottega.feature_store.catalog import StreamReporter
    from bottega.feature_store.catalog import stream_group as load
    from bottega.feature_store.config import StoreSettings
    from bottega.feature_store.streaming.processor import StreamStats, run

    settings = StoreSettings.from_env()
    stop = threading.Event()

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    console = Console(stderr=True)
    try:
        with client(ctx) as sdk:
            definition, schema = load(sdk, project, group)
            online = settings.online() if definition.online else None
            reporter = StreamReporter(sdk, project, group, every_s=report_every)

            def progress(s: StreamStats) -> None:
                console.print(
                    f"consumed {s.consumed}, emitted {s.emitted}, dead-lettered {s.dead_lettered}", highlight=False
                )
                reporter(s)

            try:
                stats = run(
                    definition,
                    schema,
                    settings.kafka_bootstrap,
                    group_id or f"bottega-{project}-{group}",
                    settings.offline(),
                    online,
                    stop=stop,
                    max_events=max_events,
                    idle_timeout_s=idle_timeout,
                    progress=progress,
                )
                reporter.report(stats)
            finally:
                if online is not None:
                    online.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    done(
        ctx,
        f"{project}:{group}: consumed {stats.consumed}, emitted {stats.emitted}, dead-lettered {stats.dead_lettered}",
        {k: v for k, v in stats.__dict__.items() if k != "committed"},
    )


def training_set(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Argument(help="label table: Parquet or CSV with entity keys and a timestamp")],
    feature: Annotated[list[str], typer.Option("--feature", "-f", help="project:group:feature, repeatable")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the training set (Parquet)")],
    timestamp_column: Annotated[str, typer.Option(help="the label table's time column")] = "timestamp",
) -> None:
    """Build a point-in-time correct training set from the offline store (DuckDB engine)."""
    require("duckdb", "store")
    import pyarrow.parquet as pq

    if not labels.exists():
        raise typer.BadParameter(f"{labels} does not exist", param_hint="LABELS")
    with client(ctx) as sdk:
        try:
            table: Any = sdk.get_training_set(labels, feature, timestamp_column=timestamp_column)
        except (ValueError, KeyError) as exc:
            raise typer.BadParameter(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    filled = {name: table.num_rows - table.column(name).null_count for name in table.column_names[-len(feature) :]}
    summary = {"rows": table.num_rows, "columns": table.column_names, "non_null": filled, "path": str(out)}
    if state(ctx).as_json:
        emit(ctx, summary)
        return
    Console().print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {out}", highlight=False)
    emit(ctx, [{"feature": k, "non_null": v} for k, v in filled.items()], ["feature", "non_null"])
