"""The scale-out batch pipeline (Spark): the same definitions, store layout and guarantees as the DuckDB engine.

`run_batch_spark(spark, group, schema, offline, online, start, end)` computes a batch feature group for
`[start, end)` in a child session of `spark` (its own temporary views and settings, UTC):
1. the source is read with Spark (Parquet or CSV with a header; a path, a glob or any URL Spark reads) and exposed
   as the temporary view `source`; `transform_sql` runs as Spark SQL over it, or the Python transform
   `package.module:function` is called with the source as a PySpark DataFrame and must return one;
2. its rows with `start <= event_time < end` are checked (join keys, a timezone-aware `event_time`, every declared
   feature) and cast to the group's types;
3. they are upserted into the offline store by Spark (`upsert_offline`): each touched bucket (a day or a month,
   as `OfflineStore` decides) is merged with its stored rows (new rows win on (entity keys, event_time)), written
   by Spark and swapped into place, with the store's file names, so the DuckDB engine, the training-set joins and
   this engine share the same files; re-running a range changes nothing;
4. when the group is online, the latest row per entity is streamed to the driver in chunks and written to the
   online store (an older event never replaces a newer one there).

Differences from the DuckDB engine: the SQL is Spark SQL (write the common subset to run a group on both), values
are cast to the declared types by Spark's rules, and duplicate (entity keys, event_time) rows in one run keep the
last one in Spark's row order.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bottega.core.extras import require
from bottega.core.keys import renames_to_keys
from bottega.feature_store.batch.duckdb_pipeline import BatchResult, PipelineError, Progress
from bottega.feature_store.definitions import BatchFeatureGroup
from bottega.feature_store.offline.buckets import dir_name as bucket_dir_name
from bottega.feature_store.offline.pit_spark import SPARK_TYPES
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore, as_utc
from bottega.feature_store.streaming.events import from_micros
from bottega.feature_store.types import GroupSchema, ValueType

SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
ONLINE_CHUNK = 5_000


def pipeline_session(spark: Any) -> Any:
    """A child session (shared SparkContext, its own temporary views and SQL settings) set up for the stores."""
    session = spark.newSession()
    for key, value in SESSION_CONF.items():
        session.conf.set(key, value)
    return session


def read_source(session: Any, group: BatchFeatureGroup) -> Any:
    """The group's source. Spark cannot read Parquet's nanosecond timestamps (pandas' default) as timestamps: they
    are read as longs and turned into microsecond timestamps, as the DuckDB engine reads them."""
    from pyspark.sql import functions as F

    reader = session.read
    if group.source.format == "csv":
        return reader.option("header", "true").option("inferSchema", "true").csv(group.source.path)
    nanos = nanosecond_columns(group.source.path)
    if not nanos:
        return reader.parquet(group.source.path)
    session.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    frame = reader.parquet(group.source.path)
    micros = {name: F.timestamp_micros(F.floor(F.col(f"`{name}`") / 1000)) for name in nanos}
    naive = {name: micros[name].cast("timestamp_ntz") for name, zoned in nanos.items() if not zoned}
    return frame.withColumns({**micros, **naive})


def nanosecond_columns(path: str) -> dict[str, bool]:
    """The Parquet source's nanosecond timestamp columns (name -> has a time zone); empty when its schema cannot be
    read from here (a URL that only the cluster reaches: Spark then reads it as it is)."""
    import glob

    import pyarrow as pa
    import pyarrow.dataset as ds

    paths = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
    try:
        schema = ds.dataset(paths if len(paths) > 1 else paths[0], format="parquet").schema
    except (OSError, ValueError, IndexError, pa.ArrowException):
        return {}
    return {f.name: f.type.tz is not None for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"}


def transformed(session: Any, group: BatchFeatureGroup) -> Any:
    """The transform's output over the whole source, as a (lazy) Spark DataFrame."""
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame

    from bottega.core.functions import FunctionError

    try:
        source = read_source(session, group)
        if group.transform is None:
            source.createOrReplaceTempView("source")
            return _keys_renamed(group, session.sql(group.transform_sql))
        function = group.transform_function()
    except (PySparkException, FunctionError) as exc:
        raise PipelineError(f"feature group {group.name!r}: the source or transform failed: {exc}") from exc
    try:
        output = function(source)
    except Exception as exc:
        raise PipelineError(f"feature group {group.name!r}: the transform {group.transform} failed: {exc!r}") from exc
    if not isinstance(output, DataFrame):
        raise PipelineError(
            f"feature group {group.name!r}: the transform {group.transform} returned {type(output).__name__}; on the "
            "Spark engine it must return a PySpark DataFrame"
        )
    return _keys_renamed(group, output)


def _keys_renamed(group: BatchFeatureGroup, frame: Any) -> Any:
    """The transform's output with the group's `key_columns` renamed to the join keys."""
    try:
        renames = renames_to_keys(frame.columns, group.key_columns, f"feature group {group.name!r}: the transform")
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    return frame.withColumnsRenamed(renames) if renames else frame


def conform(group_name: str, schema: GroupSchema, frame: Any) -> Any:
    """The group's columns (keys, features, event_time) cast to its types; a clear error when one is missing."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    needed = [*schema.key_names, "event_time", *(n for n, _ in schema.features)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise PipelineError(f"feature group {group_name!r}: the transform does not return {missing}")
    if not isinstance(frame.schema["event_time"].dataType, TimestampType):
        raise PipelineError(
            f"feature group {group_name!r}: `event_time` must be a timezone-aware timestamp, "
            f"not {frame.schema['event_time'].dataType.simpleString()}"
        )
    check_fractions(group_name, schema, frame)
    typed = [F.col(f"`{n}`").cast(SPARK_TYPES[t.value]).alias(n) for n, t in (*schema.entity_keys, *schema.features)]
    return frame.select(*typed, F.col("event_time"))


def check_fractions(group_name: str, schema: GroupSchema, frame: Any) -> None:
    """Refuse fractional values for `int` columns (Spark's cast would truncate 4.5 to 4 silently), naming the
    column, its type, one offending value and the fixes, before anything is written."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DecimalType, DoubleType, FloatType

    for name, vtype in (*schema.entity_keys, *schema.features):
        data_type = frame.schema[name].dataType
        if ValueType(vtype) is not ValueType.int or not isinstance(data_type, DoubleType | FloatType | DecimalType):
            continue
        column = F.col(f"`{name}`")
        hit = frame.where(column.isNotNull() & ~F.isnan(column) & (column != F.floor(column))).select(column).first()
        if hit is not None:
            raise PipelineError(
                f"feature group {group_name!r}: {name!r} is declared int but the transform returns "
                f"{data_type.simpleString()} values that do not fit (e.g. {hit[0]!r}); cast it in the SQL "
                f"(e.g. CAST({name} AS BIGINT) or round({name})) or declare dtype float"
            )


def compute_spark(session: Any, group: BatchFeatureGroup, schema: GroupSchema, start: datetime, end: datetime) -> Any:
    """The transform's rows for `[start, end)` as a Spark DataFrame with the group's typed columns."""
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise PipelineError(f"empty time range: start {start} is not before end {end}")
    frame = transformed(session, group)
    try:
        rows = conform(group.name, schema, frame)
    except PySparkException as exc:
        raise PipelineError(f"feature group {group.name!r}: the source or transform failed: {exc}") from exc
    return rows.where((F.col("event_time") >= F.lit(start)) & (F.col("event_time") < F.lit(end)))


def _stored_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


def upsert_offline(offline: OfflineStore, schema: GroupSchema, rows: Any, *, new_periods: bool = True) -> int:
    """Upsert typed rows (keys, features, event_time) into the offline store with Spark; the number of distinct
    (entity keys, event_time) rows written. Same result and layout as `OfflineStore.upsert` (the same buckets:
    `OfflineStore.plan` decides on the same per-day counts); `new_periods=False` keeps new periods in day buckets."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    keys = [*schema.key_names, "event_time"]
    columns = [*schema.key_names, *(n for n, _ in schema.features), "event_time"]
    day = F.date_format(F.col("event_time"), "yyyy-MM-dd")
    counted = rows.groupBy(day.alias("day")).agg(F.count("*").alias("rows"), F.count_distinct(*keys).alias("n"))
    touched = [r for r in counted.collect() if r["day"]]
    if not touched:
        return 0
    plan = offline.plan(schema, {r["day"]: int(r["rows"]) for r in touched}, new_periods=new_periods)
    year, month = F.date_format(F.col("event_time"), "yyyy"), F.date_format(F.col("event_time"), "yyyy-MM")
    label = (
        F.when(year.isin(sorted(plan.years)), F.concat(F.lit("y"), year))
        .when(month.isin(sorted(plan.months)), F.concat(F.lit("m"), month))
        .otherwise(F.concat(F.lit("d"), day))
    )
    labels = sorted({plan.label(r["day"]) for r in touched})
    group_dir = offline.group_dir(schema)
    new = rows.select(*columns).withColumns(
        {"__src": F.lit(1), "__ord": F.monotonically_increasing_id(), "__file": F.lit(None).cast("string")}
    )
    old_files = [str(f) for b in labels for f in _stored_files(group_dir / bucket_dir_name(b))]
    merged = new
    if old_files:
        old = spark.read.parquet(*old_files).select(
            *[F.col(c).cast(new.schema[c].dataType) for c in columns],
            F.lit(0).alias("__src"),
            F.lit(None).cast("bigint").alias("__ord"),
            F.input_file_name().alias("__file"),
        )
        merged = new.unionByName(old)
    newest = Window.partitionBy(*keys).orderBy(F.desc("__src"), F.desc("__ord"), F.desc("__file"))
    result = (
        merged.withColumn("__n", F.row_number().over(newest))
        .where("__n = 1")
        .select(*columns, label.alias("bucket"))
        .repartition("bucket")
        .sortWithinPartitions(*keys)
    )
    staging = group_dir.parent / f".{group_dir.name}.spark-{uuid.uuid4().hex[:8]}"
    try:
        result.write.mode("overwrite").partitionBy("bucket").parquet(str(staging))
        for b in labels:
            offline.swap_in(staging / f"bucket={b}", group_dir / bucket_dir_name(b))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sum(int(r["n"]) for r in touched)


def latest_per_entity(schema: GroupSchema, rows: Any) -> Any:
    """One row per entity: the one with the latest event_time (event_time as epoch µs in `__us`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest = Window.partitionBy(*schema.key_names).orderBy(F.desc("event_time"))
    return (
        rows.withColumn("__n", F.row_number().over(latest))
        .where("__n = 1")
        .select(*schema.key_names, *(n for n, _ in schema.features), F.unix_micros("event_time").alias("__us"))
    )


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        record = row.asDict()
        record["event_time"] = from_micros(record.pop("__us"))
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_online(online: OnlineStore, schema: GroupSchema, latest: Any, *, chunk: int = ONLINE_CHUNK) -> int:
    """Write rows from `latest_per_entity` to the online store through the driver, `chunk` rows at a time (one
    Spark partition of about `chunk` rows is fetched while the previous one is written), each chunk as one Arrow
    table through the store's columnar `write_table` (the same path the DuckDB engine uses)."""
    import pyarrow as pa

    online.create_group(schema)
    count = latest.count()
    if not count:
        return 0
    parts = latest.coalesce(max(1, -(-count // chunk))).toLocalIterator(prefetchPartitions=True)
    return sum(online.write_table(schema, pa.Table.from_pylist(part)) for part in _chunks(parts, chunk))


def run_batch_spark(
    spark: Any,
    group: BatchFeatureGroup,
    schema: GroupSchema,
    offline: OfflineStore,
    online: OnlineStore | None,
    start: datetime,
    end: datetime,
    *,
    progress: Progress | None = None,
) -> BatchResult:
    """Compute `[start, end)` on Spark, upsert it offline and materialize it online (see the module doc)."""
    require("pyspark", "spark")
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    report = progress or (lambda _stage, _n: None)
    session = pipeline_session(spark)
    rows = compute_spark(session, group, schema, start, end).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        try:
            computed = rows.count()
        except PySparkException as exc:
            raise PipelineError(f"feature group {group.name!r}: computing the transform failed: {exc}") from exc
        report("computed", computed)
        newest = rows.agg(F.unix_micros(F.max("event_time"))).first()[0] if computed else None
        written = upsert_offline(offline, schema, rows)
        report("offline", written)
        materialized = 0
        if group.online and online is not None and written:
            materialized = write_online(online, schema, latest_per_entity(schema, rows))
            report("online", materialized)
    finally:
        rows.unpersist()
    return BatchResult(
        group=group.name,
        start=start,
        end=end,
        rows_offline=written,
        rows_online=materialized,
        last_event_time=from_micros(newest) if newest is not None else None,
    )


def run_batch_engine(
    engine: str,
    group: BatchFeatureGroup,
    schema: GroupSchema,
    offline: OfflineStore,
    online: OnlineStore | None,
    start: datetime,
    end: datetime,
    *,
    progress: Progress | None = None,
) -> BatchResult:
    """Run a batch group on `engine`: `duckdb` (embedded) or `spark` (the running session, or a new one built by
    `spark_session.build_session` and stopped afterwards). For the CLI and the `features.batch` job."""
    if engine == "duckdb":
        from bottega.feature_store.batch.duckdb_pipeline import run_batch

        return run_batch(group, schema, offline, online, start, end, progress=progress)
    if engine != "spark":
        raise ValueError(f"unknown batch engine {engine!r}: choose duckdb or spark")
    from bottega.feature_store.spark_session import spark_session

    with spark_session(f"bottega-batch-{schema.project}-{group.name}") as spark:
        return run_batch_spark(spark, group, schema, offline, online, start, end, progress=progress)
