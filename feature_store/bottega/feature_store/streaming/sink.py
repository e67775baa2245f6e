"""Where the stream processor's output goes: feature rows to the offline and online stores, rejects to the DLQ.

- Offline, every emitted row is appended at its exact event time (`OfflineStore.append`); readers take the
  latest-written row per (entity keys, event_time), so a correction replaces the row it corrects and re-processing
  a batch changes nothing. Tables are built a column at a time (`rows_table`, `online_table`).
- Online, only the newest row per entity of a batch is written (`OnlineStore.write_table`), at
  `event_time + revision` microseconds: the stores keep the newest event time per entity, and Cassandra ignores a
  rewrite at an EQUAL write timestamp, so a corrected latest row (revision k > 0, its correction count, see
  `aggregator`) must carry a slightly later time to replace the previous version. The shift is below a millisecond
  as long as a row is corrected fewer than 1000 times, so Cassandra (millisecond `event_time` column) still shows
  the exact time; SQLite shows the shifted microseconds. Rows of one entity less than `revision` µs apart could
  hide each other online (offline is exact).
- Dead letters are produced to `<topic>.dlq` (created when missing) and flushed before offsets are committed:
  at-least-once, so a crash before the commit may repeat some.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.offline.store import ARROW_TYPES
from bottega.feature_store.streaming.aggregator import Row
from bottega.feature_store.streaming.events import from_micros
from bottega.feature_store.types import GroupSchema

log = logging.getLogger(__name__)


def _table(schema: GroupSchema, rows: list[Row], micros: list[int]) -> Any:
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for index, (name, vtype) in enumerate(schema.entity_keys):
        columns[name] = pa.array([r.keys[index] for r in rows], type=pa.type_for_alias(ARROW_TYPES[vtype.value]))
    for name, vtype in schema.features:
        columns[name] = pa.array([r.values[name] for r in rows], type=pa.type_for_alias(ARROW_TYPES[vtype.value]))
    columns["event_time"] = pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def rows_table(schema: GroupSchema, rows: Iterable[Row]) -> Any:
    """Rows as a pyarrow Table with the group's typed columns and exact `event_time` (UTC, microseconds)."""
    rows = list(rows)
    return _table(schema, rows, [r.ts_us for r in rows])


def newest_rows(rows: Iterable[Row]) -> list[Row]:
    """The newest row per entity (highest event time, then revision)."""
    newest: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        seen = newest.get(row.keys)
        if seen is None or (row.ts_us, row.revision) >= (seen.ts_us, seen.revision):
            newest[row.keys] = row
    return list(newest.values())


def online_table(schema: GroupSchema, rows: Iterable[Row]) -> Any:
    """`online_rows` as a pyarrow Table, for `OnlineStore.write_table` (columnar: no dict per row)."""
    newest = newest_rows(rows)
    return _table(schema, newest, [r.ts_us + r.revision for r in newest])


def online_rows(schema: GroupSchema, rows: Iterable[Row]) -> list[dict[str, Any]]:
    """The newest row per entity (highest event time, then revision), shifted by its revision in microseconds."""
    out = []
    for row in newest_rows(rows):
        record: dict[str, Any] = dict(zip(schema.key_names, row.keys, strict=True))
        record.update(row.values)
        record["event_time"] = from_micros(row.ts_us + row.revision)
        out.append(record)
    return out


class DeadLetters:
    """A lazily started producer for a dead-letter topic; `flush` raises if a dead letter could not be written."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "bottega-stream") -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self._producer: Any = None
        self._futures: list[Any] = []

    def _start(self) -> Any:
        require("kafka", "stream")
        from kafka import KafkaAdminClient, KafkaProducer

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin")
        try:
            if self.topic not in admin.list_topics():
                admin.create_topics({self.topic: {}}, raise_errors=False, wait_for_metadata=True)
        finally:
            admin.close()
        return KafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all", linger_ms=20, retries=5
        )

    def send(self, key: bytes | None, value: bytes) -> None:
        if self._producer is None:
            self._producer = self._start()
        self._futures.append(self._producer.send(self.topic, key=key, value=value))

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every dead letter sent so far; returns how many there were."""
        if not self._futures:
            return 0
        self._producer.flush(timeout=timeout_s)
        failed = [f.exception for f in self._futures if not f.succeeded()]
        count = len(self._futures)
        self._futures = []
        if failed:
            raise RuntimeError(f"{len(failed)} dead letters to {self.topic!r} were not written: {failed[0]!r}")
        return count

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
