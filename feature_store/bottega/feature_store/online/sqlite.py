"""The embedded online store: one SQLite table per feature group, keyed by the entity."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottega.feature_store.online.base import (
    FeatureValue,
    OnlineStore,
    ReadResult,
    Status,
    check_ttl_multiplier,
    missing,
    table_columns,
)
from bottega.feature_store.types import TTL_MULTIPLIER, FeatureRef, GroupSchema, ValueType

SQL_TYPES = {ValueType.int: "INTEGER", ValueType.float: "REAL", ValueType.string: "TEXT", ValueType.bool: "INTEGER"}
INLINE_ENTITIES = 16  # read_async answers on the event loop up to this many entities (a few tens of µs)
CHUNK = 400  # entities per query (SQLite's bound-parameter limit is generous; keep statements small)


def _q(name: str) -> str:
    return f'"{name}"'


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


@dataclass(frozen=True)
class _Layout:
    schema: GroupSchema
    table: str
    select: str  # entity keys, features, event_time
    target: str  # the key columns, for `(k1, k2) IN (VALUES ...)`
    one: str  # `k1 = ? AND k2 = ?`
    width: int  # number of key columns
    bool_keys: tuple[int, ...]
    features: dict[str, tuple[int, bool]]  # feature -> (position in a row, is bool)


class SqliteOnlineStore(OnlineStore):
    def __init__(self, path: str | Path, *, ttl_multiplier: float = TTL_MULTIPLIER) -> None:
        super().__init__()
        self.ttl_multiplier = check_ttl_multiplier(ttl_multiplier)  # older values read as MISSING (expired)
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._layouts: dict[tuple[str, str], _Layout] = {}

    def create_group(self, schema: GroupSchema) -> None:
        columns = [f"{_q(n)} {SQL_TYPES[t]}" for n, t in (*schema.entity_keys, *schema.features)]
        keys = ", ".join(_q(n) for n in schema.key_names)
        ddl = (
            f"CREATE TABLE IF NOT EXISTS {_q(schema.table_name())} ({', '.join(columns)}, "
            f"event_time INTEGER NOT NULL, PRIMARY KEY ({keys})) WITHOUT ROWID"
        )
        with self._lock:
            self._conn.execute(ddl)
        self.register(schema)

    def drop_group(self, schema: GroupSchema) -> None:
        with self._lock:
            self._conn.execute(f"DROP TABLE IF EXISTS {_q(schema.table_name())}")
        self.schemas.pop(schema.key, None)

    def write_batch(self, schema: GroupSchema, rows: Iterable[Mapping[str, Any]]) -> int:
        params = []
        for row in rows:
            keys, values, event_time = self.prepare_row(schema, row)
            params.append((*keys, *values.values(), _micros(event_time)))
        return self._upsert(schema, params)

    def write_table(self, schema: GroupSchema, table: Any) -> int:
        columns = table_columns(schema, table)
        return self._upsert(schema, list(zip(*columns.keys, *columns.features, columns.micros, strict=True)))

    def _upsert(self, schema: GroupSchema, params: list[tuple[Any, ...]]) -> int:
        """Upsert `(keys..., features..., event µs)` rows in one transaction; the newest event wins."""
        names = [*schema.key_names, *(n for n, _ in schema.features)]
        table = _q(schema.table_name())
        updates = [f"{_q(n)} = excluded.{_q(n)}" for n, _ in schema.features] + ["event_time = excluded.event_time"]
        sql = (
            f"INSERT INTO {table} ({', '.join(_q(n) for n in names)}, event_time) "
            f"VALUES ({', '.join('?' for _ in names)}, ?) "
            f"ON CONFLICT ({', '.join(_q(n) for n in schema.key_names)}) DO UPDATE SET {', '.join(updates)} "
            f"WHERE excluded.event_time >= {table}.event_time"
        )
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(sql, params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(params)

    def read(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float = 1.0,
        now: datetime | None = None,
    ) -> ReadResult:
        now = now or datetime.now(UTC)
        now_us = int(now.timestamp() * 1_000_000)
        plan = self.plan(features)
        result = ReadResult(rows=[{} for _ in entities])
        deadline = time.monotonic() + timeout
        for schema, refs in plan.values():
            layout = self._layout(schema)
            keys = [self.entity_key(schema, e) for e in entities]
            found, error = self._fetch(layout, keys, deadline)
            positions = [(ref, *layout.features[ref.feature]) for ref in refs]
            cutoff_us = now_us - int(schema.max_age.total_seconds() * self.ttl_multiplier * 1_000_000)
            for key, out in zip(keys, result.rows, strict=True):
                row = found.get(key) if key is not None else None
                if row is None or row[-1] < cutoff_us:  # never written, or expired (older than the TTL)
                    absent = missing(error if row is None else None)  # one instance serves every feature of the row
                    for ref in refs:
                        out[ref] = absent
                    continue
                event_time = _from_micros(row[-1])
                status = Status.FRESH if now - event_time <= schema.max_age else Status.STALE
                for ref, position, is_bool in positions:
                    value = row[position]
                    out[ref] = FeatureValue(bool(value) if is_bool and value is not None else value, event_time, status)
        return result

    async def read_async(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float,
        now: datetime | None = None,
    ) -> ReadResult:
        """A small read (up to `INLINE_ENTITIES` entities, ~30-40 µs for one) answers inline: handing it to a thread
        would cost more than the read. Bigger reads, or a read while a write holds the connection, run in a thread."""
        if len(entities) <= INLINE_ENTITIES and not self._lock.locked():
            return self.read(entities, features, timeout=timeout, now=now)
        return await super().read_async(entities, features, timeout=timeout, now=now)

    def _layout(self, schema: GroupSchema) -> _Layout:
        """The SQL and column positions of a group (remembered while the registered schema stays the same)."""
        cached = self._layouts.get(schema.key)
        if cached is not None and cached.schema is schema:
            return cached
        columns = [*schema.key_names, *(n for n, _ in schema.features), "event_time"]
        width = len(schema.key_names)
        layout = _Layout(
            schema=schema,
            table=_q(schema.table_name()),
            select=", ".join(_q(c) for c in columns),
            target=", ".join(_q(n) for n in schema.key_names),
            one=" AND ".join(f"{_q(n)} = ?" for n in schema.key_names),
            width=width,
            bool_keys=tuple(i for i, (_, t) in enumerate(schema.entity_keys) if t is ValueType.bool),
            features={n: (width + i, t is ValueType.bool) for i, (n, t) in enumerate(schema.features)},
        )
        self._layouts[schema.key] = layout
        return layout

    def _fetch(
        self, layout: _Layout, keys: Sequence[tuple[Any, ...] | None], deadline: float
    ) -> tuple[dict[tuple[Any, ...], tuple[Any, ...]], str | None]:
        """The stored rows (all columns, event time last) of the wanted keys, by key, and why some are missing."""
        wanted = list({k for k in keys if k is not None})
        found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        width = layout.width
        with self._lock:
            self._conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            try:
                if len(wanted) == 1:  # the serving path: one entity, a primary-key lookup
                    sql = f"SELECT {layout.select} FROM {layout.table} WHERE {layout.one}"
                    records = self._conn.execute(sql, wanted[0]).fetchall()
                    for record in records:
                        found[self._stored_key(layout, record)] = record
                for start in range(0, len(wanted) if len(wanted) > 1 else 0, CHUNK):
                    chunk = wanted[start : start + CHUNK]
                    tuples = ", ".join("(" + ", ".join("?" * width) + ")" for _ in chunk)
                    sql = f"SELECT {layout.select} FROM {layout.table} WHERE ({layout.target}) IN (VALUES {tuples})"
                    for record in self._conn.execute(sql, [v for key in chunk for v in key]):
                        found[self._stored_key(layout, record)] = record
            except sqlite3.OperationalError as exc:
                if "interrupted" not in str(exc):
                    raise
                return found, "timeout"
            finally:
                self._conn.set_progress_handler(None, 0)
        return found, None

    @staticmethod
    def _stored_key(layout: _Layout, record: tuple[Any, ...]) -> tuple[Any, ...]:
        key = record[: layout.width]
        if layout.bool_keys:
            key = tuple(bool(v) if i in layout.bool_keys else v for i, v in enumerate(key))
        return key

    def close(self) -> None:
        with self._lock:
            self._conn.close()
