"""Prediction logging into real Kafka: every record arrives (acks=all), nothing is lost while Kafka is down, and the
records of a writer killed with SIGKILL are shipped by the next process on the same spool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from private_kafka import consume_keys, private_kafka

from bottega.serving.predlog.log import PredictionLog, default_topic, open_prediction_log
from bottega.serving.predlog.record import PredictionRecord
from bottega.serving.predlog.spool import writer_folders


def record(request_id: str, project: str) -> PredictionRecord:
    features = {f"f{i}": i * 0.5 for i in range(20)}
    now_us = time.time_ns() // 1000
    return PredictionRecord(request_id, now_us, project, "eta", "eta_model", 2, False, features, {}, 0.7, 90)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def drained(log: PredictionLog) -> Callable[[], bool]:
    return lambda: log.stats()["queue_depth"] == 0


def delete_topic(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    except Exception:  # the test's assertions matter, not the cleanup
        pass
    finally:
        admin.close()


def test_every_record_arrives_in_the_project_topic(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    topic = default_topic(unique_name)
    log = open_prediction_log(tmp_path, kafka_bootstrap=kafka_bootstrap, topic_for=default_topic)
    log.start()
    try:
        ids = [uuid.uuid4().hex for _ in range(3000)]
        for rid in ids:
            log.append(record(rid, unique_name))
        wait_for(drained(log), 30, "the forwarder to ship 3000 records")
        stats = log.stats()
        assert stats["shipped"] == 3000
        assert stats["dropped"] == 0
        keys = consume_keys(kafka_bootstrap, topic, expect=3000, group=f"{unique_name}-g")
        assert len(keys) == 3000
        assert set(keys) == set(ids)
    finally:
        log.close()
        delete_topic(kafka_bootstrap, topic)
    assert writer_folders(tmp_path) == [], "a wholly shipped folder is deleted at close"


def test_nothing_is_lost_while_kafka_is_down(unique_name: str, tmp_path: Path) -> None:
    topic = default_topic(unique_name)
    with private_kafka(tmp_path / "kafka") as broker:
        log = open_prediction_log(tmp_path / "spool", kafka_bootstrap=broker.bootstrap, topic_for=default_topic)
        log.start()
        try:
            before = [uuid.uuid4().hex for _ in range(200)]
            for rid in before:
                log.append(record(rid, unique_name))
            wait_for(drained(log), 30, "the first records to ship")

            broker.stop()
            during = [uuid.uuid4().hex for _ in range(1000)]
            for rid in during:
                log.append(record(rid, unique_name))
            time.sleep(1.0)
            stats = log.stats()
            assert stats["queue_depth"] == 1000, stats
            assert stats["dropped"] == 0
            assert stats["shipped"] == 200

            broker.start()
            wait_for(drained(log), 45, "the spool to drain after Kafka came back")
            assert log.stats()["shipped"] >= 1200
            keys = consume_keys(broker.bootstrap, topic, expect=1200, group=f"{unique_name}-g")
        finally:
            log.close()
    assert set(keys) == set(before) | set(during)
    assert len(keys) >= 1200


CHILD = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    from bottega.serving.predlog.log import default_topic, open_prediction_log
    from bottega.serving.predlog.record import PredictionRecord

    spool, bootstrap, project = sys.argv[1:4]
    log = open_prediction_log(Path(spool), kafka_bootstrap=bootstrap, topic_for=default_topic)
    log.start()
    features = {f"f{i}": i * 0.5 for i in range(20)}
    while True:
        rid = uuid.uuid4().hex
        log.append(PredictionRecord(rid, time.time_ns() // 1000, project, "eta", "m", 1, False, features, {}, 0.5, 80))
        sys.stdout.write(rid + "\\n")
        sys.stdout.flush()
    """
)


def test_records_of_a_killed_writer_are_shipped_after_restart(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    topic = default_topic(unique_name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), kafka_bootstrap, unique_name],
        stdout=subprocess.PIPE,
        env=env,
    )
    printed: list[str] = []
    try:
        assert child.stdout is not None
        while len(printed) < 4000:
            line = child.stdout.readline()
            assert line, f"the child exited early ({child.poll()})"
            printed.append(line.decode().strip())
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().decode()
        printed.extend(line for line in rest.split("\n")[:-1])  # complete lines only: append returned before print
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert len(writer_folders(tmp_path)) == 1, "the killed writer left its folder"

    log = open_prediction_log(tmp_path, kafka_bootstrap=kafka_bootstrap, topic_for=default_topic)
    log.start()
    try:
        wait_for(lambda: log.stats()["adopted"] == 1, 10, "the orphan folder to be adopted")
        wait_for(drained(log), 30, "the orphan folder to ship")
        keys = consume_keys(kafka_bootstrap, topic, expect=len(printed), group=f"{unique_name}-g")
        missing = set(printed) - set(keys)
        assert not missing, f"{len(missing)} of {len(printed)} acknowledged records are not in Kafka"
        wait_for(lambda: len(writer_folders(tmp_path)) == 1, 10, "the shipped orphan folder to be deleted")
    finally:
        log.close()
        delete_topic(kafka_bootstrap, topic)
