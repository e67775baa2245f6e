"""A generated stream of trip events on the real Kafka, and an independent brute-force reference of the
windowed aggregates, shared by the streaming pipeline tests (Kafka consumer and Spark Structured Streaming)."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bottega.feature_store.definitions import Aggregation, Entity, Feature, StreamingFeatureGroup
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.streaming.events import from_micros, to_micros
from bottega.feature_store.types import GroupSchema, ValueType

DRIVER = Entity(name="driver", join_keys={"driver_id": ValueType.int})
LATENESS = timedelta(minutes=5)
AGGS: list[tuple[str, str, str | None, timedelta, ValueType]] = [
    ("trips_10m", "count", None, timedelta(minutes=10), ValueType.int),
    ("rated_10m", "count", "rating", timedelta(minutes=10), ValueType.int),
    ("fare_sum_10m", "sum", "fare", timedelta(minutes=10), ValueType.float),
    ("rating_sum_1h", "sum", "rating", timedelta(hours=1), ValueType.int),
    ("fare_mean_1h", "mean", "fare", timedelta(hours=1), ValueType.float),
    ("fare_min_30m", "min", "fare", timedelta(minutes=30), ValueType.float),
    ("rating_max_1h", "max", "rating", timedelta(hours=1), ValueType.int),
    ("city_last_1h", "last", "city", timedelta(hours=1), ValueType.string),
]
PARTITIONS = 2
ROME = timezone(timedelta(hours=1))


def make_group(topic: str) -> StreamingFeatureGroup:
    return StreamingFeatureGroup(
        name="driver_live",
        entity="driver",
        max_age=timedelta(days=1),
        topic=topic,
        timestamp_field="ts",
        event_schema={"fare": ValueType.float, "rating": ValueType.int, "city": ValueType.string},
        aggregations=[Aggregation(name=n, function=f, field=fd, window=w) for n, f, fd, w, _ in AGGS],
        features=[Feature(name=n, dtype=t) for n, _, _, _, t in AGGS],
        allowed_lateness=LATENESS,
    )


@dataclass
class Stream:
    """What was produced: valid accepted events per driver, the bad records, offsets per partition."""

    accepted: dict[int, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    bad: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, offset, reason)
    end_offsets: dict[int, int] = field(default_factory=dict)
    total: int = 0


MALFORMED: list[tuple[str, bytes]] = [
    ("not_json", b'{"driver_id": 1, "ts": '),
    ("not_json", b"\xff\xfe\x00binary"),
    ("missing_field", json.dumps({"driver_id": 2, "ts": 1, "fare": 1.0, "city": "x"}).encode()),
    ("bad_field", json.dumps({"driver_id": 3, "ts": 1, "fare": "cheap", "rating": 1, "city": "x"}).encode()),
    (
        "bad_timestamp",
        json.dumps({"driver_id": 4, "ts": "2026-11-24T08:00:00", "fare": 1.0, "rating": 1, "city": "x"}).encode(),
    ),
    ("bad_key", json.dumps({"driver_id": None, "ts": 1, "fare": 1.0, "rating": 1, "city": "x"}).encode()),
]


def produce(bootstrap: str, topic: str, *, events: int, drivers: int, start: datetime, seed: int) -> Stream:
    """Produce a deterministic stream keyed by driver (partition = driver % 2), Kafka timestamp = event time."""
    rng = random.Random(seed)
    out = Stream()
    partition_max: dict[int, int] = {}
    used: set[tuple[int, int]] = set()
    clock = to_micros(start) // 1000  # epoch ms
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent: list[tuple[Any, str | None, int | None, int | None, dict[str, Any] | None]] = []
    try:
        for _ in range(events):
            clock += rng.randint(5_000, 50_000)
            driver = rng.randint(1, drivers)
            part = driver % PARTITIONS
            roll = rng.random()
            if roll < 0.05:
                reason, raw = rng.choice(MALFORMED)
                future = producer.send(topic, key=str(driver).encode(), value=raw, partition=part)
                sent.append((future, reason, None, None, None))
                continue
            ts = clock
            if part in partition_max and roll < 0.17:
                ts = partition_max[part] - rng.randint(10_000, 200_000)  # out of order, within the lateness
            elif part in partition_max and roll < 0.22:
                ts = partition_max[part] - rng.randint(20, 60) * 60_000  # too late
            while (driver, ts) in used:
                ts += 1
            late = part in partition_max and ts * 1000 < partition_max[part] * 1000 - to_micros(LATENESS)
            fields = {
                "fare": rng.choice([None, round(rng.uniform(3, 80), 2)]),
                "rating": rng.choice([None, 1, 3, 4, 5]),
                "city": rng.choice(["rome", "milan", "turin"]),
            }
            stamp: Any = ts
            if rng.random() < 0.3:  # some timestamps as ISO-8601 strings with an offset
                stamp = from_micros(ts * 1000).astimezone(ROME).isoformat(timespec="milliseconds")
            value = json.dumps({"driver_id": driver, "ts": stamp, **fields}).encode()
            future = producer.send(topic, key=str(driver).encode(), value=value, partition=part, timestamp_ms=ts)
            if late:
                sent.append((future, "late", None, None, None))
                continue
            used.add((driver, ts))
            partition_max[part] = max(partition_max.get(part, ts), ts)
            sent.append((future, None, driver, ts, fields))
        producer.flush(timeout=30)
    finally:
        producer.close()
    for future, why, who, when, what in sent:
        meta = future.get(timeout=10)
        out.end_offsets[meta.partition] = max(out.end_offsets.get(meta.partition, 0), meta.offset + 1)
        out.total += 1
        if why is not None:
            out.bad.append((meta.partition, meta.offset, why))
        else:
            assert who is not None
            assert when is not None
            assert what is not None
            out.accepted.setdefault(who, []).append((when * 1000, what))
    return out


def reference(events: list[tuple[int, dict[str, Any]]], at: int) -> dict[str, Any]:
    """Every aggregation at `at` by brute force over a driver's valid events (event times are distinct)."""
    values: dict[str, Any] = {}
    for name, function, fld, window, _ in AGGS:
        inside = sorted((e for e in events if at - to_micros(window) < e[0] <= at), key=lambda e: e[0])
        if fld is None:
            values[name] = len(inside)
            continue
        present = [f[fld] for _, f in inside if f[fld] is not None]
        if function == "count":
            values[name] = len(present)
        elif function == "last":
            values[name] = inside[-1][1][fld]
        elif not present:
            values[name] = None
        elif function == "sum":
            values[name] = math.fsum(present) if fld == "fare" else sum(present)
        elif function == "mean":
            values[name] = math.fsum(present) / len(present)
        else:
            values[name] = min(present) if function == "min" else max(present)
    return values


def expected_rows(stream: Stream) -> dict[tuple[int, int], dict[str, Any]]:
    return {(d, ts): reference(events, ts) for d, events in stream.accepted.items() for ts, _ in events}


def offline_rows(offline: OfflineStore, schema: GroupSchema) -> dict[tuple[int, int], dict[str, Any]]:
    rows = offline.read(schema).to_pylist()
    out = {(r.pop("driver_id"), to_micros(r.pop("event_time"))): r for r in rows}
    assert len(out) == len(rows), "one offline row per (entity, event_time)"
    return out


def online_values(online: OnlineStore, schema: GroupSchema, drivers: list[int]) -> dict[int, tuple[Any, ...]]:
    refs = [schema.ref(name) for name, *_ in AGGS]
    result = online.read([{"driver_id": d} for d in drivers], refs, timeout=10)
    out = {}
    for driver, row in zip(drivers, result.rows, strict=True):
        (event_time,) = {fv.event_time for fv in row.values()}
        assert event_time is not None, driver
        out[driver] = ({ref.feature: fv.value for ref, fv in row.items()}, to_micros(event_time))
    return out


def check_online(online: OnlineStore, schema: GroupSchema, stream: Stream, *, ms_precision: bool) -> None:
    drivers = sorted(stream.accepted)
    for driver, (values, event_time) in online_values(online, schema, drivers).items():
        newest = max(ts for ts, _ in stream.accepted[driver])
        assert values == pytest.approx(reference(stream.accepted[driver], newest)), driver
        if ms_precision:
            assert event_time == newest  # Cassandra keeps milliseconds: the revision shift does not show
        else:
            assert 0 <= event_time - newest < 1000  # shifted by the row's revision (µs)


def read_dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        letters: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                letters.extend(json.loads(r.value) for r in records)
        return letters
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group_id: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group_id)[group_id]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in committed.items()}
