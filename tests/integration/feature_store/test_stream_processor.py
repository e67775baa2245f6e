"""The streaming pipeline against the real Kafka broker (and the SQLite and Cassandra online stores).

A generated stream of a few hundred trip events for several drivers over two partitions holds in-order events,
out-of-order ones within the allowed lateness, too-late ones and malformed ones. The processor's offline rows and
online values must equal an independent brute-force recomputation from the valid events, the dead-letter topic
must hold exactly the bad events, the committed offsets must cover the topic, and a processor stopped mid-stream
and restarted must end exactly where an uninterrupted one does.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from stream_events import (
    DRIVER,
    PARTITIONS,
    Stream,
    check_online,
    committed_offsets,
    expected_rows,
    make_group,
    offline_rows,
    online_values,
    produce,
    read_dead_letters,
)

from bottega.feature_store.definitions import StreamingFeatureGroup
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.streaming.processor import StreamProcessor, StreamStats, run


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
