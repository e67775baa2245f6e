"""The Bottega side of the online, training-set and materialization benchmarks, through Bottega's own APIs:
`OnlineStore.read` for online reads, `OfflineStore` + `point_in_time_join` for training sets, the batch pipeline's
`materialize` for materialization. Each function returns a JSON-able dict."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fsbench.measure import latency_summary, peak_rss_mb
from fsbench.spec import GROUPS, KEY, MATERIALIZE_GROUP, MAX_AGE_DAYS, ONLINE_GROUPS, PROJECT, TIMESTAMP, features

READY = ".ready"


def schema(group: str) -> Any:
    from bottega.feature_store.types import GroupSchema, ValueType

    return GroupSchema(
        project=PROJECT,
        name=group,
        entity_keys=((KEY, ValueType.int),),
        features=tuple((name, ValueType(dtype)) for name, dtype in features(group)),
        max_age=timedelta(days=MAX_AGE_DAYS),
    )


def split_hosts(hosts: str) -> tuple[list[str], int]:
    names, ports = [], set()
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().partition(":")
        names.append(host)
        ports.add(int(port or 9042))
    if len(ports) != 1:
        raise ValueError(f"Cassandra hosts {hosts!r} must share one port")
    return names, ports.pop()


def open_store(kind: str, workdir: Path, cassandra_hosts: str | None, keyspace: str | None) -> Any:
    """A Bottega online store: `sqlite` (a file under workdir) or `cassandra` (its own keyspace)."""
    if kind == "sqlite":
        from bottega.feature_store.online.sqlite import SqliteOnlineStore

        path = workdir / "bottega_online.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return SqliteOnlineStore(path)
    if kind != "cassandra" or not cassandra_hosts or not keyspace:
        raise ValueError("the cassandra store needs --cassandra-hosts and a keyspace")
    from bottega.feature_store.online.cassandra import CassandraOnlineStore

    hosts, port = split_hosts(cassandra_hosts)
    return CassandraOnlineStore(hosts, port=port, keyspace=keyspace)


def close_store(store: Any) -> None:
    drop = getattr(store, "drop_keyspace", None)
    if drop is not None:
        drop()  # Cassandra: leave nothing behind
    store.close()


def as_offline_rows(table: Any) -> Any:
    """The generated Parquet columns as the stores expect them (`event_timestamp` -> `event_time`)."""
    return table.rename_columns(["event_time" if c == TIMESTAMP else c for c in table.column_names])


def read_keys(entities: int, count: int, seed: int = 42) -> list[int]:
    """The entity keys to read, in order (the Feast side draws the same)."""
    rng = random.Random(seed)
    return [rng.randrange(entities) for _ in range(count)]


def bench_online(
    folder: Path,
    kind: str,
    workdir: Path,
    *,
    entities: int,
    reads: int,
    warmup: int,
    cassandra_hosts: str | None = None,
    keyspace: str | None = None,
) -> dict[str, Any]:
    """p50/p99 of `OnlineStore.read` for 1 entity x 10 features from 2 groups."""
    import pyarrow.parquet as pq

    store = open_store(kind, workdir, cassandra_hosts, keyspace)
    try:
        started = time.perf_counter()
        for group in ONLINE_GROUPS:
            store.create_group(schema(group))
            store.write_table(schema(group), as_offline_rows(pq.read_table(folder / f"online_{group}.parquet")))
        load_s = time.perf_counter() - started
        refs = [schema(g).ref(name) for g in ONLINE_GROUPS for name, _ in features(g)]
        for key in read_keys(entities, warmup, seed=7):
            store.read([{KEY: key}], refs)
        latencies, not_fresh = [], 0
        for key in read_keys(entities, reads):
            begin = time.perf_counter()
            result = store.read([{KEY: key}], refs)
            latencies.append(time.perf_counter() - begin)
            not_fresh += sum(1 for fv in result.rows[0].values() if fv.status != "FRESH")
        sample = store.read([{KEY: 0}], refs).values(0)
    finally:
        close_store(store)
    return {
        "side": "bottega",
        "store": kind,
        "load_s": load_s,
        "latency": latency_summary(latencies),
        "features_per_read": len(refs),
        "not_fresh_values": not_fresh,
        "sample_entity_0": sample,
        "peak_rss_mb": peak_rss_mb(),
    }


def prepare_offline(folder: Path, root: Path, files: dict[str, str]) -> dict[str, Any]:
    """Load generated Parquet files (group -> file name) into a Bottega offline store (untimed setup; reused)."""
    import pyarrow.parquet as pq

    from bottega.feature_store.offline.store import OfflineStore

    store = OfflineStore(root)
    timings = {}
    for group, name in files.items():
        marker = store.group_dir(schema(group)) / READY
        if marker.exists():
            continue
        started = time.perf_counter()
        if store.group_dir(schema(group)).exists():
            import shutil

            shutil.rmtree(store.group_dir(schema(group)))
        store.append(schema(group), as_offline_rows(pq.read_table(folder / name)))
        marker.write_text("ok")
        timings[group] = time.perf_counter() - started
    return {"loaded_s": timings}


def checksums(table: Any, columns: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per feature (`group:feature` -> its column in `table`): non-null count and sum, order independent."""
    import pyarrow.compute as pc

    out = {}
    for ref, column in columns.items():
        values = table.column(column)
        total = pc.sum(values.cast("double")).as_py()
        out[ref] = {"non_null": len(values) - values.null_count, "sum": float(total or 0.0)}
    return out


def bench_training(folder: Path, root: Path) -> dict[str, Any]:
    """Seconds and peak RSS of a point-in-time training set: all label rows x 3 groups x 5 features (DuckDB)."""
    import pyarrow.parquet as pq

    from bottega.feature_store.offline.pit_duckdb import column_name, point_in_time_join
    from bottega.feature_store.offline.store import OfflineStore

    store = OfflineStore(root)
    schemas = {schema(g).key: schema(g) for g in GROUPS}
    refs = [schema(g).ref(name) for g in GROUPS for name, _ in features(g)]
    labels = pq.read_table(folder / "labels.parquet")
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    training = point_in_time_join(store, labels, refs, schemas, timestamp_column=TIMESTAMP)
    seconds = time.perf_counter() - started
    return {
        "side": "bottega",
        "engine": "duckdb",
        "seconds": seconds,
        "label_rows": labels.num_rows,
        "rows_out": training.num_rows,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "checksums": checksums(training, {f"{r.group}:{r.feature}": column_name(r) for r in refs}),
    }


def bench_materialize(folder: Path, root: Path, cassandra_hosts: str, keyspace: str) -> dict[str, Any]:
    """Rows per second of the batch pipeline's materialization: offline store -> latest per entity -> Cassandra."""
    from bottega.feature_store.batch.duckdb_pipeline import materialize
    from bottega.feature_store.offline.store import OfflineStore

    offline = OfflineStore(root)
    group = schema(MATERIALIZE_GROUP)
    store = open_store("cassandra", root, cassandra_hosts, keyspace)
    try:
        store.create_group(group)
        cpu_started, started = time.process_time(), time.perf_counter()
        written = materialize(group, offline.read(group), store)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        refs = [group.ref(name) for name, _ in features(MATERIALIZE_GROUP)]
        probe = store.read([{KEY: 0}, {KEY: written - 1}], refs, now=datetime.now(UTC))
        readable = sum(1 for row in probe.rows for fv in row.values() if fv.status == "FRESH")
    finally:
        close_store(store)
    return {
        "side": "bottega",
        "rows": written,
        "seconds": seconds,
        "rows_per_s": written / seconds,
        "client_cpu_s": cpu,
        "probe_fresh_values": readable,
        "peak_rss_mb": peak_rss_mb(),
    }
