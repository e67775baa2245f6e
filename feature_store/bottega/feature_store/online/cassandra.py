"""The scale-out online store: one Cassandra table per feature group, partitioned by the entity key.

- Writes use `USING TIMESTAMP <event time>`: Cassandra keeps the cell with the highest write timestamp, so an older
  event never replaces a newer one whatever order writes arrive in; `TTL` drops values `ttl_multiplier` x max age
  after their event time (values between max age and the TTL read as STALE).
- Writes travel as small UNLOGGED batches (at most 10 partitions, about 4 KiB), several requests in flight:
  each row keeps its own timestamp and TTL, so the result is that of single inserts with a tenth of the requests.
- Reads are one prepared single-partition SELECT per (group, entity), all pipelined at once on a lean native-protocol
  connection (see the read-path section below; `read_async` on the caller's event loop), bounded by the call's
  timeout; a query that does not answer in time reads as MISSING with `error="timeout"`, an unreachable node as
  MISSING with `error="unavailable: ..."` (the next read reconnects).
- Event times are stored with Cassandra's millisecond precision. Two writes with the same event time: either may
  win (identical rows are idempotent).
- Consistency is LOCAL_ONE by default (configurable).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.online.base import (
    OnlineStore,
    ReadResult,
    check_ttl_multiplier,
    judge,
    missing,
    table_columns,
)
from bottega.feature_store.online.cql import AsyncWire, Query, Request, SyncWire
from bottega.feature_store.types import TTL_MULTIPLIER, FeatureRef, GroupSchema, ValueType

CQL_TYPES = {ValueType.int: "bigint", ValueType.float: "double", ValueType.string: "text", ValueType.bool: "boolean"}
KEYSPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
BATCH_BYTES = 48 * 1024  # below Cassandra's default batch_size_fail_threshold (50 KiB)
TABLE_SLICE = 50_000  # rows of a table turned into Python values at a time
# struct formats of the CQL types written: features and keys by value type, then event ms, write µs, ttl
FORMATS = {ValueType.int: "q", ValueType.float: "d"}


def _pack(fmt: str, values: Sequence[Any]) -> list[bytes | None]:
    """Big-endian encodings of numbers (None stays None: a null cell)."""

    if None not in values:
        try:
            data = struct.pack(f">{len(values)}{fmt}", *values)
        except struct.error as exc:
            raise ValueError(f"a value does not fit the column: {exc}") from None
        size = struct.calcsize(fmt)
        return [data[i : i + size] for i in range(0, len(data), size)]
    one = struct.Struct(f">{fmt}")
    return [None if v is None else one.pack(v) for v in values]


def serialize_columns(types: Sequence[ValueType], columns: Sequence[Sequence[Any]]) -> list[list[bytes | None]]:
    """The CQL encodings of insert columns: one per key and feature (by type), then `event_time` (ms, a timestamp),
    the write timestamp (µs, bigint) and the TTL (int)."""
    out = []
    for vtype, values in zip(types, columns, strict=False):
        if vtype in FORMATS:
            out.append(_pack(FORMATS[vtype], values))
        elif vtype is ValueType.bool:
            out.append([None if v is None else (b"\x01" if v else b"\x00") for v in values])
        else:
            out.append([None if v is None else v.encode("utf-8") for v in values])
    millis, micros, ttls = columns[len(types) :]
    return [*out, _pack("q", millis), _pack("q", micros), _pack("i", ttls)]


def routing_key(parts: Sequence[bytes | None]) -> bytes | None:
    """Cassandra's routing key of serialized partition-key values (a composite key is length-prefixed)."""
    if len(parts) == 1:
        return parts[0]

    return b"".join(struct.pack(">H", len(p or b"")) + (p or b"") + b"\x00" for p in parts)


class CassandraOnlineStore(OnlineStore):
    def __init__(
        self,
        hosts: Sequence[str],
        *,
        keyspace: str = "bottega_online",
        port: int = 9042,
        consistency: str = "LOCAL_ONE",
        replication: Mapping[str, Any] | None = None,
        ttl_multiplier: float = TTL_MULTIPLIER,
        write_concurrency: int = 32,
        write_batch_rows: int = 100,
        write_batch_bytes: int = BATCH_BYTES,
        connect_timeout: float = 10.0,
    ) -> None:
        require("cassandra", "store")
        from cassandra import ConsistencyLevel
        from cassandra.cluster import Cluster
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import tuple_factory

        super().__init__()
        if not KEYSPACE_RE.match(keyspace):
            raise ValueError(f"keyspace {keyspace!r} must match {KEYSPACE_RE.pattern}")
        self.keyspace = keyspace
        self.ttl_multiplier = check_ttl_multiplier(ttl_multiplier)
        self.write_concurrency = write_concurrency
        if write_batch_rows < 1:
            raise ValueError("write_batch_rows must be at least 1")
        self.write_batch_rows = write_batch_rows
        if not 256 <= write_batch_bytes <= BATCH_BYTES:
            raise ValueError(f"write_batch_bytes must be between 256 and {BATCH_BYTES}")
        self.write_batch_bytes = write_batch_bytes
        self.consistency = ConsistencyLevel.name_to_value[consistency.upper()]
        self._cluster = Cluster(
            list(hosts),
            port=port,
            connect_timeout=connect_timeout,
            protocol_version=5,
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        )
        self._session = self._cluster.connect()
        self._session.row_factory = tuple_factory  # plain tuples: a named tuple class per result set costs more
        options = dict(replication or {"class": "SimpleStrategy", "replication_factor": 1})
        rendered = ", ".join(f"'{k}': {v!r}" if not isinstance(v, int) else f"'{k}': {v}" for k, v in options.items())
        self._session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{rendered}}}")
        self._prepared: dict[tuple[str, str, str], Any] = {}
        self._hosts = [socket.gethostbyname(h) for h in hosts]
        self.port = port
        self._connect_timeout = connect_timeout
        self._queries: dict[tuple[str, str], Query] = {}
        self._wires: dict[int, dict[str, SyncWire]] = {}  # per thread, per host
        self._async_wires: weakref.WeakKeyDictionary[Any, dict[str, AsyncWire]] = weakref.WeakKeyDictionary()

    def _table(self, schema: GroupSchema) -> str:
        return f"{self.keyspace}.{schema.table_name()}"

    def create_group(self, schema: GroupSchema) -> None:
        columns = ", ".join(f"{n} {CQL_TYPES[t]}" for n, t in (*schema.entity_keys, *schema.features))
        keys = ", ".join(schema.key_names)
        self._session.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table(schema)} ({columns}, event_time timestamp, "
            f"PRIMARY KEY (({keys})))"
        )
        self.register(schema)

    def drop_group(self, schema: GroupSchema) -> None:
        self._session.execute(f"DROP TABLE IF EXISTS {self._table(schema)}")
        self.schemas.pop(schema.key, None)
        self._queries.pop(schema.key, None)
        self._prepared = {k: v for k, v in self._prepared.items() if k[:2] != schema.key}

    def _statement(self, schema: GroupSchema, kind: str) -> Any:
        cache_key = (*schema.key, kind)
        if cache_key not in self._prepared:
            features = [n for n, _ in schema.features]
            if kind == "insert":
                names = [*schema.key_names, *features, "event_time"]
                cql = (
                    f"INSERT INTO {self._table(schema)} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' for _ in names)}) USING TIMESTAMP ? AND TTL ?"
                )
            else:
                where = " AND ".join(f"{n} = ?" for n in schema.key_names)
                cql = f"SELECT {', '.join([*features, 'event_time'])} FROM {self._table(schema)} WHERE {where}"
            statement = self._session.prepare(cql)
            statement.consistency_level = self.consistency
            self._prepared[cache_key] = statement
        return self._prepared[cache_key]

    def write_batch(self, schema: GroupSchema, rows: Iterable[Mapping[str, Any]]) -> int:
        horizon_us = int(schema.max_age.total_seconds() * self.ttl_multiplier * 1_000_000)
        now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
        args = []
        for row in rows:
            keys, values, event_time = self.prepare_row(schema, row)
            micros = (event_time - EPOCH) // MICROSECOND
            ttl = (horizon_us - (now_us - micros)) // 1_000_000
            if ttl <= 0:
                continue  # older than the TTL horizon: it would read as MISSING anyway
            args.append((*keys, *values.values(), micros // 1000, micros, ttl))
        return self._write(schema, [list(column) for column in zip(*args, strict=True)]) if args else 0

    def write_table(self, schema: GroupSchema, table: Any) -> int:
        horizon_us = int(schema.max_age.total_seconds() * self.ttl_multiplier * 1_000_000)
        now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
        written = 0
        for offset in range(0, table.num_rows, TABLE_SLICE):  # bounded memory: Python objects per slice only
            part = table_columns(schema, table.slice(offset, TABLE_SLICE))
            ttls = [(horizon_us - (now_us - micros)) // 1_000_000 for micros in part.micros]
            columns = [*part.keys, *part.features, [micros // 1000 for micros in part.micros], part.micros, ttls]
            keep = [ttl > 0 for ttl in ttls]  # older than the TTL horizon: it would read as MISSING anyway
            if not all(keep):
                columns = [list(compress(column, keep)) for column in columns]
            written += self._write(schema, columns)
        return written

    def _write(self, schema: GroupSchema, columns: list[list[Any]]) -> int:
        """Insert columns `keys..., features..., event ms, write timestamp µs, ttl`, several rows per request.

        Rows travel in UNLOGGED batches of at most `write_batch_rows` rows (100) and `write_batch_bytes` (48 KiB,
        under Cassandra's 50 KiB batch-size failure threshold), grouped by replica when the cluster has several
        nodes; each row keeps its own `USING TIMESTAMP` and `TTL`, so the outcome is that of single inserts with a
        hundredth of the requests (per-request cost dominates on both sides: 100-row batches measured 2x the rows/s
        of 10-row ones at 40% of the client CPU). Cassandra's default config warns (only warns) about unlogged
        batches over 10 partitions or 5 KiB: the node config here raises those thresholds; on a cluster that keeps
        them, set `BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS=10` and `BOTTEGA_CASSANDRA_WRITE_BATCH_BYTES=4096`. Values are
        serialized a column at a time (`serialize_columns`) rather than bound row by row by the driver."""
        from cassandra.concurrent import execute_concurrent

        if not columns or not columns[0]:
            return 0
        statement = self._statement(schema, "insert")
        types = [t for _, t in (*schema.entity_keys, *schema.features)]
        encoded = list(zip(*serialize_columns(types, columns), strict=True))
        strings = [i for i, t in enumerate(types) if t is ValueType.string]
        fixed = 4 * len(columns) + 8 * (len(columns) - len(strings))  # bytes of a row without its strings
        chunks: list[list[tuple[bytes | None, ...]]] = []
        for group in self._by_replica(len(schema.entity_keys), encoded):
            if not strings:  # every row weighs the same: plain slices
                step = max(1, min(self.write_batch_rows, self.write_batch_bytes // fixed))
                chunks.extend(group[i : i + step] for i in range(0, len(group), step))
                continue
            chunk: list[tuple[bytes | None, ...]] = []
            size = 0
            for row in group:
                weight = fixed + sum(len(row[i] or b"") for i in strings)
                if chunk and (len(chunk) >= self.write_batch_rows or size + weight > self.write_batch_bytes):
                    chunks.append(chunk)
                    chunk, size = [], 0
                chunk.append(row)
                size += weight
            chunks.append(chunk)
        results = execute_concurrent(
            self._session,
            self._batches(statement, len(schema.entity_keys), chunks),
            concurrency=self.write_concurrency,
            raise_on_first_error=True,
        )
        return sum(len(chunk) for (ok, _), chunk in zip(results, chunks, strict=True) if ok)

    def _batches(
        self, statement: Any, width: int, chunks: list[list[tuple[bytes | None, ...]]]
    ) -> Iterator[tuple[Any, None]]:
        """One UNLOGGED batch per chunk of serialized rows, built as the driver asks for them (overlapping I/O)."""
        from cassandra.query import BatchStatement, BatchType

        query_id = statement.query_id
        for chunk in chunks:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency)
            batch.keyspace = self.keyspace
            batch.routing_key = routing_key(chunk[0][:width])  # the chunk shares a replica: route to it
            for row in chunk:  # the driver's own batch entry, for values serialized already (no second bind)
                batch._add_statement_and_params(True, query_id, list(row))
            yield batch, None

    def _by_replica(self, width: int, rows: list[tuple[bytes | None, ...]]) -> list[list[tuple[bytes | None, ...]]]:
        """The rows grouped by the first replica of their partition (one group on a single-node cluster)."""
        metadata = self._cluster.metadata
        if len(metadata.all_hosts()) <= 1:
            return [rows]
        groups: dict[Any, list[tuple[bytes | None, ...]]] = {}
        for row in rows:
            replicas = metadata.get_replicas(self.keyspace, routing_key(row[:width]))
            groups.setdefault(replicas[0] if replicas else None, []).append(row)
        return list(groups.values())

    def read(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float = 1.0,
        now: datetime | None = None,
    ) -> ReadResult:
        deadline = time.monotonic() + timeout
        plan, keys, requests = self._requests(entities, features)
        wires = self._wires.get(threading.get_ident())
        if wires is None:
            wires = self._wires[threading.get_ident()] = {}
        replies: list[Any] = [None] * len(requests)
        for host, indexes in self._by_host(requests).items() if requests else ():
            wire = wires.get(host)
            if wire is None:
                wire = wires[host] = SyncWire(host, self.port, self._connect_timeout)
            for i, reply in zip(indexes, wire.run([requests[i] for i in indexes], deadline), strict=True):
                replies[i] = reply
        return self._result(plan, entities, keys, requests, replies, now or datetime.now(UTC))

    async def read_async(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float,
        now: datetime | None = None,
    ) -> ReadResult:
        """`read` on the caller's event loop: one connection per loop, every query in flight at once, nothing
        blocks the loop; what did not answer within `timeout` is MISSING with `error="timeout"`."""
        import asyncio

        deadline = time.monotonic() + timeout
        plan, keys, requests = self._requests(entities, features)
        loop = asyncio.get_running_loop()
        wires = self._async_wires.get(loop)
        if wires is None:
            wires = self._async_wires[loop] = {}
        replies: list[Any] = [None] * len(requests)
        jobs = []
        for host, indexes in self._by_host(requests).items() if requests else ():
            wire = wires.get(host)
            if wire is None:
                wire = wires[host] = AsyncWire(host, self.port, self._connect_timeout)
            jobs.append((indexes, wire.run([requests[i] for i in indexes], deadline)))
        answers = [await jobs[0][1]] if len(jobs) == 1 else await asyncio.gather(*(job for _, job in jobs))
        for (indexes, _), answer in zip(jobs, answers, strict=True):
            for i, reply in zip(indexes, answer, strict=True):
                replies[i] = reply
        return self._result(plan, entities, keys, requests, replies, now or datetime.now(UTC))

    def _requests(
        self, entities: Sequence[Mapping[str, Any]], features: Sequence[FeatureRef]
    ) -> tuple[Any, dict[tuple[str, str], list[int | None]], list[Request]]:
        """The read plan, each entity's request index per group (None: no key), and one request per distinct
        (group, entity key): a single-partition SELECT of the group's features and event time."""
        plan = self.plan(features)
        requests: list[Request] = []
        keys: dict[tuple[str, str], list[int | None]] = {}
        for group_key, (schema, _refs) in plan.items():
            query = self._query(schema)
            seen: dict[tuple[Any, ...], int] = {}
            positions: list[int | None] = []
            for entity in entities:
                key = self.entity_key(schema, entity)
                if key is None or None in key:
                    positions.append(None)
                    continue
                index = seen.get(key)
                if index is None:
                    index = seen[key] = len(requests)
                    requests.append(Request(query, key))
                positions.append(index)
            keys[group_key] = positions
        return plan, keys, requests

    def _query(self, schema: GroupSchema) -> Query:
        cached = self._queries.get(schema.key)
        if cached is None or cached.schema is not schema:
            cached = self._queries[schema.key] = Query.of(schema, self._table(schema), self.consistency)
        return cached

    def _by_host(self, requests: list[Request]) -> dict[str, list[int]]:
        """Request indexes by the host to ask: the first replica of the partition (a single node: that node)."""
        if len(self._hosts) == 1:
            return {self._hosts[0]: list(range(len(requests)))}
        metadata = self._cluster.metadata
        out: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            replicas = metadata.get_replicas(self.keyspace, routing_key(request.query.encode_key(request.key)))
            host = replicas[0].address if replicas else self._hosts[i % len(self._hosts)]
            out.setdefault(host, []).append(i)
        return out

    def _result(
        self,
        plan: Any,
        entities: Sequence[Mapping[str, Any]],
        keys: dict[tuple[str, str], list[int | None]],
        requests: list[Request],
        replies: list[Any],
        now: datetime,
    ) -> ReadResult:
        result = ReadResult(rows=[{} for _ in entities])
        for group_key, (schema, refs) in plan.items():
            positions = {name: i for i, (name, _) in enumerate(schema.features)}  # rows: features, then event time
            wanted = [(ref, positions[ref.feature]) for ref in refs]
            expired = now - schema.max_age * self.ttl_multiplier  # the TTL drops these, judged at `now` as SQLite does
            for index, out in zip(keys[group_key], result.rows, strict=True):
                row, error = replies[index] if index is not None else (None, None)
                if row is None or row[-1] < expired:
                    absent = missing(error)  # immutable: one instance serves every feature of the row
                    for ref in refs:
                        out[ref] = absent
                    continue
                event_time = row[-1]
                for ref, position in wanted:
                    out[ref] = judge(row[position], event_time, schema.max_age, now)
        return result

    def drop_keyspace(self) -> None:
        """Delete the store's keyspace and every group in it."""
        self._session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
        self.schemas.clear()
        self._prepared.clear()
        self._queries.clear()

    def close(self) -> None:
        for wires in list(self._wires.values()):
            for wire in wires.values():
                wire.close()
        self._wires.clear()
        for loop, async_wires in list(self._async_wires.items()):
            for async_wire in async_wires.values():
                if loop.is_closed():
                    continue
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(async_wire.close)
        self._async_wires.clear()
        self._cluster.shutdown()
