"""The scale-out online store: one Cassandra table per feature group, partitioned by the entity key.

- Writes use `USING TIMESTAMP <event time>`: Cassandra keeps the cell with the highest write timestamp, so an older
  event never replaces a newer one whatever order writes arrive in; `TTL` drops values `ttl_multiplier` x max age
  after their event time (values between max age and the TTL read as STALE).
- Reads are one prepared single-partition SELECT per (group, entity), all in flight at once, each with the call's
  timeout; a query that does not answer in time reads as MISSING with `error="timeout"`.
- Event times are stored with Cassandra's millisecond precision. Two writes with the same event time: either may
  win (identical rows are idempotent).
- Consistency is LOCAL_ONE by default (configurable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.online.base import OnlineStore, ReadResult, judge, missing
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

CQL_TYPES = {ValueType.int: "bigint", ValueType.float: "double", ValueType.string: "text", ValueType.bool: "boolean"}
KEYSPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class CassandraOnlineStore(OnlineStore):
    def __init__(
        self,
        hosts: Sequence[str],
        *,
        keyspace: str = "bottega_online",
        port: int = 9042,
        consistency: str = "LOCAL_ONE",
        replication: Mapping[str, Any] | None = None,
        ttl_multiplier: float = 2.0,
        write_concurrency: int = 64,
        connect_timeout: float = 10.0,
    ) -> None:
        require("cassandra", "store")
        from cassandra import ConsistencyLevel
        from cassandra.cluster import Cluster
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        super().__init__()
        if not KEYSPACE_RE.match(keyspace):
            raise ValueError(f"keyspace {keyspace!r} must match {KEYSPACE_RE.pattern}")
        if ttl_multiplier < 1:
            raise ValueError("ttl_multiplier must be at least 1 (values must live at least their max age)")
        self.keyspace = keyspace
        self.ttl_multiplier = ttl_multiplier
        self.write_concurrency = write_concurrency
        self.consistency = ConsistencyLevel.name_to_value[consistency.upper()]
        self._cluster = Cluster(
            list(hosts),
            port=port,
            connect_timeout=connect_timeout,
            protocol_version=5,
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        )
        self._session = self._cluster.connect()
        options = dict(replication or {"class": "SimpleStrategy", "replication_factor": 1})
        rendered = ", ".join(f"'{k}': {v!r}" if not isinstance(v, int) else f"'{k}': {v}" for k, v in options.items())
        self._session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{rendered}}}")
        self._prepared: dict[tuple[str, str, str], Any] = {}

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
        from cassandra.concurrent import execute_concurrent_with_args

        statement = self._statement(schema, "insert")
        horizon = schema.max_age.total_seconds() * self.ttl_multiplier
        now = datetime.now(UTC)
        args = []
        for row in rows:
            keys, values, event_time = self.prepare_row(schema, row)
            ttl = int(horizon - (now - event_time).total_seconds())
            if ttl <= 0:
                continue  # older than the TTL horizon: it would read as MISSING anyway
            micros = int(event_time.timestamp() * 1_000_000)
            args.append((*keys, *values.values(), event_time, micros, ttl))
        results = execute_concurrent_with_args(
            self._session, statement, args, concurrency=self.write_concurrency, raise_on_first_error=True
        )
        return sum(1 for ok, _ in results if ok)

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
        futures: dict[tuple[tuple[str, str], tuple[Any, ...]], Any] = {}
        for group_key, (schema, _refs) in plan.items():
            statement = self._statement(schema, "select")
            for entity in entities:
                key = self.entity_key(schema, entity)
                if key is not None and (group_key, key) not in futures:
                    futures[(group_key, key)] = self._session.execute_async(statement, key, timeout=timeout)
        answers = {k: self._answer(f) for k, f in futures.items()}
        result = ReadResult(rows=[{} for _ in entities])
        for group_key, (schema, refs) in plan.items():
            for index, entity in enumerate(entities):
                key = self.entity_key(schema, entity)
                row, error = answers.get((group_key, key), (None, None)) if key is not None else (None, None)
                for ref in refs:
                    if row is None:
                        result.rows[index][ref] = missing(error)
                    else:
                        event_time = row.event_time.replace(tzinfo=UTC) if row.event_time else None
                        result.rows[index][ref] = judge(getattr(row, ref.feature), event_time, schema.max_age, now)
        return result

    @staticmethod
    def _answer(future: Any) -> tuple[Any, str | None]:
        """The row of a single-partition read (None when absent), or why it failed."""
        from cassandra import OperationTimedOut, ReadTimeout, Unavailable

        try:
            return future.result().one(), None
        except (OperationTimedOut, ReadTimeout):
            return None, "timeout"
        except Unavailable:
            return None, "unavailable"

    def drop_keyspace(self) -> None:
        """Delete the store's keyspace and every group in it."""
        self._session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
        self.schemas.clear()
        self._prepared.clear()

    def close(self) -> None:
        self._cluster.shutdown()
