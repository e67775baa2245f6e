"""A private Kafka broker for tests that stop and restart Kafka, so the shared one is never touched, plus a
helper that reads every message key of a topic.

    with private_kafka(tmp_path / "kafka") as broker:
        ... broker.bootstrap ...
        broker.stop()    # svc.py down kafka, with this broker's own state folder and ports
        broker.start()   # svc.py up kafka again: same state folder, so the topic data survives

The broker runs from deploy/services/svc.py with BOTTEGA_SERVICES_STATE pointing at the given folder and two free
ports for BOTTEGA_KAFKA_PORT and BOTTEGA_KAFKA_CONTROLLER_PORT; it is stopped when the block exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SVC = REPO / "deploy" / "services" / "svc.py"
SHARED_PORTS = {19092, 19093}


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateKafka:
    def __init__(self, state: Path) -> None:
        self.state = state.resolve()
        if self.state == (REPO / ".services").resolve():
            raise ValueError("a private broker needs its own state folder, not the shared .services")
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        if {self.port, self.controller_port} & SHARED_PORTS:
            raise RuntimeError("a free port collided with the shared broker's")
        self.bootstrap = f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BOTTEGA_SERVICES_STATE": str(self.state),
            "BOTTEGA_KAFKA_PORT": str(self.port),
            "BOTTEGA_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    def _svc(self, command: str) -> None:
        done = subprocess.run(
            [sys.executable, str(SVC), command, "kafka"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"svc.py {command} kafka (private broker) failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._svc("up")

    def stop(self) -> None:
        self._svc("down")


@contextmanager
def private_kafka(state: Path) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(state)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def consume_keys(bootstrap: str, topic: str, *, expect: int, group: str, timeout_s: float = 30.0) -> list[str]:
    """Every message key (decoded) of `topic` from the beginning, polling until `expect` arrived or the timeout."""
    from kafka import KafkaConsumer

    consumer: Any = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    keys: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(keys) < expect and time.monotonic() < deadline:
            batches: Iterable[list[Any]] = consumer.poll(timeout_ms=500).values()
            for records in batches:
                keys.extend(record.key.decode() for record in records)
        # anything beyond `expect` (duplicates) that is already there
        for records in consumer.poll(timeout_ms=300).values():
            keys.extend(record.key.decode() for record in records)
    finally:
        consumer.close()
    return keys
