"""Streaming freshness: events produced to Kafka at a fixed rate, processed by Bottega's stream processor (its own
process, as a stream worker runs), read back from the online store.

Freshness of an event = the time its value is first seen in the online store minus the time it was produced, both
taken by this process's clock. Every 50th event is a probe event for one of `probes` probe entities; it carries its
produce time in `produced_us`, which the group aggregates with `last`, so a reader polling the probe entities knows
which probe events are readable: when it sees `last_produced_us = v` for an entity, every probe event of that entity
produced at or before `v` has become readable (a value that was overwritten before a poll saw it counts as readable
when the newer one is seen: an upper bound). The other events go to random non-probe entities, so the processor
carries the full rate.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fsbench.measure import latency_summary, peak_rss_mb
from fsbench.spec import ENTITY, KEY, PROJECT

PROBE_EVERY = 50
GROUP = "trips_live"


def definitions(topic: str) -> tuple[Any, Any]:
    """The streaming feature group of the benchmark and its schema."""
    from bottega.feature_store.definitions import Aggregation, Entity, Feature, StreamingFeatureGroup
    from bottega.feature_store.types import ValueType

    entity = Entity(name=ENTITY, join_keys={KEY: ValueType.int})
    group = StreamingFeatureGroup(
        name=GROUP,
        entity=ENTITY,
        max_age=timedelta(hours=1),
        topic=topic,
        event_schema={"amount": ValueType.float, "produced_us": ValueType.int},
        timestamp_field="event_time",
        allowed_lateness=timedelta(seconds=5),
        aggregations=[
            Aggregation(name="trips_1m", function="count", window=timedelta(minutes=1)),
            Aggregation(name="amount_10m", function="sum", field="amount", window=timedelta(minutes=10)),
            Aggregation(name="last_produced_us", function="last", field="produced_us", window=timedelta(hours=1)),
        ],
        features=[
            Feature(name="trips_1m", dtype=ValueType.int),
            Feature(name="amount_10m", dtype=ValueType.float),
            Feature(name="last_produced_us", dtype=ValueType.int),
        ],
    )
    return group, group.schema_for(PROJECT, entity)


def _online(params: dict[str, Any]) -> Any:
    from fsbench.ours import open_store

    workdir = Path(params["workdir"])
    if params["store"] == "sqlite":  # the parent emptied the file; the reader opens it too
        from bottega.feature_store.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(workdir / "bottega_online.db")
    return open_store("cassandra", workdir, params.get("cassandra_hosts"), params.get("keyspace"))


WORKERS_ENV = "BOTTEGA_BENCH_STREAM_WORKERS"


def workers_of(params: dict[str, Any]) -> int:
    """Processor processes: `workers` in the params, else the environment's BOTTEGA_BENCH_STREAM_WORKERS, else one
    (several workers re-process a batch not yet committed when the group rebalances, so counts vary); SQLite: one."""
    if params["store"] == "sqlite":
        return 1
    return max(1, int(params.get("workers") or os.environ.get(WORKERS_ENV) or 1))


def run_processor(params: dict[str, Any]) -> dict[str, Any]:
    """The child process: Bottega's stream processor until the topic has been idle for `idle_timeout_s`, as
    `workers_of(params)` processes in one consumer group (each gets its share of the partitions, as separate stream
    workers would: one per partition uses the cores a single Python process cannot); the offline files are compacted
    once, after all of them stopped."""
    import multiprocessing

    from bottega.feature_store.offline.store import OfflineStore

    workers = workers_of(params)
    if workers == 1:
        return process_stream(params, compact=True)
    _, schema = definitions(params["topic"])
    online = _online(params)
    try:
        online.create_group(schema)  # once, before the workers' own (idempotent) creation
    finally:
        online.close()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(process_stream, [params] * workers)
    OfflineStore(Path(params["workdir"]) / "stream_offline").compact(schema)
    total: dict[str, Any] = {
        k: sum(r[k] for r in results) for k in results[0] if k not in ("seconds", "cpu_us_per_event")
    }
    total["seconds"] = max(r["seconds"] for r in results)
    total["cpu_us_per_event"] = total["cpu_s"] / total["consumed"] * 1e6 if total["consumed"] else None
    return {**total, "workers": workers, "per_worker": results}


def process_stream(params: dict[str, Any], compact: bool = False) -> dict[str, Any]:
    """One stream processor (one process); compacting only when it is the only one."""
    from bottega.feature_store.offline.store import OfflineStore
    from bottega.feature_store.streaming.processor import run

    group, schema = definitions(params["topic"])
    online = _online(params)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        stats = run(
            group,
            schema,
            params["bootstrap"],
            params["group_id"],
            OfflineStore(Path(params["workdir"]) / "stream_offline"),
            online,
            idle_timeout_s=params["idle_timeout_s"],
            batch_size=params["batch_size"],
            compact_every_s=300.0 if compact else None,  # concurrent compactions of one group would collide
        )
    finally:
        online.close()
    cpu = time.process_time() - cpu_started  # every thread: the measure the machine's other load disturbs least
    return {
        "consumed": stats.consumed,
        "emitted": stats.emitted,
        "rows_online": stats.rows_online,
        "rows_offline": stats.rows_offline,
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
        "seconds": time.perf_counter() - started,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / stats.consumed * 1e6 if stats.consumed else None,
        "peak_rss_mb": peak_rss_mb(),
    }


@dataclass
class Probes:
    """Probe events not yet seen online, per probe entity, and the freshness samples taken so far."""

    count: int
    pending: dict[int, deque[int]] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    measuring: bool = False

    def __post_init__(self) -> None:
        self.pending = {k: deque() for k in range(self.count)}

    def unresolved(self) -> int:
        return sum(len(q) for q in self.pending.values())

    def seen(self, key: int, value: int, seen_us: int) -> None:
        queue = self.pending[key]
        while queue and queue[0] <= value:
            produced = queue.popleft()
            if produced > 0:  # warm-up events are recorded negated and not sampled
                self.samples.append((seen_us - produced) / 1e6)


def produce(
    producer: Any, topic: str, probes: Probes, rate: int, seconds: float, entities: int, stop: threading.Event
) -> dict[str, float]:
    """Send `rate` events per second for `seconds`, paced against the clock; returns what was achieved."""
    rng = random.Random(3)
    started = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total and not stop.is_set():
        due = min(total, int((time.perf_counter() - started) * rate))
        if due <= sent:
            time.sleep(0.0005)
            continue
        for _ in range(due - sent):
            now_us = time.time_ns() // 1000
            if sent % PROBE_EVERY == 0:
                key = (sent // PROBE_EVERY) % probes.count
                probes.pending[key].append(now_us if probes.measuring else -now_us)
            else:
                key = rng.randrange(probes.count, entities)
            event = {KEY: key, "event_time": now_us / 1000.0, "amount": 1.5, "produced_us": now_us}
            producer.send(topic, key=str(key).encode(), value=json.dumps(event).encode())
            sent += 1
    producer.flush()
    elapsed = time.perf_counter() - started
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed}


def read_probes(store: Any, schema: Any, probes: Probes, stop: threading.Event, polls: list[float]) -> None:
    """Poll the probe entities' `last_produced_us` until stopped."""
    ref = schema.ref("last_produced_us")
    entities = [{KEY: k} for k in range(probes.count)]
    last = [0] * probes.count
    while not stop.is_set():
        begin = time.perf_counter()
        result = store.read(entities, [ref], timeout=2.0)
        seen_us = time.time_ns() // 1000
        polls.append(time.perf_counter() - begin)
        for key, row in enumerate(result.rows):
            value = row[ref].value
            if value is not None and value > last[key]:
                last[key] = value
                probes.seen(key, value, seen_us)
        time.sleep(0.002)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def bench_stream(
    params: dict[str, Any], start_processor: Callable[[dict[str, Any]], Any], finish_processor: Callable[[Any], Any]
) -> dict[str, Any]:
    """Produce, process (in a child started by `start_processor`), read back; freshness p50/p99."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    from fsbench.ours import open_store

    topic = f"bench_fs_{uuid.uuid4().hex[:10]}"
    params = {**params, "topic": topic, "group_id": f"{topic}_g"}
    _, schema = definitions(topic)
    admin = KafkaAdminClient(bootstrap_servers=params["bootstrap"], client_id="bench-admin")
    admin.create_topics([NewTopic(topic, num_partitions=params.get("partitions", 2), replication_factor=1)])
    if params["store"] == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            (Path(params["workdir"]) / f"bottega_online.db{suffix}").unlink(missing_ok=True)
    child = start_processor(params)
    producer = KafkaProducer(bootstrap_servers=params["bootstrap"], linger_ms=5, acks=1, batch_size=65_536)
    reader = _reader_store(params, schema, open_store)
    probes = Probes(params["probes"])
    stop, polls = threading.Event(), list[float]()
    poller = threading.Thread(target=read_probes, args=(reader, schema, probes, stop, polls), daemon=True)
    poller.start()
    try:
        warm_rate, warm_seconds = params.get("warmup_rate", 500), params.get("warmup_seconds", 4.0)
        warm = produce(producer, topic, probes, warm_rate, warm_seconds, params["entities"], stop)
        ready = _wait(lambda: probes.unresolved() == 0, 90.0)
        if not ready:
            raise RuntimeError(f"the processor made no warm-up event readable within 90 s ({probes.unresolved()})")
        probes.measuring = True
        achieved = produce(
            producer, topic, probes, params["rate"], params["seconds"], params["entities"], threading.Event()
        )
        drain_s = max(30.0, 3 * params["seconds"])
        drained = _wait(lambda: probes.unresolved() == 0, drain_s)
        unresolved = probes.unresolved()
        cutoff_us = time.time_ns() // 1000
        bounds = [(cutoff_us - p) / 1e6 for queue in probes.pending.values() for p in list(queue) if p > 0]
    finally:
        stop.set()
        poller.join(timeout=10)
        producer.close()
        processor_stats = finish_processor(child)
        reader.close()
        _cleanup(admin, topic, params, open_store)
    samples = probes.samples
    return {
        "side": "bottega",
        "store": params["store"],
        "target_rate": params["rate"],
        "produced": achieved,
        "warmup": warm,
        "freshness": _freshness(samples),
        "freshness_with_unresolved_as_lower_bounds": _freshness(samples + bounds) if bounds else None,
        "probe_events_unresolved": unresolved,
        "drain_wait_s": drain_s,
        "drained": drained,
        "reader_poll": latency_summary(polls) if polls else None,
        "processor": processor_stats,
        "peak_rss_mb": peak_rss_mb(),
    }


def _freshness(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    summary = latency_summary(samples)
    return {
        "n": summary["n"],
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "mean_ms": summary["mean_us"] / 1000,
        "max_ms": summary["max_us"] / 1000,
    }


def _reader_store(params: dict[str, Any], schema: Any, open_store: Callable[..., Any]) -> Any:
    if params["store"] == "sqlite":
        from bottega.feature_store.online.sqlite import SqliteOnlineStore

        store: Any = SqliteOnlineStore(Path(params["workdir"]) / "bottega_online.db")
        store.create_group(schema)
        return store
    from bottega.feature_store.online.cassandra import CassandraOnlineStore
    from fsbench.ours import split_hosts

    hosts, port = split_hosts(params["cassandra_hosts"])
    store = CassandraOnlineStore(hosts, port=port, keyspace=params["keyspace"])
    store.create_group(schema)
    return store


def _cleanup(admin: Any, topic: str, params: dict[str, Any], open_store: Callable[..., Any]) -> None:
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([t for t in (topic, f"{topic}.dlq") if t in existing])
    finally:
        admin.close()
    if params["store"] == "cassandra":
        from bottega.feature_store.online.cassandra import CassandraOnlineStore
        from fsbench.ours import split_hosts

        hosts, port = split_hosts(params["cassandra_hosts"])
        store = CassandraOnlineStore(hosts, port=port, keyspace=params["keyspace"])
        store.drop_keyspace()
        store.close()
