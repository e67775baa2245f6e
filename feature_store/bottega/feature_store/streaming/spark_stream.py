"""A streaming feature group on Spark Structured Streaming: the Kafka-consumer pipeline's values, scaled out.

`run_spark_stream(spark, group, schema, bootstrap, offline, online, checkpoint, ...)` runs one streaming query:

    Kafka source (the group's topic, from the earliest offset)
      -> groupBy(Kafka partition).applyInPandasWithState: the micro-batch's records of each partition, in offset
         order, go through the same `EventDecoder` and `WindowAggregator` as the consumer (`processor`), whose
         state (the partition's sliding windows) lives in Spark's state store, checkpointed with the offsets
      -> foreachBatch: the emitted rows are upserted offline by Spark (`batch.spark_pipeline.upsert_offline`), the
         newest row per entity (shifted by its revision, as in `sink.online_rows`) is written online through the
         store's Python client (for Cassandra the Python driver: no released Spark Cassandra connector supports
         Spark 4), and dead letters go to `<topic>.dlq`; Spark commits the micro-batch after that.

Parity with the consumer: for the same records the offline rows, the online values and the dead letters (reasons,
details, offsets) are the same, because the same code sees each partition's records in the same order. A restart
resumes from the checkpoint's state and offsets: nothing is replayed, nothing is counted twice. A micro-batch that
failed before its commit runs again with the same records and state; the outputs are idempotent, dead letters
at-least-once (as with the consumer).

Where Structured Streaming differs from the consumer:
- Late events: Spark's own watermark (`withWatermark`) is global to the query and only moves between micro-batches,
  which would accept or drop other events than the consumer does. It is not used: the aggregator applies the
  consumer's per-partition, per-record watermark itself, so late handling is identical.
- Parallelism of the stateful step is the number of Kafka partitions (like a consumer group's), and each
  micro-batch rewrites the whole window state of the partitions it touched to the state store (pickled).
- Offsets live in the checkpoint; nothing is committed to a Kafka consumer group. A changed group definition
  (other aggregations or lateness) needs a new checkpoint (the query fails with a message saying so).
- Stopping: `available_now` (what the topic holds now, then stop), `max_batches`, `idle_timeout_s` or `stop`;
  there is no per-event `max_events`.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.batch.spark_pipeline import pipeline_session, upsert_offline, write_online
from bottega.feature_store.definitions import StreamingFeatureGroup
from bottega.feature_store.offline.pit_spark import SPARK_TYPES
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.spark_session import FETCH_COMMAND, SparkJarsMissing, has_kafka_source
from bottega.feature_store.streaming.aggregator import Row, WindowAggregator, WindowSpec
from bottega.feature_store.streaming.events import LATE, BadEvent, EventDecoder, dead_letter, from_micros, to_micros
from bottega.feature_store.streaming.sink import DeadLetters, online_rows
from bottega.feature_store.types import GroupSchema

STATE_VERSION = 1
KIND, TS, DLQ_KEY, DLQ_VALUE = "__kind", "__ts_us", "__dlq_key", "__dlq_value"
COUNTERS = ("__consumed", "__emitted", "__dead", "__late", "__max_ts_us")  # one row per partition and batch


@dataclass
class SparkStreamStats:
    """What a run did: records consumed, rows emitted (corrections included), rows written, dead letters (`late`
    included), micro-batches with data."""

    consumed: int = 0
    emitted: int = 0
    rows_offline: int = 0
    rows_online: int = 0
    dead_lettered: int = 0
    late: int = 0
    batches: int = 0
    last_event_us: int | None = None  # the newest event time processed, epoch µs
    last_data_at: float = field(default_factory=time.monotonic, repr=False)


Progress = Callable[[SparkStreamStats], None]


def default_checkpoint(project: str, group: str, env: Mapping[str, str] | None = None) -> Path:
    """`$BOTTEGA_SPARK_CHECKPOINTS/<project>/<group>` (default under `$BOTTEGA_HOME/spark-checkpoints`)."""
    env = os.environ if env is None else env
    home = Path(env.get("BOTTEGA_HOME", str(Path.home() / ".bottega"))).expanduser()
    root = Path(env.get("BOTTEGA_SPARK_CHECKPOINTS", str(home / "spark-checkpoints"))).expanduser()
    return root / project / group


def output_schema(schema: GroupSchema) -> Any:
    """The stateful step's output: feature rows (offline, online), dead letters and one counters row per partition."""
    from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, _parse_datatype_string

    fields = [StructField(KIND, StringType(), False)]
    fields += [
        StructField(n, _parse_datatype_string(SPARK_TYPES[t.value]), True)
        for n, t in (*schema.entity_keys, *schema.features)
    ]
    fields += [
        StructField(TS, LongType(), True),
        StructField(DLQ_KEY, BinaryType()),
        StructField(DLQ_VALUE, BinaryType()),
    ]
    fields += [StructField(name, LongType(), True) for name in COUNTERS]
    return StructType(fields)


class _Output:
    """Columns of one partition's output, filled row by row (object columns keep ints exact and None as null)."""

    def __init__(self, schema: GroupSchema) -> None:
        self.schema = schema
        self.names = [KIND, *schema.key_names, *(n for n, _ in schema.features), TS, DLQ_KEY, DLQ_VALUE, *COUNTERS]
        self.columns: dict[str, list[Any]] = {name: [] for name in self.names}

    def add(self, kind: str, values: Mapping[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(kind if name == KIND else values.get(name))

    def add_rows(self, rows: list[Row]) -> None:
        for row in rows:
            self.add(
                "offline", {**dict(zip(self.schema.key_names, row.keys, strict=True)), **row.values, TS: row.ts_us}
            )
        for record in online_rows(self.schema, rows):
            self.add("online", {**record, TS: to_micros(record.pop("event_time"))})

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in self.columns.items()})


def partition_function(group: StreamingFeatureGroup, schema: GroupSchema) -> Callable[..., Iterator[Any]]:
    """The `applyInPandasWithState` function: one Kafka partition's records of a micro-batch, in offset order."""
    spec = WindowSpec.from_group(group)

    def process(key: tuple[Any, ...], frames: Iterator[Any], state: Any) -> Iterator[Any]:
        import pandas as pd

        aggregator = _restore(state, spec, group.name)
        decoder = EventDecoder(schema.entity_keys, group.event_schema, group.timestamp_field, group.key_columns)
        records = pd.concat(list(frames), ignore_index=True).sort_values("offset", kind="stable")
        out = _Output(schema)
        emitted: dict[tuple[tuple[Any, ...], int], Row] = {}
        counts = dict.fromkeys(COUNTERS, 0)
        for topic, offset, record_key, value in zip(
            records["topic"], records["offset"], records["key"], records["value"], strict=True
        ):
            counts["__consumed"] += 1
            letter = _consume(aggregator, decoder, value, emitted, counts)
            if letter is not None:
                counts["__dead"] += 1
                raw = None if value is None else bytes(value)
                detail = dead_letter(*letter, topic=topic, partition=int(key[0]), offset=int(offset), raw=raw)
                out.add("dlq", {DLQ_KEY: None if record_key is None else bytes(record_key), DLQ_VALUE: detail})
        out.add_rows(list(emitted.values()))
        aggregator.prune()
        out.add("counts", {**counts, "__max_ts_us": aggregator.max_ts_us})
        state.update((pickle.dumps((STATE_VERSION, aggregator), protocol=pickle.HIGHEST_PROTOCOL),))
        yield out.frame()

    return process


def _restore(state: Any, spec: WindowSpec, group: str) -> WindowAggregator:
    if not state.exists:
        return WindowAggregator(spec)
    version, aggregator = pickle.loads(state.get[0])
    if version != STATE_VERSION or not isinstance(aggregator, WindowAggregator):
        raise ValueError(f"stream {group!r}: the checkpoint's state has an unknown format; use a new checkpoint")
    if aggregator.spec != spec:
        raise ValueError(
            f"stream {group!r}: the checkpoint was made for another definition of the group (aggregations or "
            "lateness changed); start from a new checkpoint"
        )
    return aggregator


def _consume(
    aggregator: WindowAggregator,
    decoder: EventDecoder,
    value: Any,
    emitted: dict[tuple[tuple[Any, ...], int], Row],
    counts: dict[str, int],
) -> tuple[str, str] | None:
    """Add one record to the windows; the (reason, detail) of its dead letter when it is rejected."""
    try:
        event = decoder.decode(None if value is None else bytes(value))
    except BadEvent as bad:
        return bad.code, bad.detail
    result = aggregator.add(event.keys, event.ts_us, event.fields)
    if result.late:
        assert result.watermark_us is not None
        counts["__late"] += 1
        watermark = from_micros(result.watermark_us)
        return LATE, f"event time {from_micros(event.ts_us)} is before the watermark {watermark}"
    counts["__emitted"] += len(result.rows)
    for row in result.rows:
        emitted[(row.keys, row.ts_us)] = row
    return None


class BatchWriter:
    """The foreachBatch sink: offline upsert, online write, dead letters; Spark commits the batch afterwards."""

    def __init__(
        self,
        group: StreamingFeatureGroup,
        schema: GroupSchema,
        offline: OfflineStore,
        online: OnlineStore | None,
        dead_letters: DeadLetters,
        progress: Progress | None = None,
    ) -> None:
        self.schema = schema
        self.offline = offline
        self.online = online if group.online else None
        self.dead_letters = dead_letters
        self.progress = progress
        self.stats = SparkStreamStats()

    def __call__(self, frame: Any, batch_id: int) -> None:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            small = frame.where(F.col(KIND).isin("dlq", "counts")).select(KIND, DLQ_KEY, DLQ_VALUE, *COUNTERS).collect()
            features = [*self.schema.key_names, *(n for n, _ in self.schema.features)]
            rows = frame.where(F.col(KIND) == "offline").select(*features, F.timestamp_micros(TS).alias("event_time"))
            written = upsert_offline(self.offline, self.schema, rows, new_periods=False)  # day buckets, as the consumer
            materialized = 0
            if self.online is not None and written:
                latest = frame.where(F.col(KIND) == "online").select(*features, F.col(TS).alias("__us"))
                materialized = write_online(self.online, self.schema, latest)
            for letter in small:
                if letter[KIND] == "dlq":
                    key = None if letter[DLQ_KEY] is None else bytes(letter[DLQ_KEY])  # Spark gives bytearrays
                    self.dead_letters.send(key, bytes(letter[DLQ_VALUE]))
            self.dead_letters.flush()
        finally:
            frame.unpersist()
        self._count([r for r in small if r[KIND] == "counts"], written, materialized)

    def _count(self, counters: list[Any], written: int, materialized: int) -> None:
        stats = self.stats
        consumed = sum(r["__consumed"] for r in counters)
        stats.consumed += consumed
        stats.emitted += sum(r["__emitted"] for r in counters)
        stats.dead_lettered += sum(r["__dead"] for r in counters)
        stats.late += sum(r["__late"] for r in counters)
        stats.rows_offline += written
        stats.rows_online += materialized
        newest = [r["__max_ts_us"] for r in counters if r["__max_ts_us"] is not None]
        if newest and (stats.last_event_us is None or max(newest) > stats.last_event_us):
            stats.last_event_us = max(newest)
        if consumed:
            stats.batches += 1
            stats.last_data_at = time.monotonic()
        if self.progress is not None:
            self.progress(stats)


def start_query(
    spark: Any,
    group: StreamingFeatureGroup,
    schema: GroupSchema,
    bootstrap: str,
    checkpoint: str | Path,
    sink: Callable[[Any, int], None],
    *,
    available_now: bool = False,
    trigger_interval_s: float = 1.0,
    max_offsets_per_trigger: int | None = None,
    kafka_options: Mapping[str, str] | None = None,
) -> Any:
    """Start the streaming query (see the module doc); returns the StreamingQuery."""
    session = pipeline_session(spark)
    if not has_kafka_source(session):
        raise SparkJarsMissing(
            "this Spark session has no Kafka source: build it with "
            f"bottega.feature_store.spark_session.build_session(kafka=True) (jars: `{FETCH_COMMAND}`)"
        )
    reader = (
        session.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", group.topic)
        .option("startingOffsets", "earliest")
    )
    if max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    for key, value in (kafka_options or {}).items():
        reader = reader.option(key, value)
    records = reader.load().select("key", "value", "topic", "partition", "offset")
    rows = records.groupBy("partition").applyInPandasWithState(
        partition_function(group, schema), output_schema(schema), "state binary", "append", "NoTimeout"
    )
    writer = (
        rows.writeStream.foreachBatch(sink)
        .outputMode("append")
        .option("checkpointLocation", str(checkpoint))
        .queryName(f"bottega_{schema.table_name()}")
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{int(trigger_interval_s * 1000)} milliseconds")
    return writer.start()


def run_spark_stream(
    spark: Any,
    group: StreamingFeatureGroup,
    schema: GroupSchema,
    bootstrap: str,
    offline: OfflineStore,
    online: OnlineStore | None,
    checkpoint: str | Path,
    *,
    available_now: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
    max_batches: int | None = None,
    trigger_interval_s: float = 1.0,
    max_offsets_per_trigger: int | None = None,
    kafka_options: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> SparkStreamStats:
    """Run the group's streaming query until the topic is drained (`available_now`), `stop` is set, `max_batches`
    micro-batches with data ran, or none came for `idle_timeout_s`; returns what it did."""
    require("pyspark", "spark")
    require("kafka", "stream")
    if max_batches is not None and max_batches < 1:
        raise ValueError("max_batches must be at least 1")
    if group.online and online is not None:
        online.create_group(schema)
    dead_letters = DeadLetters(bootstrap, f"{group.topic}.dlq", client_id=f"bottega-spark-stream-{group.name}")
    sink = BatchWriter(group, schema, offline, online, dead_letters, progress)
    try:
        query = start_query(
            spark,
            group,
            schema,
            bootstrap,
            checkpoint,
            sink,
            available_now=available_now,
            trigger_interval_s=trigger_interval_s,
            max_offsets_per_trigger=max_offsets_per_trigger,
            kafka_options=kafka_options,
        )
        try:
            _wait(query, sink.stats, stop or threading.Event(), idle_timeout_s, max_batches)
        finally:
            query.stop()
    finally:
        dead_letters.close()
    return sink.stats


def _wait(
    query: Any, stats: SparkStreamStats, stop: threading.Event, idle_timeout_s: float | None, max_batches: int | None
) -> None:
    while not query.awaitTermination(0.2):  # raises StreamingQueryException when the query failed
        if stop.is_set() or (max_batches is not None and stats.batches >= max_batches):
            return
        if idle_timeout_s is not None and _idle(query, stats, idle_timeout_s):
            return


def _idle(query: Any, stats: SparkStreamStats, idle_timeout_s: float) -> bool:
    """No data for `idle_timeout_s`, counted once a trigger has completed and while none is running."""
    if query.lastProgress is None or query.status.get("isTriggerActive"):
        return False
    return time.monotonic() - stats.last_data_at >= idle_timeout_s
