"""`bottega features stream` end to end: a real `bottega server`, a streaming group applied with the CLI, events
on the real Kafka, the consumer run from the shell until idle; the online store holds the aggregates and the
catalog shows the run's freshness and row counts."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer
from live_server import BIN, LiveServer, live_server

from bottega.feature_store.online.base import Status
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

DEFINITIONS = """
project: eats
entities:
  - name: restaurant
    join_keys: {{restaurant_id: int}}
stream_groups:
  - name: live_orders
    entity: restaurant
    max_age: 1h
    topic: {topic}
    event_schema: {{restaurant_id: int, amount: float}}
    allowed_lateness: 5m
    aggregations:
      - {{name: orders_1h, function: count, window: 1h}}
      - {{name: amount_1h, function: sum, field: amount, window: 1h}}
    features:
      - {{name: orders_1h, dtype: int}}
      - {{name: amount_1h, dtype: float}}
"""


def cli(server: LiveServer, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "bottega"), *args],
        env={**server.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"bottega {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def produce(bootstrap: str, topic: str, start: datetime) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i in range(30):
            event = {
                "restaurant_id": 1 + i % 3,
                "amount": float(i),
                "event_time": (start + timedelta(seconds=10 * i)).isoformat(),
            }
            producer.send(topic, key=str(event["restaurant_id"]).encode(), value=json.dumps(event).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_stream_from_the_shell_reports_freshness(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    topic = f"{unique_name}_orders"
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    produce(kafka_bootstrap, topic, start)
    (tmp_path / "features.yaml").write_text(DEFINITIONS.format(topic=topic))
    with live_server(tmp_path / "home") as server:
        cli(server, "projects", "create", "eats")
        cli(server, "features", "apply", str(tmp_path / "features.yaml"))
        ran = json.loads(
            cli(
                server,
                "--json",
                "features",
                "stream",
                "eats",
                "live_orders",
                "--idle-timeout",
                "3",
                "--report-every",
                "0",
                env={"BOTTEGA_KAFKA_BOOTSTRAP": kafka_bootstrap},
            ).stdout
        )
        assert (ran["consumed"], ran["dead_lettered"]) == (30, 0)

        group = json.loads(cli(server, "--json", "features", "get", "eats", "live_orders").stdout)
        stats = group["stats"]
        newest = start + timedelta(seconds=290)
        assert datetime.fromisoformat(stats["last_event_time"]) == newest
        assert stats["rows_offline"] == ran["rows_offline"] == 30
        age = (datetime.fromisoformat(stats["reported_at"]) - newest).total_seconds()
        assert age - 5 <= stats["freshness_seconds"] <= age + 5

    schema = GroupSchema(
        "eats",
        "live_orders",
        (("restaurant_id", ValueType.int),),
        (("orders_1h", ValueType.int), ("amount_1h", ValueType.float)),
        timedelta(hours=1),
    )
    online = SqliteOnlineStore(tmp_path / "home" / "online.db")
    try:
        online.register(schema)
        read = online.read([{"restaurant_id": 3}], [schema.ref("orders_1h"), schema.ref("amount_1h")])
    finally:
        online.close()
    orders = read.rows[0][FeatureRef.parse("eats:live_orders:orders_1h")]
    amount = read.rows[0][FeatureRef.parse("eats:live_orders:amount_1h")]
    assert (orders.value, orders.status) == (10, Status.FRESH)
    assert amount.value == sum(float(i) for i in range(2, 30, 3))
