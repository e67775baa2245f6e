"""The streaming pipeline against the real Kafka broker (and the SQLite and Cassandra online stores).

A generated stream of a few hundred trip events for several drivers over two partitions holds in-order events,
out-of-order ones within the allowed lateness, too-late ones and malformed ones. The processor's offline rows and
online values must equal an independent brute-force recomputation from the valid events, the dead-letter topic
must hold exactly the bad events, the committed offsets must cover the topic, and a processor stopped mid-stream
and restarted must end exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bottega.feature_store.definitions import Aggregation, Entity, Feature, StreamingFeatureGroup
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.streaming.events import from_micros, to_micros
from bottega.feature_store.streaming.processor import StreamProcessor, StreamStats, run
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


@pytest.fixture
def topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id=unique_name)
    admin.create_topics({unique_name: {"num_partitions": PARTITIONS, "replication_factor": 1}}, wait_for_metadata=True)
    try:
        yield unique_name
    finally:
        existing = set(admin.list_topics())
        admin.delete_topics([t for t in (unique_name, f"{unique_name}.dlq") if t in existing])
        admin.close()


def process(
    bootstrap: str, group: StreamingFeatureGroup, group_id: str, offline: OfflineStore, online: OnlineStore, **kw: Any
) -> StreamStats:
    schema = group.schema_for("mobility", DRIVER)
    return run(group, schema, bootstrap, group_id, offline, online, idle_timeout_s=1.5, batch_size=64, **kw)


def test_parity_dead_letters_and_committed_offsets(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    stream = produce(kafka_bootstrap, topic, events=300, drivers=6, start=start, seed=1)
    assert {reason for _, _, reason in stream.bad} >= {"late", "not_json", "bad_field"}
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    offline, online = OfflineStore(tmp_path / "offline"), SqliteOnlineStore(tmp_path / "online.db")
    seen: list[int] = []
    group_id = f"{topic}-g"
    try:
        stats = process(kafka_bootstrap, group, group_id, offline, online, progress=lambda s: seen.append(s.consumed))
        assert stats.consumed == stream.total
        assert seen == sorted(seen)
        assert seen[-1] == stream.total
        assert len(seen) > 1  # several batches
        assert stats.dead_lettered == len(stream.bad)
        assert stats.late == sum(1 for *_, reason in stream.bad if reason == "late")
        assert stats.emitted > sum(len(e) for e in stream.accepted.values())  # corrections were emitted
        # (1) parity, offline and online
        got, want = offline_rows(offline, schema), expected_rows(stream)
        assert got.keys() == want.keys()
        for key, values in want.items():
            assert got[key] == pytest.approx(values), key
        check_online(online, schema, stream, ms_precision=False)
        # Batches were appended, then folded into one file per day when the run ended.
        days = sorted(offline.group_dir(schema).glob("event_date=*"))
        assert stats.compacted_files > len(days) >= 1
        assert all(len(list(day.glob("*.parquet"))) == 1 for day in days)
    finally:
        online.close()
    # (2) the dead-letter topic holds exactly the bad events, with reasons and the original text
    letters = read_dead_letters(kafka_bootstrap, f"{topic}.dlq")
    assert sorted((d["partition"], d["offset"], d["reason"]) for d in letters) == sorted(stream.bad)
    assert all(d["topic"] == topic and d["detail"] for d in letters)
    assert {d["raw_encoding"] for d in letters if d["reason"] != "not_json"} == {"utf-8"}
    # (3) the committed offsets cover the topic
    assert committed_offsets(kafka_bootstrap, group_id) == stream.end_offsets
    assert stats.committed == stream.end_offsets


def test_restart_mid_stream_ends_exactly_like_an_uninterrupted_run(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    stream = produce(kafka_bootstrap, topic, events=300, drivers=5, start=start, seed=2)
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    stores = {
        name: (OfflineStore(tmp_path / name / "offline"), SqliteOnlineStore(tmp_path / name / "online.db"))
        for name in ("whole", "restarted")
    }
    try:
        whole = process(kafka_bootstrap, group, f"{topic}-whole", *stores["whole"])
        first = process(kafka_bootstrap, group, f"{topic}-restarted", *stores["restarted"], max_events=170)
        second = process(kafka_bootstrap, group, f"{topic}-restarted", *stores["restarted"])
        assert whole.consumed == stream.total
        assert first.consumed == 170
        assert first.consumed + second.consumed == stream.total
        assert 0 < second.replayed < first.consumed  # state rebuilt from a bounded replay
        assert first.dead_lettered + second.dead_lettered == whole.dead_lettered == len(stream.bad)
        assert offline_rows(*stores["restarted"][:1], schema) == offline_rows(stores["whole"][0], schema)
        drivers = sorted(stream.accepted)
        assert online_values(stores["restarted"][1], schema, drivers) == online_values(
            stores["whole"][1], schema, drivers
        )
        want = expected_rows(stream)
        got = offline_rows(stores["restarted"][0], schema)
        assert got.keys() == want.keys()
        assert all(got[k] == pytest.approx(v) for k, v in want.items())
    finally:
        for _, online in stores.values():
            online.close()
    letters = read_dead_letters(kafka_bootstrap, f"{topic}.dlq")  # once per consumer group, none replayed
    assert sorted((d["partition"], d["offset"]) for d in letters) == sorted(2 * [(p, o) for p, o, _ in stream.bad])


def test_a_crash_between_the_writes_and_the_commit_counts_nothing_twice(
    kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    stream = produce(kafka_bootstrap, topic, events=200, drivers=4, start=start, seed=4)
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    offline, online = OfflineStore(tmp_path / "offline"), SqliteOnlineStore(tmp_path / "online.db")
    commit = StreamProcessor._commit
    calls: list[int] = []

    def crash_on_the_third_batch(self: StreamProcessor) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("crash after the writes, before the commit")
        commit(self)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(StreamProcessor, "_commit", crash_on_the_third_batch)
            with pytest.raises(RuntimeError, match="before the commit"):
                process(kafka_bootstrap, group, f"{topic}-g", offline, online)
        committed = committed_offsets(kafka_bootstrap, f"{topic}-g")
        assert 0 < sum(committed.values()) < stream.total
        again = process(kafka_bootstrap, group, f"{topic}-g", offline, online)
        assert again.consumed == stream.total - sum(committed.values())  # the uncommitted batch came again
        assert again.replayed > 0
        got, want = offline_rows(offline, schema), expected_rows(stream)
        assert got.keys() == want.keys()
        assert all(got[k] == pytest.approx(v) for k, v in want.items())
        check_online(online, schema, stream, ms_precision=False)
    finally:
        online.close()


def send_event(bootstrap: str, topic: str, stream: Stream, driver: int, ts: int, fields: dict[str, Any]) -> None:
    """Produce one valid, accepted event (epoch ms) and record it in `stream`."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        value = json.dumps({"driver_id": driver, "ts": ts, **fields}).encode()
        meta = producer.send(topic, key=str(driver).encode(), value=value, partition=driver % PARTITIONS).get(10)
    finally:
        producer.close()
    stream.accepted.setdefault(driver, []).append((ts * 1000, fields))
    stream.end_offsets[meta.partition] = meta.offset + 1
    stream.total += 1


def test_cassandra_online_store_live_correction_and_a_prompt_stop(
    kafka_bootstrap: str, cassandra_hosts: str, topic: str, tmp_path: Path
) -> None:
    start = (datetime.now(UTC) - timedelta(minutes=90)).replace(microsecond=0)
    stream = produce(kafka_bootstrap, topic, events=120, drivers=4, start=start, seed=3)
    newest = max(ts for events in stream.accepted.values() for ts, _ in events) // 1000 + 1000
    send_event(kafka_bootstrap, topic, stream, 9, newest, {"fare": 50.0, "rating": 5, "city": "rome"})
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    host, port = cassandra_hosts.rsplit(":", 1)
    online = CassandraOnlineStore([host], port=int(port), keyspace=f"t_{uuid.uuid4().hex[:12]}")
    offline = OfflineStore(tmp_path / "offline")
    stop = threading.Event()
    consumed: list[int] = [0]
    outcome: list[StreamStats] = []

    def work() -> None:
        report = lambda s: consumed.append(s.consumed)  # noqa: E731
        outcome.append(run(group, schema, kafka_bootstrap, f"{topic}-g", offline, online, stop=stop, progress=report))

    def wait_for(total: int) -> None:
        deadline = time.monotonic() + 60
        while consumed[-1] < total and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumed[-1] == total, "the processor did not consume the stream"

    worker = threading.Thread(target=work)
    worker.start()
    try:
        wait_for(stream.total)
        # live: an out-of-order event corrects the newest row of driver 9, already written online: the corrected
        # row must replace it (its minimum fare goes DOWN, which an equal Cassandra write timestamp would not do)
        send_event(kafka_bootstrap, topic, stream, 9, newest - 60_000, {"fare": 10.0, "rating": 1, "city": "milan"})
        wait_for(stream.total)
        time.sleep(0.5)  # now idle in poll
        stopped = time.monotonic()
        stop.set()
        worker.join(10)
        assert not worker.is_alive()
        assert time.monotonic() - stopped < 2.0
        assert outcome[0].consumed == stream.total
        check_online(online, schema, stream, ms_precision=True)
        nine = online_values(online, schema, [9])[9][0]
        assert (nine["fare_min_30m"], nine["trips_10m"], nine["city_last_1h"]) == (10.0, 2, "rome")
        got, want = offline_rows(offline, schema), expected_rows(stream)
        assert got.keys() == want.keys()
        assert all(got[k] == pytest.approx(v) for k, v in want.items())
    finally:
        stop.set()
        worker.join(10)
        online.drop_keyspace()
        online.close()
