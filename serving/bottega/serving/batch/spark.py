"""The Spark batch engine: the same scoring as the local engine, distributed.

The input (Parquet, or CSV with a header) is read as a DataFrame; the store features are joined point in time by
the Spark engine of the feature store (one windowed join per feature group, no collect to the driver); `mapInPandas`
scores each partition with the online-serving runtime, loaded once per task from the version's artifact bytes
(broadcast once, written to a local folder on each executor, reused by later tasks); on-demand features are computed
in the same task. Spark writes the Parquet folder under a temporary name that is renamed into place when the write
succeeds. Rows per Arrow batch (and so per `predict` call) follow `chunk_size`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from bottega.serving.batch.output import staged_hadoop
from bottega.serving.batch.plan import (
    COUNTS,
    PREDICTED_CLASS,
    BatchInputError,
    ColumnKind,
    Plan,
    ScoreRequest,
    ScoreResult,
    build_plan,
    class_type,
    matrix,
    output_table,
    prediction_kind,
    resolve,
)

if TYPE_CHECKING:
    from bottega.sdk import Client
    from bottega.serving.runtimes.loader import ArtifactCache, LoadedArtifacts

TS = "__bottega_ts"
BATCH_ROWS_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def spark_kind(dtype: Any) -> ColumnKind:
    from pyspark.sql import types as T

    if isinstance(dtype, T.BooleanType):
        return "bool"
    if isinstance(dtype, T.NumericType):
        return "number"
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType | T.DateType):
        return "timestamp"
    if isinstance(dtype, T.StringType):
        return "string"
    return "other"


def read_input(spark: Any, uri: str) -> Any:
    """The input as a DataFrame: CSV (header, inferred types) for `.csv` paths, else Parquet."""
    from pyspark.errors import AnalysisException

    path = Path(uri[7:] if uri.startswith("file://") else uri)
    csv = uri.lower().endswith(".csv") or (
        "://" not in uri and path.is_dir() and any(path.rglob("*.csv")) and not any(path.rglob("*.parquet"))
    )
    try:
        if csv:
            return spark.read.option("header", True).option("inferSchema", True).csv(uri)
        return spark.read.parquet(uri)
    except AnalysisException as exc:
        raise BatchInputError(f"input: {uri!r} cannot be read: {str(exc).splitlines()[0]}") from exc


def pack(artifacts: LoadedArtifacts) -> dict[str, bytes]:
    """The version's files by artifact path (what is broadcast to executors)."""
    return {name: Path(path).read_bytes() for name, path in artifacts.files.items()}


def materialize(blobs: Mapping[str, bytes], meta: LoadedArtifacts) -> LoadedArtifacts:
    """The artifacts written once per executor under the temp folder (keyed by their content), as LoadedArtifacts."""
    digest = hashlib.sha256()
    for name in sorted(blobs):
        digest.update(name.encode() + b"\0" + hashlib.sha256(blobs[name]).digest())
    cache = Path(tempfile.gettempdir()) / "bottega-batch"
    base = cache / meta.project / meta.model / f"{meta.version}-{digest.hexdigest()[:16]}"
    if not base.is_dir():
        base.parent.mkdir(parents=True, exist_ok=True)
        tmp = base.parent / f".{base.name}.tmp-{uuid.uuid4().hex[:8]}"
        for name, data in blobs.items():
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"artifact path {name!r} leaves the version folder")
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_bytes(data)
        try:
            os.rename(tmp, base)
        except OSError:  # another task of this executor got there first
            shutil.rmtree(tmp, ignore_errors=True)
    files = {name: base / name for name in blobs}
    return replace(meta, root=base, files=files, venv_root=cache / ".venvs")


def scorer(
    shipped: Any, meta: LoadedArtifacts, plan: Plan, transforms: list[tuple[Any, list[str]]], scored_at: datetime
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function `mapInPandas` runs in each task: load the runtime once, then score every batch."""

    def score(frames: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from bottega.feature_store.offline.pit_duckdb import column_name
        from bottega.feature_store.on_demand import add_on_demand_columns
        from bottega.serving.batch.plan import status_counts
        from bottega.serving.runtimes.loader import load_runtime

        runtime = load_runtime(materialize(shipped.value, meta))
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if transforms:
                    table = add_on_demand_columns(table, transforms, column_name)
                predictions = runtime.predict(matrix([table.column(n) for n in plan.input_names]))
                counts = status_counts(table, plan) if plan.store_refs else None
                yield output_table(table, predictions, plan, scored_at, counts).to_pandas()
        finally:
            runtime.close()

    return score


def _timestamp(frame: Any, name: str) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = frame.schema[name].dataType
    if isinstance(dtype, T.StringType):
        return F.to_timestamp(F.col(name))
    return F.col(name).cast("timestamp")


def join_features(
    spark: Any, frame: Any, plan: Plan, resolution: Any, offline_root: str | None
) -> tuple[Any, list[tuple[Any, list[str]]]]:
    """The input with a `<group>__<feature>` column per stored feature (and per on-demand input), joined point in
    time on Spark; and the on-demand transforms still to run, with the outputs wanted of each."""
    from pyspark.sql import functions as F

    from bottega.feature_store.config import StoreSettings
    from bottega.feature_store.offline.pit_duckdb import ROW, plan_groups
    from bottega.feature_store.offline.pit_spark import _asof
    from bottega.feature_store.offline.store import OfflineStore
    from bottega.feature_store.on_demand import OnDemandTransform
    from bottega.feature_store.training import schemas_from_resolution
    from bottega.feature_store.types import FeatureRef

    refs = [FeatureRef.parse(r) for r in plan.store_refs]
    transforms = {(g.project, g.group): OnDemandTransform.from_resolved(g) for g in resolution.groups if g.on_demand}
    computed: dict[tuple[str, str], list[str]] = {}
    for ref in refs:
        if ref.group_key in transforms:
            computed.setdefault(ref.group_key, []).append(ref.feature)
    stored = [r for r in refs if r.group_key not in transforms]
    inputs = [ref for key in computed for ref in transforms[key].inputs.values()]
    store = OfflineStore(offline_root) if offline_root else StoreSettings.from_env().offline()
    assert plan.timestamp_column is not None
    frame = frame.withColumnsRenamed({column: key for key, column in plan.key_columns.items()})
    labeled = frame.withColumn(TS, _timestamp(frame, plan.timestamp_column))
    labeled = labeled.withColumn(ROW, F.monotonically_increasing_id())  # stable: computed on the file scan
    result = labeled
    for schema, group_refs in plan_groups(list(dict.fromkeys([*stored, *inputs])), schemas_from_resolution(resolution)):
        joined = _asof(spark, store, labeled, schema, group_refs, TS, with_status=True)
        result = result.join(joined, on=ROW, how="left")
    result = result.drop(ROW, TS).withColumnsRenamed(dict(plan.key_columns))  # back to the input's names
    return result, [(transforms[key], names) for key, names in computed.items()]


def output_schema(frame: Any, plan: Plan) -> Any:
    from pyspark.sql import types as T

    prediction = {"scalar": T.DoubleType(), "vector": T.ArrayType(T.DoubleType()), "json": T.StringType()}
    fields = [frame.schema[name] for name in plan.keep]
    fields.append(T.StructField(plan.prediction_column, prediction[plan.prediction]))
    if plan.classes:
        label = {"bool": T.BooleanType(), "int64": T.LongType(), "double": T.DoubleType()}
        fields.append(T.StructField(PREDICTED_CLASS, label.get(str(class_type(plan.classes)), T.StringType())))
        fields += [T.StructField(name, T.DoubleType()) for name in plan.class_columns[1:]]
    if plan.store_refs:
        fields += [T.StructField(name, T.IntegerType()) for name in COUNTS]
    fields += [T.StructField("model", T.StringType()), T.StructField("version", T.LongType())]
    fields.append(T.StructField("scored_at", T.TimestampType()))
    return T.StructType(fields)


def score_spark(spark: Any, client: Client, request: ScoreRequest, cache: ArtifactCache) -> ScoreResult:
    """Score `request.input` on Spark and write `request.output` (a Parquet folder)."""
    from bottega.serving.runtimes.loader import load_runtime

    started = time.monotonic()
    artifacts = cache.fetch(request.project, request.model, request.version)
    runtime = load_runtime(artifacts)  # fails here, on the driver, when the version cannot be served
    kind = prediction_kind(runtime.flavor, artifacts.task)
    runtime.close()
    frame = read_input(spark, request.input)
    kinds = {f.name: spark_kind(f.dataType) for f in frame.schema.fields}
    resolution = resolve(client, artifacts.signature)
    plan = build_plan(request, artifacts.signature, resolution, kinds, prediction=kind)
    frame = frame.select(*plan.read_columns)
    transforms: list[tuple[Any, list[str]]] = []
    if plan.store_refs:
        frame, transforms = join_features(spark, frame, plan, resolution, request.offline_root)
    shipped = spark.sparkContext.broadcast(pack(artifacts))
    meta = replace(artifacts, files={}, venv_root=None)
    score = scorer(shipped, meta, plan, transforms, datetime.now(UTC))
    scored = frame.mapInPandas(score, schema=output_schema(frame, plan))
    previous = spark.conf.get(BATCH_ROWS_CONF, None)
    spark.conf.set(BATCH_ROWS_CONF, str(request.chunk_size))
    try:
        with staged_hadoop(spark, request.output) as tmp:
            scored.write.parquet(tmp)
            rows = int(spark.read.parquet(tmp).count())
    finally:
        if previous is None:
            spark.conf.unset(BATCH_ROWS_CONF)
        else:
            spark.conf.set(BATCH_ROWS_CONF, previous)
        shipped.destroy()
    return ScoreResult(
        rows=rows,
        output=request.output,
        model=request.model,
        version=request.version,
        seconds=time.monotonic() - started,
        engine="spark",
    )
