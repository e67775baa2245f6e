"""The streaming feature pipeline: a Kafka consumer that maintains a streaming feature group online and offline.

`run(group, schema, bootstrap, group_id, offline, online, ...)` consumes the group's topic in a consumer group
(kafka-python, `enable_auto_commit=False`) until `stop` is set, `max_events` new records were consumed, or no record
came for `idle_timeout_s`, then closes the consumer and returns `StreamStats`.

Per poll batch (see `aggregator` for the window semantics and `events` for the event format):
1. each record is decoded; a malformed one, or one older than its partition's watermark (reason "late"), goes to
   the dead-letter topic `<topic>.dlq` and processing goes on (bad input never stops the pipeline);
2. valid events update the windowed state of their partition, which emits rows (corrections included);
3. all emitted rows are appended to the offline store, the newest row per entity written to the online store (when
   the group is online), dead letters are flushed, and only THEN are the consumed offsets committed, each with the
   partition's max event time as commit metadata. The online write runs on a writer thread while the next poll is
   fetched and aggregated (the store, e.g. Cassandra, works meanwhile); the next batch first waits for it, and the
   commit follows (`settle`). A crash between the writes and the commit re-processes the batch:
   the outputs are idempotent (offline readers take the latest-written row per (entity, event_time), and the
   repeated rows carry the same values; online newest-wins with the same values and the same revision shift), so
   nothing is counted twice. Appending keeps a batch's cost independent of how much the day already holds;
   `compact_every_s` folds the appended files of each day into one (and once more when the run ends).

State and watermarks are per partition: the events of one entity must share a partition (produce them keyed by
the entity), which Kafka's default partitioner does for a key.

Restarts and rebalances rebuild state by REPLAY: when a partition is assigned, its committed offset C and committed
max event time M are read; with watermark WM = M - lateness the consumer seeks back to the first record whose Kafka
timestamp is at or after `WM - W_max - lateness` (`offsets_for_times`; the beginning without metadata), replays the
records before C into the state WITHOUT emitting or dead-lettering, then processes from C on as usual. This assumes
a record's Kafka timestamp is not earlier than its event time (true for CreateTime set at produce time, for
LogAppendTime, and for producers that set the event time): then every record skipped holds an event at or before
`WM - W_max`, which no future row can see. Replayed events that were late in the first run but are not recognised
as late (the watermark restarts lower) are all older than `WM - W_max` too, so the rebuilt state, and the
revisions derived from it, equal those of an uninterrupted run: a stopped and restarted processor ends with
exactly the values of one that never stopped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.definitions import StreamingFeatureGroup
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.streaming.aggregator import Row, WindowAggregator, WindowSpec
from bottega.feature_store.streaming.events import LATE, BadEvent, EventDecoder, dead_letter, from_micros
from bottega.feature_store.streaming.sink import DeadLetters, online_table, rows_table
from bottega.feature_store.types import GroupSchema

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    """What a run did. `consumed` counts new records (replayed ones are in `replayed`); `dead_lettered` includes
    `late`; `committed` maps partition -> the next offset committed."""

    consumed: int = 0
    replayed: int = 0
    emitted: int = 0
    rows_offline: int = 0
    rows_online: int = 0
    dead_lettered: int = 0
    late: int = 0
    batches: int = 0
    compacted_files: int = 0
    last_event_us: int | None = None  # the newest event time processed, epoch µs
    committed: dict[int, int] = field(default_factory=dict)


Progress = Callable[[StreamStats], None]


@dataclass
class _Partition:
    aggregator: WindowAggregator
    next_offset: int | None = None  # the offset to commit: last processed + 1
    replay_until: int | None = None  # records before this offset only rebuild state
    committed_max_us: int | None = None
    dirty: bool = False

    def end_replay(self) -> None:
        self.aggregator.advance(self.committed_max_us)
        self.replay_until = None


@dataclass
class _Rebalances:
    """What the rebalance listener saw during a poll, in order; handled after the poll returns (the listener runs
    on the consumer's I/O loop, where blocking calls such as `committed` must not be made)."""

    events: list[tuple[str, set[Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, partitions: Any) -> None:
        with self.lock:
            self.events.append((kind, set(partitions)))

    def drain(self) -> list[tuple[str, set[Any]]]:
        with self.lock:
            events, self.events = self.events, []
        return events


def _listener(rebalances: _Rebalances) -> Any:
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            rebalances.note("revoked", revoked)

        def on_partitions_assigned(self, assigned: Any) -> None:
            rebalances.note("assigned", assigned)

        def on_partitions_lost(self, lost: Any) -> None:
            rebalances.note("revoked", lost)

    return Listener()


def encode_metadata(max_ts_us: int | None) -> str:
    """The commit metadata: the partition's max event time (epoch µs), from which a restart finds its watermark."""
    return json.dumps({"v": 1, "max_ts_us": max_ts_us})


def decode_metadata(text: str | None) -> int | None:
    try:
        value = json.loads(text or "").get("max_ts_us")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class StreamProcessor:
    """One consumer's processing of a streaming group; `run` below is the way to use it."""

    def __init__(
        self,
        group: StreamingFeatureGroup,
        schema: GroupSchema,
        offline: OfflineStore,
        online: OnlineStore | None,
        consumer: Any,
        dead_letters: DeadLetters,
    ) -> None:
        self.group = group
        self.schema = schema
        self.spec = WindowSpec.from_group(group)
        self.decoder = EventDecoder(schema.entity_keys, group.event_schema, group.timestamp_field, group.key_columns)
        self.offline = offline
        self.online = online if group.online else None
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.rebalances = _Rebalances()
        self.partitions: dict[Any, _Partition] = {}
        self.stats = StreamStats()
        self._writer: ThreadPoolExecutor | None = None  # one thread for the online write in flight
        self._in_flight: Future[int] | None = None

    def subscribe(self) -> None:
        self.consumer.subscribe([self.group.topic], listener=_listener(self.rebalances))

    def poll(self, timeout_ms: int, max_records: int) -> tuple[dict[Any, list[Any]], bool]:
        """A poll's records for partitions that are ready, and whether partitions were (re)assigned."""
        records: dict[Any, list[Any]] = dict(self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records))
        fresh: set[Any] = set()
        for kind, partitions in self.rebalances.drain():
            for tp in partitions:
                if kind == "revoked":
                    self.partitions.pop(tp, None)
                    fresh.discard(tp)
                else:
                    fresh.add(tp)
        fresh |= {tp for tp in records if tp not in self.partitions}
        for tp in sorted(fresh):
            records.pop(tp, None)  # fetched from the committed offset: the replay starts earlier
            self._start_partition(tp)
        return records, bool(fresh)

    def _start_partition(self, tp: Any) -> None:
        """Fresh state for a newly assigned partition, and the seek that starts its replay."""
        part = _Partition(WindowAggregator(self.spec))
        committed = self.consumer.committed(tp, metadata=True)
        self.partitions[tp] = part
        if committed is None or committed.offset is None or committed.offset < 0:
            self.consumer.seek_to_beginning(tp)
            log.info("stream %s: %s has no committed offset, starting at the beginning", self.group.name, tp)
            return
        part.replay_until = part.next_offset = committed.offset
        part.committed_max_us = decode_metadata(committed.metadata)
        start = self._replay_start(tp, committed.offset, part.committed_max_us)
        if start is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, start)
        log.info(
            "stream %s: %s committed at %s, replaying from %s",
            self.group.name,
            tp,
            committed.offset,
            "the beginning" if start is None else start,
        )

    def _replay_start(self, tp: Any, committed: int, max_ts_us: int | None) -> int | None:
        """The first offset the replay needs (None: the beginning)."""
        if max_ts_us is None:
            return None
        lateness = self.spec.lateness_us
        target_ms = (max_ts_us - lateness - self.spec.max_window_us - lateness) // 1000
        if target_ms <= 0:
            return None
        found = self.consumer.offsets_for_times({tp: target_ms}).get(tp)
        return committed if found is None else min(found.offset, committed)

    def process(self, records: Mapping[Any, list[Any]]) -> None:
        """Process one poll's records and write the outputs; the online write runs while the next poll is fetched
        and processed, and the batch is committed once it is done (at the next `process` or `settle`)."""
        self.settle()
        emitted: dict[tuple[tuple[Any, ...], int], Row] = {}
        for tp, batch in records.items():
            part = self.partitions[tp]
            for record in batch:
                if part.replay_until is not None:
                    if record.offset < part.replay_until:
                        self._replay(part, record)
                        continue
                    part.end_replay()
                for row in self._consume(part, tp, record):
                    emitted[(row.keys, row.ts_us)] = row
                part.next_offset, part.dirty = record.offset + 1, True
        self._write(list(emitted.values()))
        for part in self.partitions.values():
            part.aggregator.prune()
            newest = part.aggregator.max_ts_us
            if newest is not None and (self.stats.last_event_us is None or newest > self.stats.last_event_us):
                self.stats.last_event_us = newest

    def compact(self) -> None:
        self.stats.compacted_files += self.offline.compact(self.schema)

    def _replay(self, part: _Partition, record: Any) -> None:
        """Rebuild state from an already processed record: no rows, no dead letters (both happened before)."""
        self.stats.replayed += 1
        try:
            event = self.decoder.decode(record.value)
        except BadEvent:
            return
        part.aggregator.add(event.keys, event.ts_us, event.fields, emit=False)

    def _consume(self, part: _Partition, tp: Any, record: Any) -> tuple[Row, ...]:
        self.stats.consumed += 1
        try:
            event = self.decoder.decode(record.value)
        except BadEvent as bad:
            self._dead_letter(tp, record, bad.code, bad.detail)
            return ()
        result = part.aggregator.add(event.keys, event.ts_us, event.fields)
        if result.late:
            assert result.watermark_us is not None
            detail = f"event time {from_micros(event.ts_us)} is before the watermark {from_micros(result.watermark_us)}"
            self._dead_letter(tp, record, LATE, detail)
            self.stats.late += 1
        self.stats.emitted += len(result.rows)
        return result.rows

    def _dead_letter(self, tp: Any, record: Any, reason: str, detail: str) -> None:
        value = dead_letter(
            reason, detail, topic=tp.topic, partition=tp.partition, offset=record.offset, raw=record.value
        )
        self.dead_letters.send(record.key, value)
        self.stats.dead_lettered += 1

    def _write(self, rows: list[Row]) -> None:
        """Append the rows offline now and start writing the newest row per entity online (see `settle`)."""
        if not rows:
            return
        # rows are unique per (keys, event_time): `process` keeps the last emission of each
        self.stats.rows_offline += self.offline.append(self.schema, rows_table(self.schema, rows), unique=True)
        if self.online is not None:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"bottega-stream-{self.group.name}-online")
            self._in_flight = self._writer.submit(self.online.write_table, self.schema, online_table(self.schema, rows))

    def settle(self) -> None:
        """Finish the processed batches: wait for the online write in flight (raising its error), flush the dead
        letters, then commit the offsets. Nothing is committed before both stores hold a batch's rows."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self.stats.rows_online += future.result()
        self.dead_letters.flush()
        if any(part.dirty for part in self.partitions.values()):
            self._commit()

    def close(self) -> None:
        """Stop the writer thread (after the write in flight, if any, without committing it)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._in_flight = None

    def _commit(self) -> None:
        from kafka import OffsetAndMetadata
        from kafka.errors import CommitFailedError

        offsets = {
            tp: OffsetAndMetadata(part.next_offset, encode_metadata(part.aggregator.max_ts_us), -1)
            for tp, part in self.partitions.items()
            if part.dirty and part.next_offset is not None
        }
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the group rebalanced: the new owner re-processes (idempotently)
            log.warning("stream %s: commit failed, the batch will be re-processed: %s", self.group.name, exc)
            return
        for tp, meta in offsets.items():
            self.partitions[tp].dirty = False
            self.stats.committed[tp.partition] = meta.offset
        self.stats.batches += 1


def run(
    group: StreamingFeatureGroup,
    schema: GroupSchema,
    bootstrap: str,
    group_id: str,
    offline: OfflineStore,
    online: OnlineStore | None,
    *,
    stop: threading.Event | None = None,
    max_events: int | None = None,
    idle_timeout_s: float | None = None,
    progress: Progress | None = None,
    batch_size: int = 500,
    poll_timeout_ms: int = 200,
    consumer_config: Mapping[str, Any] | None = None,
    compact_every_s: float | None = 300.0,
) -> StreamStats:
    """Consume `group.topic` as consumer group `group_id` until `stop` is set, `max_events` new records were
    consumed, or nothing arrived for `idle_timeout_s` seconds; returns the run's stats (see the module docstring).

    `progress` is called after each processed batch; the offline files are compacted every `compact_every_s`
    seconds and when the run ends (None: never)."""
    require("kafka", "stream")
    from kafka import KafkaConsumer

    if max_events is not None and max_events < 0:
        raise ValueError("max_events must not be negative")
    stop = stop or threading.Event()
    if group.online and online is not None:
        online.create_group(schema)
    config: dict[str, Any] = {
        "client_id": f"bottega-stream-{group.name}",
        "auto_offset_reset": "earliest",
        "max_poll_records": batch_size,
        **(consumer_config or {}),
    }
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, **config)
    dead_letters = DeadLetters(bootstrap, f"{group.topic}.dlq", client_id=f"bottega-stream-{group.name}-dlq")
    processor = StreamProcessor(group, schema, offline, online, consumer, dead_letters)
    loop = _Loop(stop, max_events, idle_timeout_s, progress, batch_size, poll_timeout_ms, compact_every_s)
    try:
        processor.subscribe()
        loop.run(processor)
        processor.settle()
        if compact_every_s is not None:
            processor.compact()
    finally:
        try:
            processor.close()
            consumer.close(autocommit=False)
        finally:
            dead_letters.close()
    return processor.stats


@dataclass
class _Loop:
    stop: threading.Event
    max_events: int | None
    idle_timeout_s: float | None
    progress: Progress | None
    batch_size: int
    poll_timeout_ms: int
    compact_every_s: float | None

    def run(self, processor: StreamProcessor) -> None:
        stats = processor.stats
        last_activity = last_compaction = time.monotonic()
        while not self.stop.is_set():
            limit = (
                self.batch_size if self.max_events is None else min(self.batch_size, self.max_events - stats.consumed)
            )
            if limit <= 0:
                return
            records, assigned = processor.poll(self.poll_timeout_ms, limit)
            if assigned or any(records.values()):
                last_activity = time.monotonic()
            elif self.idle_timeout_s is not None and time.monotonic() - last_activity >= self.idle_timeout_s:
                return
            if any(records.values()):
                processor.process(records)
                if self.progress is not None:
                    self.progress(stats)
            else:  # quiet: commit the last batch now rather than with the next one
                processor.settle()
            if self.compact_every_s is not None and time.monotonic() - last_compaction >= self.compact_every_s:
                processor.compact()
                last_compaction = time.monotonic()
