"""The local batch engine: pyarrow reads the input in chunks, DuckDB joins each chunk's store features point in time
(`get_training_set`), the online-serving runtime predicts, and a Parquet writer appends the chunk's rows.

Memory is bounded by the chunk size (`chunk_size` rows at a time, plus the offline rows DuckDB reads for them), not
by the input. The output is a single Parquet file when `output` ends with `.parquet`, else a folder with one
`part-00000.parquet`; either way it appears only when the run succeeds (see output.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.serving.batch.output import column_kinds, local_path, open_input, staged_local
from bottega.serving.batch.plan import (
    COUNTS,
    PREDICTED_CLASS,
    BatchInputError,
    Plan,
    ScoreRequest,
    ScoreResult,
    build_plan,
    class_type,
    matrix,
    output_table,
    prediction_kind,
    prediction_type,
    resolve,
    status_counts,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from bottega.sdk import Client
    from bottega.serving.runtimes.base import Runtime
    from bottega.serving.runtimes.loader import ArtifactCache

log = logging.getLogger("bottega.serving.batch")
PART = "part-00000.parquet"


def chunks(dataset: Any, columns: list[str], size: int) -> Iterator[pa.Table]:
    """The dataset's rows in order, as tables of about `size` rows (at most 2 x size)."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for batch in dataset.to_batches(columns=columns, batch_size=size):
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= size:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def utc_timestamps(table: pa.Table, name: str) -> pa.Table:
    """The table with column `name` as timestamp[us, UTC], by the platform's one timestamp rule
    (`bottega.core.timestamps`: any unit and zone, naive values read as UTC with a warning, ISO text parsed)."""
    import pyarrow as pa

    from bottega.core.timestamps import to_utc_micros

    column = table.column(name)
    if column.type == pa.timestamp("us", tz="UTC"):
        return table
    try:
        converted = to_utc_micros(column, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise BatchInputError(f"input column {name!r} is not a timestamp: {exc}") from exc
    return table.set_column(table.schema.get_field_index(name), name, converted)


def score_chunk(
    client: Client, chunk: pa.Table, plan: Plan, runtime: Runtime, request: ScoreRequest
) -> tuple[Any, list[Any] | None]:
    """Predictions for one chunk (store features joined point in time, the matrix in signature order) and, for a
    model with store features, the per-row FRESH / STALE / MISSING counts."""
    from bottega.feature_store.training import get_training_set

    columns = [chunk.column(name) for name in plan.request_features]
    counts = None
    if plan.store_refs:
        assert plan.timestamp_column is not None
        labels = utc_timestamps(chunk.select(list(plan.join_columns)), plan.timestamp_column)
        joined = get_training_set(
            client,
            labels,
            list(plan.store_refs),
            timestamp_column=plan.timestamp_column,
            offline_root=request.offline_root,
            with_status=True,
            key_columns=plan.key_columns,
        )
        columns += [joined.column(name) for name in plan.store_columns]
        counts = status_counts(joined, plan)
    return runtime.predict(matrix(columns)), counts


def _empty(plan: Plan, schema: Any) -> pa.Table:
    import pyarrow as pa

    fields = [schema.field(name) for name in plan.keep]
    fields.append(pa.field(plan.prediction_column, prediction_type(plan.prediction)))
    if plan.classes:
        fields.append(pa.field(PREDICTED_CLASS, class_type(plan.classes)))
        fields += [pa.field(name, pa.float64()) for name in plan.class_columns[1:]]
    if plan.store_refs:
        fields += [pa.field(name, pa.int32()) for name in COUNTS]
    fields += [pa.field("model", pa.string()), pa.field("version", pa.int64())]
    fields.append(pa.field("scored_at", pa.timestamp("us", tz="UTC")))
    return pa.schema(fields).empty_table()


def _write(client: Client, dataset: Any, plan: Plan, runtime: Runtime, request: ScoreRequest, target: Path) -> int:
    import pyarrow.parquet as pq

    scored_at = datetime.now(UTC)
    writer = None
    rows = 0
    try:
        for chunk in chunks(dataset, list(plan.read_columns), request.chunk_size):
            predictions, counts = score_chunk(client, chunk, plan, runtime, request)
            table = output_table(chunk, predictions, plan, scored_at, counts)
            if writer is None:
                writer = pq.ParquetWriter(str(target), table.schema)
            writer.write_table(table)
            rows += table.num_rows
            log.info("scored %d rows", rows)
        if writer is None:
            pq.write_table(_empty(plan, dataset.schema), str(target))
    finally:
        if writer is not None:
            writer.close()
    return rows


def score_local(client: Client, request: ScoreRequest, cache: ArtifactCache) -> ScoreResult:
    """Score `request.input` with the version's runtime and write `request.output`; see the module docstring."""
    from bottega.serving.runtimes.loader import load_runtime

    started = time.monotonic()
    if request.chunk_size < 1:
        raise BatchInputError(f"chunk_size must be at least 1, not {request.chunk_size}")
    local_path(request.output, "output")
    dataset = open_input(request.input)
    artifacts = cache.fetch(request.project, request.model, request.version)
    runtime = load_runtime(artifacts)
    try:
        kind = prediction_kind(runtime.flavor, artifacts.task)
        resolution = resolve(client, artifacts.signature)
        plan = build_plan(request, artifacts.signature, resolution, column_kinds(dataset.schema), prediction=kind)
        with staged_local(request.output) as tmp:
            if request.output.endswith(".parquet"):
                rows = _write(client, dataset, plan, runtime, request, tmp)
            else:
                tmp.mkdir()
                rows = _write(client, dataset, plan, runtime, request, tmp / PART)
    finally:
        runtime.close()
    return ScoreResult(
        rows=rows,
        output=request.output,
        model=request.model,
        version=request.version,
        seconds=time.monotonic() - started,
        engine="local",
    )
