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

from bottega.cli.common import client, done, emit, fail, state
from bottega.core.extras import require
from bottega.core.keys import parse_key_columns


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint=option) from exc
    from bottega.core.timestamps import as_utc

    return as_utc(moment, option)  # the one timestamp rule: no offset = UTC, with a warning


def run_group(
    ctx: typer.Context,
    project: str,
    group: str,
    start: Annotated[str | None, typer.Option(help="range start, ISO-8601 (default: end - lookback)")] = None,
    end: Annotated[str | None, typer.Option(help="range end, exclusive (default: now)")] = None,
    lookback: Annotated[str, typer.Option(help="default range length, e.g. 6h, 2d")] = "1d",
    engine: Annotated[
        str, typer.Option(help="duckdb (embedded) or spark (scale-out; BOTTEGA_SPARK_MASTER picks the cluster)")
    ] = "duckdb",
) -> None:
    """Compute a batch feature group for a time range: offline upsert, online materialization (idempotent)."""
    if engine not in ("duckdb", "spark"):
        raise typer.BadParameter(f"{engine!r}: choose duckdb or spark", param_hint="--engine")
    require("duckdb", "store")
    if engine == "spark":
        require("pyspark", "spark")
    from bottega.feature_store.batch.spark_pipeline import run_batch_engine
    from bottega.feature_store.catalog import batch_group, batch_stats
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
                result = run_batch_engine(
                    engine, definition, schema, settings.offline(), online, begin, stop, progress=step
                )
            finally:
                if online is not None:
                    online.close()
        sdk.features.report_stats(project, group, **batch_stats(result))
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
    engine: Annotated[str, typer.Option(help="kafka (a Kafka consumer) or spark (Structured Streaming)")] = "kafka",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="spark: checkpoint folder (default: $BOTTEGA_SPARK_CHECKPOINTS/<project>/<group>)"),
    ] = None,
    available_now: Annotated[
        bool, typer.Option("--available-now", help="spark: process what the topic holds now, then stop")
    ] = False,
) -> None:
    """Run a streaming feature group's pipeline: windowed aggregates written online and offline (Ctrl-C stops)."""
    if engine not in ("kafka", "spark"):
        raise typer.BadParameter(f"{engine!r}: choose kafka or spark", param_hint="--engine")
    if engine == "spark" and (group_id is not None or max_events is not None):
        raise typer.BadParameter(
            "--group-id and --max-events need --engine kafka (Spark keeps offsets in its checkpoint)"
        )
    if engine == "kafka" and (checkpoint is not None or available_now):
        raise typer.BadParameter("--checkpoint and --available-now need --engine spark")
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
                if engine == "spark":
                    stats: Any = _spark_stream(
                        definition, schema, settings, online, checkpoint, available_now, stop, idle_timeout, progress
                    )
                else:
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
        {k: v for k, v in stats.__dict__.items() if k not in ("committed", "last_data_at")},
    )


def _spark_stream(
    definition: Any,
    schema: Any,
    settings: Any,
    online: Any,
    checkpoint: Path | None,
    available_now: bool,
    stop: threading.Event,
    idle_timeout: float | None,
    progress: Any,
) -> Any:
    """`features stream --engine spark`: the group's Structured Streaming query (Kafka source jars needed)."""
    require("pyspark", "spark")
    from bottega.feature_store.spark_session import SparkJarsMissing, spark_session
    from bottega.feature_store.streaming.spark_stream import default_checkpoint, run_spark_stream

    try:
        with spark_session(f"bottega-stream-{schema.project}-{schema.name}", kafka=True) as spark:
            return run_spark_stream(
                spark,
                definition,
                schema,
                settings.kafka_bootstrap,
                settings.offline(),
                online,
                checkpoint or default_checkpoint(schema.project, schema.name),
                available_now=available_now,
                stop=stop,
                idle_timeout_s=idle_timeout,
                progress=progress,
            )
    except SparkJarsMissing as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine") from exc


def training_set(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Argument(help="label table: Parquet or CSV with entity keys and a timestamp")],
    feature: Annotated[list[str], typer.Option("--feature", "-f", help="project:group:feature, repeatable")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the training set (Parquet)")],
    timestamp_column: Annotated[str, typer.Option(help="the label table's time column")] = "timestamp",
    on_duplicates: Annotated[
        str, typer.Option(help="duplicate or conflicting label rows: warn (keep, report), keep, or error (refuse)")
    ] = "warn",
    key_column: Annotated[
        list[str] | None,
        typer.Option(
            "--key-column", help="JOIN_KEY=COLUMN when the label table names a join key otherwise, e.g. user_id=userId"
        ),
    ] = None,
) -> None:
    """Build a point-in-time correct training set from the offline store (DuckDB engine)."""
    require("duckdb", "store")
    import pyarrow.parquet as pq

    from bottega.feature_store.labels import POLICIES, label_duplicates

    if on_duplicates not in POLICIES:
        raise typer.BadParameter(f"{on_duplicates!r}: choose warn, keep or error", param_hint="--on-duplicates")
    if not labels.exists():
        raise typer.BadParameter(f"{labels} does not exist", param_hint="LABELS")
    try:
        key_columns = parse_key_columns(key_column or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-column") from None
    with client(ctx) as sdk:
        try:
            table: Any = sdk.get_training_set(
                labels,
                feature,
                timestamp_column=timestamp_column,
                on_duplicates=on_duplicates,  # type: ignore[arg-type]
                key_columns=key_columns,
            )
        except KeyError as exc:  # a column the label table lacks (ValueErrors reach the one error line as they are)
            raise fail(str(exc.args[0] if exc.args else exc)) from exc
    found = label_duplicates(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    filled = {name: table.num_rows - table.column(name).null_count for name in table.column_names[-len(feature) :]}
    summary = {"rows": table.num_rows, "columns": table.column_names, "non_null": filled, "path": str(out)}
    if found is not None:
        summary["duplicates"] = found.as_dict()
    if state(ctx).as_json:
        emit(ctx, summary)
        return
    console = Console()
    console.print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {out}", highlight=False, markup=False)
    if found is not None and found.found:
        console.print(f"label duplicates ({on_duplicates}): {found.describe()}", highlight=False, markup=False)
    emit(ctx, [{"feature": k, "non_null": v} for k, v in filled.items()], ["feature", "non_null"])


def _entities(keys: list[str]) -> list[dict[str, str]]:
    entities = []
    for given in keys:
        entity = {}
        for part in given.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise typer.BadParameter(f"{given!r}: give key=value (several keys: a=1,b=2)", param_hint="--key")
            entity[name.strip()] = value.strip()
        entities.append(entity)
    return entities


def online_get(
    ctx: typer.Context,
    project: str,
    group: str,
    key: Annotated[
        list[str], typer.Option("--key", "-k", help="an entity's join keys, key=value (a=1,b=2); repeat per entity")
    ],
    feature: Annotated[list[str] | None, typer.Option("--feature", "-f", help="only these features")] = None,
) -> None:
    """Show what the online store holds for some entities: values, event time, age and FRESH/STALE/MISSING, read as
    the prediction service reads them (the store `BOTTEGA_ONLINE_STORE` configures)."""
    require("pyarrow", "store")
    entities = _entities(key)
    with client(ctx) as sdk:
        rows = sdk.get_online_features(project, group, entities, features=feature or None)
    data = [row.as_dict() for row in rows]
    if state(ctx).as_json:
        emit(ctx, data)
        return
    shown = [
        {("age" if k == "age_seconds" else k): (_age(v) if k == "age_seconds" else v) for k, v in r.items()}
        for r in data
    ]
    emit(ctx, shown, title=f"{project}:{group} online")  # keys, status, event_time, age, then the features


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
