"""The Feast side of the benchmarks. Runs in Feast's own virtual environment (bench/.venv-feast), never in
Bottega's: `python -m fsbench.feast_side <online|training|materialize> --data DIR --workdir DIR --out FILE ...`.

It writes a Feast repository (feature_store.yaml + a registry) under --workdir, applies the same entity and feature
groups as the Bottega side (FileSources over the same generated Parquet files), measures inside this process with
time.perf_counter and writes a JSON result to --out.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fsbench.measure import latency_summary, peak_rss_mb, write_result
from fsbench.spec import ENTITY, GROUPS, KEY, MATERIALIZE_GROUP, MAX_AGE_DAYS, ONLINE_GROUPS, PROJECT, features


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


def _split_hosts(hosts: str) -> tuple[list[str], int]:
    names = [h.strip().partition(":")[0] for h in hosts.split(",")]
    port = int(hosts.split(",")[0].strip().partition(":")[2] or 9042)
    return names, port


def online_config(kind: str, workdir: Path, hosts: str | None, keyspace: str | None) -> dict[str, Any]:
    if kind == "sqlite":
        return {"type": "sqlite", "path": str(workdir / "feast_online.db")}
    if not hosts or not keyspace:
        raise ValueError("the cassandra online store needs --cassandra-hosts and --keyspace")
    names, port = _split_hosts(hosts)
    # 60 s per request instead of the driver's 10 s: bulk writes at Feast's concurrency (100) can queue longer than
    # that on a busy 2-core node, and a timeout would end the run. Feast applies request_timeout only through an
    # execution profile, which its `load_balancing` block creates (the same policy as Bottega's store uses).
    return {
        "type": "cassandra",
        "hosts": names,
        "port": port,
        "keyspace": keyspace,
        "request_timeout": 60.0,
        "load_balancing": {
            "load_balancing_policy": "TokenAwarePolicy(DCAwareRoundRobinPolicy)",
            "local_dc": "datacenter1",
        },
    }


def create_keyspace(hosts: str, keyspace: str, *, drop: bool = False) -> None:
    """Feast's Cassandra store expects its keyspace to exist; the benchmark makes (and later drops) its own."""
    from cassandra.cluster import Cluster

    names, port = _split_hosts(hosts)
    cluster = Cluster(names, port=port)
    try:
        session = cluster.connect()
        if drop:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        else:
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
                "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
    finally:
        cluster.shutdown()


def make_store(workdir: Path, online: dict[str, Any], offline: str, sources: dict[str, Path]) -> Any:
    """A Feast repository under workdir (feature_store.yaml written there) with the benchmark's feature views."""
    from feast import (  # type: ignore[import-not-found]  # only in Feast's venv
        Entity,
        FeatureStore,
        FeatureView,
        Field,
        FileSource,
        ValueType,
    )
    from feast.types import Float64, Int64  # type: ignore[import-not-found]

    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "project": PROJECT,
        "provider": "local",
        "registry": str(workdir / "registry.db"),
        "online_store": online,
        "offline_store": {"type": offline},
        "entity_key_serialization_version": 3,
        # Without a batch size Feast converts and writes every materialized row in one batch: at 1M rows it passed
        # 10 GB of memory here. Batches of 10k rows are its documented setting for large materializations.
        "materialization": {"online_write_batch_size": 10_000},
    }
    (workdir / "feature_store.yaml").write_text(_yaml(config))
    store = FeatureStore(repo_path=str(workdir))
    entity = Entity(name=ENTITY, join_keys=[KEY], value_type=ValueType.INT64)
    views = [
        FeatureView(
            name=group,
            entities=[entity],
            ttl=timedelta(days=MAX_AGE_DAYS),
            schema=[Field(name=n, dtype=Int64 if t == "int" else Float64) for n, t in features(group)],
            source=FileSource(name=f"{group}_source", path=str(path), timestamp_field="event_timestamp"),
            online=True,
        )
        for group, path in sources.items()
    ]
    store.apply([entity, *views])
    return store


def read_keys(entities: int, count: int, seed: int = 42) -> list[int]:
    import random

    rng = random.Random(seed)  # the same draw as the Bottega side
    return [rng.randrange(entities) for _ in range(count)]


def bench_online(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    data, workdir = Path(args.data), Path(args.workdir)
    if args.store == "cassandra":
        create_keyspace(args.cassandra_hosts, args.keyspace)
    online = online_config(args.store, workdir, args.cassandra_hosts, args.keyspace)
    sources = {g: data / f"online_{g}.parquet" for g in ONLINE_GROUPS}
    store = make_store(workdir, online, "file", sources)
    try:
        started = time.perf_counter()
        for group, path in sources.items():
            store.write_to_online_store(group, pd.read_parquet(path))
        load_s = time.perf_counter() - started
        refs = [f"{g}:{name}" for g in ONLINE_GROUPS for name, _ in features(g)]
        for key in read_keys(args.entities, args.warmup, seed=7):
            store.get_online_features(features=refs, entity_rows=[{KEY: key}]).to_dict()
        call, with_dict, missing = [], [], 0
        for key in read_keys(args.entities, args.reads):
            begin = time.perf_counter()
            response = store.get_online_features(features=refs, entity_rows=[{KEY: key}])
            middle = time.perf_counter()
            values = response.to_dict()
            end = time.perf_counter()
            call.append(middle - begin)
            with_dict.append(end - begin)
            missing += sum(1 for name, _ in features(ONLINE_GROUPS[0]) if values[name][0] is None)
        sample = store.get_online_features(features=refs, entity_rows=[{KEY: 0}]).to_dict()
    finally:
        store.teardown()
        if args.store == "cassandra":
            create_keyspace(args.cassandra_hosts, args.keyspace, drop=True)
    return {
        "side": "feast",
        "store": args.store,
        "load_s": load_s,
        "latency": latency_summary(call),
        "latency_with_to_dict": latency_summary(with_dict),
        "features_per_read": len(refs),
        "missing_values_group_a": missing,
        "sample_entity_0": {k: v[0] for k, v in sample.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_training(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    import pyarrow.compute as pc

    data, workdir = Path(args.data), Path(args.workdir)
    sources = {g: data / f"history_{g}.parquet" for g in GROUPS}
    online = {"type": "sqlite", "path": str(workdir / "unused_online.db")}
    store = make_store(workdir, online, args.offline, sources)
    entity_df = pd.read_parquet(data / "labels.parquet")
    refs = [f"{g}:{name}" for g in GROUPS for name, _ in features(g)]
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    table = store.get_historical_features(entity_df=entity_df, features=refs).to_arrow()
    seconds = time.perf_counter() - started
    sums = {}
    for ref in refs:
        column = table.column(ref.split(":")[1])
        total = pc.sum(column.cast("double")).as_py()
        sums[ref] = {"non_null": len(column) - column.null_count, "sum": float(total or 0.0)}
    return {
        "side": "feast",
        "offline_store": args.offline,
        "seconds": seconds,
        "label_rows": len(entity_df),
        "rows_out": table.num_rows,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "checksums": sums,
    }


def bench_materialize(args: argparse.Namespace) -> dict[str, Any]:
    import json as _json

    data, workdir = Path(args.data), Path(args.workdir)
    create_keyspace(args.cassandra_hosts, args.keyspace)
    online = online_config("cassandra", workdir, args.cassandra_hosts, args.keyspace)
    store = make_store(workdir, online, args.offline, {MATERIALIZE_GROUP: data / "materialize.parquet"})
    manifest = _json.loads((data / "manifest.json").read_text())
    now = datetime.fromtimestamp(manifest["generated_at"], tz=UTC)
    rows = int(manifest["sizes"]["materialize_rows"])
    try:
        cpu_started, started = time.process_time(), time.perf_counter()
        store.materialize(now - timedelta(days=2), now + timedelta(seconds=1), feature_views=[MATERIALIZE_GROUP])
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        refs = [f"{MATERIALIZE_GROUP}:{name}" for name, _ in features(MATERIALIZE_GROUP)]
        probe = store.get_online_features(features=refs, entity_rows=[{KEY: 0}, {KEY: rows - 1}]).to_dict()
        readable = sum(1 for name, _ in features(MATERIALIZE_GROUP) for v in probe[name] if v is not None)
    finally:
        store.teardown()
        create_keyspace(args.cassandra_hosts, args.keyspace, drop=True)
    return {
        "side": "feast",
        "offline_store": args.offline,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "client_cpu_s": cpu,
        "probe_values": readable,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=["online", "training", "materialize"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--store", choices=["sqlite", "cassandra"], default="sqlite")
    parser.add_argument("--offline", choices=["file", "duckdb"], default="duckdb")
    parser.add_argument("--cassandra-hosts")
    parser.add_argument("--keyspace")
    parser.add_argument("--entities", type=int, default=0)
    parser.add_argument("--reads", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args()
    tasks = {"online": bench_online, "training": bench_training, "materialize": bench_materialize}
    try:
        import feast

        result = tasks[args.task](args)
        result["feast_version"] = feast.__version__
    except Exception as exc:  # report what failed, so the runner records it and goes on
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "traceback"}, default=str)[:2000])


if __name__ == "__main__":
    main()
