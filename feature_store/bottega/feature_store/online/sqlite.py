"""The embedded online store: one SQLite table per feature group, keyed by the entity."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottega.feature_store.online.base import OnlineStore, ReadResult, judge, missing
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

SQL_TYPES = {ValueType.int: "INTEGER", ValueType.float: "REAL", ValueType.string: "TEXT", ValueType.bool: "INTEGER"}
CHUNK = 400  # entities per query (SQLite's bound-parameter limit is generous; keep statements small)


def _q(name: str) -> str:
    return f'"{name}"'


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def _decode(vtype: ValueType, value: Any) -> Any:
    if value is None:
        return None
    return bool(value) if vtype is ValueType.bool else value


class SqliteOnlineStore(OnlineStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")

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
        names = [*schema.key_names, *(n for n, _ in schema.features)]
        table = _q(schema.table_name())
        updates = [f"{_q(n)} = excluded.{_q(n)}" for n, _ in schema.features] + ["event_time = excluded.event_time"]
        sql = (
            f"INSERT INTO {table} ({', '.join(_q(n) for n in names)}, event_time) "
            f"VALUES ({', '.join('?' for _ in names)}, ?) "
            f"ON CONFLICT ({', '.join(_q(n) for n in schema.key_names)}) DO UPDATE SET {', '.join(updates)} "
            f"WHERE excluded.event_time >= {table}.event_time"
        )
        params = []
        for row in rows:
            keys, values, event_time = self.prepare_row(schema, row)
            params.append((*keys, *values.values(), _micros(event_time)))
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
        plan = self.plan(features)
        result = ReadResult(rows=[{} for _ in entities])
        deadline = time.monotonic() + timeout
        for schema, refs in plan.values():
            found, error = self._fetch(schema, entities, deadline)
            types = schema.feature_types
            for index, entity in enumerate(entities):
                key = self.entity_key(schema, entity)
                row = found.get(key) if key is not None else None
                for ref in refs:
                    if row is None:
                        result.rows[index][ref] = missing(error)
                        continue
                    value = _decode(types[ref.feature], row[ref.feature])
                    result.rows[index][ref] = judge(value, _from_micros(row["event_time"]), schema.max_age, now)
        return result

    def _fetch(
        self, schema: GroupSchema, entities: Sequence[Mapping[str, Any]], deadline: float
    ) -> tuple[dict[tuple[Any, ...], dict[str, Any]], str | None]:
        wanted = {k for e in entities if (k := self.entity_key(schema, e)) is not None}
        keys = list(wanted)
        columns = [*schema.key_names, *(n for n, _ in schema.features), "event_time"]
        select = ", ".join(_q(c) for c in columns)
        width = len(schema.key_names)
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        with self._lock:
            self._conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            try:
                for start in range(0, len(keys), CHUNK):
                    chunk = keys[start : start + CHUNK]
                    tuples = ", ".join("(" + ", ".join("?" * width) + ")" for _ in chunk)
                    target = ", ".join(_q(n) for n in schema.key_names)
                    sql = f"SELECT {select} FROM {_q(schema.table_name())} WHERE ({target}) IN (VALUES {tuples})"
                    args = [v for key in chunk for v in key]
                    for record in self._conn.execute(sql, args):
                        row = dict(zip(columns, record, strict=True))
                        found[
                            tuple(row[n] if t is not ValueType.bool else bool(row[n]) for n, t in schema.entity_keys)
                        ] = row
            except sqlite3.OperationalError as exc:
                if "interrupted" not in str(exc):
                    raise
                return found, "timeout"
            finally:
                self._conn.set_progress_handler(None, 0)
        return found, None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
