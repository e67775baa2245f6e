"""Cassandra stopped mid-run: predictions go on with MISSING flags (defaults where a policy declares one), each
bounded by the store's read budget, and store features come back FRESH once the node returns.

A private Cassandra node (its own state folder and ports, started with deploy/services/svc.py) so the shared one is
never stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import free_port, live_server
from live_serving import LiveServing, live_serving
from serving_models import ensure_model, train_tiny, write_tree_files

from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.types import GroupSchema, ValueType
from bottega.sdk import Client

REPO = Path(__file__).resolve().parents[2]
REFS = ["eats:daily_prep:avg_prep", "eats:daily_prep:n_orders"]


class PrivateCassandra:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        self.storage_port = free_port()

    def _svc(self, command: str) -> None:
        env = {
            **os.environ,
            "BOTTEGA_SERVICES_STATE": str(self.state),
            "BOTTEGA_CASSANDRA_PORT": str(self.port),
            "BOTTEGA_CASSANDRA_STORAGE_PORT": str(self.storage_port),
        }
        done = subprocess.run(
            [sys.executable, str(REPO / "deploy/services/svc.py"), command, "cassandra"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"svc.py {command} cassandra (private node) failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._svc("up")

    def stop(self) -> None:
        self._svc("down")


@pytest.fixture
def cassandra(tmp_path: Path, cassandra_hosts: str) -> Iterator[PrivateCassandra]:
    # `cassandra_hosts` only makes the test skip, naming Cassandra, where the servers are not installed.
    node = PrivateCassandra(tmp_path / "cassandra")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def statuses(serving: LiveServing, instance: dict[str, Any]) -> tuple[list[str], float, float]:
    started = time.monotonic()
    response = serving.predict("eta", [instance])
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    return [body["feature_status"][0][ref] for ref in REFS], body["predictions"][0], elapsed


def test_predictions_survive_a_cassandra_outage(tmp_path: Path, cassandra: PrivateCassandra) -> None:
    keyspace = f"t_{uuid.uuid4().hex[:12]}"
    schema = GroupSchema(
        "eats",
        "daily_prep",
        (("restaurant_id", ValueType.int),),
        (("avg_prep", ValueType.float), ("n_orders", ValueType.int)),
        timedelta(hours=1),
    )
    store = CassandraOnlineStore(["127.0.0.1"], port=cassandra.port, keyspace=keyspace)
    store.create_group(schema)
    now = datetime.now(UTC)
    store.write_batch(schema, [{"restaurant_id": 7, "avg_prep": 12.5, "n_orders": 40, "event_time": now}])
    store.close()

    model = train_tiny("binary", n_features=4)
    with live_server(tmp_path / "home") as api, Client(api.url, api.token) as client:
        client.projects.create("eats")
        client.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
        client.features.register_group(
            "eats",
            {
                "name": "daily_prep",
                "entity": "restaurant",
                "max_age": "1h",
                "source": {"path": "/unused.parquet"},
                "transform_sql": "SELECT * FROM source",
                "features": [{"name": "avg_prep", "dtype": "float"}, {"name": "n_orders", "dtype": "int"}],
            },
        )
        ensure_model(client, "eats", "eta")
        files = write_tree_files(model, tmp_path / "v1")
        signature = {
            "inputs": [{"name": "f0", "type": "float64"}, {"name": "f1", "type": "float64"}],
            "store_features": REFS,
            "outputs": [{"name": "probability", "type": "float64"}],
        }
        client.models.register_version(
            "eats", "eta", "onnx", {k: str(v) for k, v in files.items()}, signature=signature,
            evaluation={"task": "binary"},
        )  # fmt: skip
        spec = {
            "targets": [{"model": "eta", "version": 1, "weight": 100}],
            "features": {"eats:daily_prep:n_orders": {"on_missing": "default", "default": 10.0}},
        }
        client.deployments.create("eats", "eta", spec)
        env = {
            "BOTTEGA_ONLINE_STORE": "cassandra",
            "BOTTEGA_CASSANDRA_HOSTS": f"127.0.0.1:{cassandra.port}",
            "BOTTEGA_CASSANDRA_KEYSPACE": keyspace,
            "BOTTEGA_SERVE_STORE_TIMEOUT_MS": "100",
            "BOTTEGA_SPOOL_DIR": str(tmp_path / "spool"),
        }
        instance = {"restaurant_id": 7, "f0": 0.5, "f1": -1.0}
        with live_serving(api, tmp_path / "serve", extra_env=env) as serving:
            serving.wait_for(lambda s: s.predict("eta", [instance]).status_code == 200, timeout=60, what="eta served")
            assert statuses(serving, instance)[0] == ["FRESH", "FRESH"]

            cassandra.stop()
            outage = [statuses(serving, instance) for _ in range(20)]
            assert all(flags == ["MISSING", "DEFAULT"] for flags, _, _ in outage), outage
            assert max(elapsed for _, _, elapsed in outage) < 1.0  # bounded by the read budget, not a hang
            metrics = httpx.get(f"{serving.url}/metrics").text
            assert "bottega_store_latency_seconds" in metrics

            cassandra.start()
            serving.wait_for(
                lambda s: statuses(s, instance)[0] == ["FRESH", "FRESH"], timeout=90, what="FRESH after recovery"
            )
