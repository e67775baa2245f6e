"""The streaming pipeline on Spark Structured Streaming (real local[2] Spark with the Kafka source, real Kafka, real
Cassandra): for the same events it writes what the Kafka-consumer pipeline writes (offline rows, online values,
dead letters), equal to an independent recomputation; restarted from its checkpoint it counts nothing twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyspark
import pytest
from api_harness import migrated_sqlite
from kafka import KafkaAdminClient
from stream_events import (
    DRIVER,
    PARTITIONS,
    Stream,
    check_online,
    expected_rows,
    make_group,
    offline_rows,
    online_values,
    produce,
    read_dead_letters,
)

from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.spark_session import (
    SparkJarsMissing,
    add_kafka_jars,
    check_kafka_jars,
    kafka_jars,
    kafka_source_version,
)
from bottega.feature_store.streaming.processor import run
from bottega.feature_store.streaming.spark_stream import SparkStreamStats, run_spark_stream

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def kafka_spark(spark: Any) -> Any:
    """The shared session, with the Kafka source (added at run time when the session started without it)."""
    add_kafka_jars(spark, kafka_jars(fetch=True))
    return spark


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


@pytest.fixture
def cassandra(cassandra_hosts: str) -> Iterator[CassandraOnlineStore]:
    host, port = cassandra_hosts.rsplit(":", 1)
    store = CassandraOnlineStore([host], port=int(port), keyspace=f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.drop_keyspace()
        store.close()


def test_the_kafka_jar_matches_pyspark() -> None:
    jars = kafka_jars(fetch=True)
    assert kafka_source_version(jars) == pyspark.__version__
    pom = (Path(__file__).parents[3] / "deploy/services/conf/spark-kafka/pom.xml").read_text()
    assert f"<spark.version>{pyspark.__version__}</spark.version>" in pom
    assert {Path(j).name.split("-")[0] for j in jars} == {"commons", "kafka", "spark"}  # nothing pyspark ships
    with pytest.raises(SparkJarsMissing, match=r"for Spark 4\.1\.0 but pyspark is"):
        check_kafka_jars(["/x/spark-sql-kafka-0-10_2.13-4.1.0.jar"])
    with pytest.raises(SparkJarsMissing, match="neither a jar nor a folder"):
        kafka_jars({"BOTTEGA_SPARK_JARS": "/no/such/jar.jar"})


def merge(first: Stream, second: Stream) -> Stream:
    accepted = {
        d: [*first.accepted.get(d, []), *second.accepted.get(d, [])] for d in {*first.accepted, *second.accepted}
    }
    ends = {p: max(first.end_offsets.get(p, 0), second.end_offsets.get(p, 0)) for p in range(PARTITIONS)}
    return Stream(accepted, [*first.bad, *second.bad], ends, first.total + second.total)


def spark_run(
    spark: Any, topic: str, offline: OfflineStore, online: Any, checkpoint: Path, **kw: Any
) -> SparkStreamStats:
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    bootstrap = kw.pop("bootstrap")
    return run_spark_stream(spark, group, schema, bootstrap, offline, online, checkpoint, available_now=True, **kw)


def test_parity_with_the_consumer_and_a_restart_from_the_checkpoint(
    kafka_spark: Any, kafka_bootstrap: str, cassandra: CassandraOnlineStore, topic: str, tmp_path: Path
) -> None:
    start = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    first = produce(kafka_bootstrap, topic, events=160, drivers=5, start=start, seed=21)
    group = make_group(topic)
    schema = group.schema_for("mobility", DRIVER)
    offline, checkpoint = OfflineStore(tmp_path / "spark"), tmp_path / "checkpoint"
    batches: list[int] = []
    one = spark_run(
        kafka_spark,
        topic,
        offline,
        cassandra,
        checkpoint,
        bootstrap=kafka_bootstrap,
        max_offsets_per_trigger=80,
        progress=lambda s: batches.append(s.consumed),
    )
    assert one.consumed == first.total
    assert len(batches) >= 2  # several micro-batches
    assert one.dead_lettered == len(first.bad)
    # more events after a stop: their windows reach back over the restart
    newest = max(ts for events in first.accepted.values() for ts, _ in events) // 1000
    later = datetime.fromtimestamp(newest / 1000, UTC) + timedelta(seconds=30)
    second = produce(kafka_bootstrap, topic, events=140, drivers=5, start=later, seed=22)
    stream = merge(first, second)
    assert {reason for _, _, reason in stream.bad} >= {"late", "not_json", "bad_field"}
    two = spark_run(kafka_spark, topic, offline, cassandra, checkpoint, bootstrap=kafka_bootstrap)
    assert two.consumed == second.total  # resumed from the checkpoint, nothing read twice
    three = spark_run(kafka_spark, topic, offline, cassandra, checkpoint, bootstrap=kafka_bootstrap)
    assert three.consumed == three.rows_offline == 0

    # the Kafka-consumer pipeline over the same topic, uninterrupted
    theirs_offline, theirs_online = OfflineStore(tmp_path / "consumer"), SqliteOnlineStore(tmp_path / "consumer.db")
    try:
        theirs = run(group, schema, kafka_bootstrap, f"{topic}-g", theirs_offline, theirs_online, idle_timeout_s=1.5)
        assert theirs.consumed == stream.total
        assert (one.late + two.late, one.dead_lettered + two.dead_lettered) == (theirs.late, theirs.dead_lettered)
        assert one.emitted + two.emitted == theirs.emitted
        mine_rows = offline_rows(offline, schema)
        assert mine_rows == offline_rows(theirs_offline, schema)  # exactly, corrections included
        want = expected_rows(stream)
        assert mine_rows.keys() == want.keys()
        assert all(mine_rows[k] == pytest.approx(v) for k, v in want.items())
        check_online(cassandra, schema, stream, ms_precision=True)
        drivers = sorted(stream.accepted)
        mine_online, theirs_online_values = (
            online_values(cassandra, schema, drivers),
            online_values(theirs_online, schema, drivers),
        )
        for driver in drivers:
            assert mine_online[driver][0] == theirs_online_values[driver][0]
            assert mine_online[driver][1] == theirs_online_values[driver][1] // 1000 * 1000  # Cassandra keeps ms
    finally:
        theirs_online.close()
    # both pipelines dead-lettered exactly the bad records, with the same reasons and details
    letters = read_dead_letters(kafka_bootstrap, f"{topic}.dlq")
    assert sorted((d["partition"], d["offset"], d["reason"]) for d in letters) == sorted(
        2 * [(p, o, r) for p, o, r in stream.bad]
    )
    details: dict[tuple[int, int], set[str]] = {}
    for letter in letters:
        details.setdefault((letter["partition"], letter["offset"]), set()).add(letter["detail"])
    assert all(len(found) == 1 for found in details.values())


def test_the_cli_streams_a_registered_group_on_spark(
    kafka_spark: Any, kafka_bootstrap: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api_harness import harness
    from cli_harness import cli_invoker

    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    stream = produce(kafka_bootstrap, topic, events=40, drivers=3, start=start, seed=23)
    definitions = {
        "project": "mobility",
        "entities": [DRIVER.model_dump(mode="json")],
        "stream_groups": [make_group(topic).model_dump(mode="json")],
    }
    (tmp_path / "features.json").write_text(json.dumps(definitions))
    url = migrated_sqlite(tmp_path)
    for key, value in {
        "BOTTEGA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "BOTTEGA_OFFLINE_URL": str(tmp_path / "offline"),
        "BOTTEGA_ONLINE_STORE": "sqlite",
        "BOTTEGA_ONLINE_SQLITE_PATH": str(tmp_path / "online.db"),
    }.items():
        monkeypatch.setenv(key, value)
    with harness(url, tmp_path / "home") as api:
        cli = cli_invoker(api, monkeypatch, "features", api.project("mobility", owner="alice"))
        cli("apply", str(tmp_path / "features.json"))
        args = ["stream", "mobility", "driver_live", "--engine", "spark"]
        # a processing-time trigger, stopped once the stream has been idle for a second
        ran = cli(*args, "--idle-timeout", "1", "--checkpoint", str(tmp_path / "checkpoint"))
        assert (ran["consumed"], ran["dead_lettered"]) == (stream.total, len(stream.bad))
        assert "need --engine kafka" in cli(*args, "--max-events", "5", as_json=False, code=2)
    schema = make_group(topic).schema_for("mobility", DRIVER)
    got, want = offline_rows(OfflineStore(tmp_path / "offline"), schema), expected_rows(stream)
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(v) for k, v in want.items())
