"""Bottega's side: an API server on embedded defaults (temporary BOTTEGA_HOME), the benchmark model registered
(flavor onnx) and deployed, `bottega serve --workers 1` processes following it, store features in Cassandra, and the
deploy -> first prediction timing.

Deployments (project `bench`):
- `plain`: model `xgb`, 50 request features f0..f49 (cases a and c);
- `store`: model `xgb-store`, 40 request features f0..f39 + 10 store features from 2 groups (`user_stats` u0..u4 by
  user_id, `merchant_stats` m0..m4 by merchant_id) in Cassandra (case b);
- `rollout`: model `xgb`, moved to a newly registered version per round (case d).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from svbench.model import ModelFiles, instance
from svbench.procs import Child, free_port, start, stop, wait_http

PROJECT = "bench"
MODEL = "xgb"
STORE_MODEL = "xgb-store"
PLAIN, STORE, ROLLOUT = "plain", "store", "rollout"
GROUPS = {"user_stats": ("user", "user_id", "u"), "merchant_stats": ("merchant", "merchant_id", "m")}
STORE_FEATURES_PER_GROUP = 5
REQUEST_FEATURES_WITH_STORE = 40
BIN = Path(sys.executable).parent


@dataclass
class Cassandra:
    hosts: str
    """`host:port` (one contact point is enough)."""
    keyspace: str

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.hosts.split(",")[0].strip().rpartition(":")
        return host, int(port)


@dataclass
class Stack:
    workdir: Path
    api: Child
    token: str
    cassandra: Cassandra | None
    serves: dict[str, Child] = field(default_factory=dict)
    entities: int = 0

    def client(self) -> Any:
        from bottega.sdk import Client

        return Client(self.api.url, self.token)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")}


def start_api(workdir: Path) -> Stack:
    """`bottega server` on embedded defaults under `workdir/api-home`; returns once /readyz answers."""
    home = workdir / "api-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**_clean_env(), "BOTTEGA_HOME": str(home), "BOTTEGA_URL": url}
    argv = [str(BIN / "bottega"), "server", "--port", str(port), "--log-level", "warning"]
    api = start("api", argv, workdir / "api.log", env=env)
    api.url = url
    try:
        wait_http(api, f"{url}/readyz", timeout=120)
    except Exception:
        stop(api)
        raise
    return Stack(workdir, api, (home / "bootstrap-token").read_text().strip(), None)


def _signature(request_features: int, store_refs: list[str]) -> dict[str, Any]:
    return {
        "inputs": [{"name": f"f{i}", "type": "float64"} for i in range(request_features)],
        "store_features": store_refs,
        "outputs": [{"name": "probability", "type": "float64"}],
    }


def store_refs() -> list[str]:
    return [
        f"{PROJECT}:{group}:{prefix}{i}"
        for group, (_, _, prefix) in GROUPS.items()
        for i in range(STORE_FEATURES_PER_GROUP)
    ]


def register(client: Any, model: str, files: ModelFiles, signature: dict[str, Any]) -> int:
    """A new version of `model` (flavor onnx: model.onnx, plus model.ubj); returns its number."""
    from bottega.core.errors import NotFound

    try:
        client.models.get(PROJECT, model)
    except NotFound:
        client.models.create(PROJECT, model)
    version = client.models.register_version(
        PROJECT,
        model,
        "onnx",
        {"model.onnx": str(files.onnx), "model.ubj": str(files.ubj), "evaluation.json": str(files.evaluation)},
        signature=signature,
        evaluation={"task": "binary"},
        lineage={"flavors": {"onnx": "model.onnx", "xgboost": "model.ubj"}},
    )
    return int(version.version)


def _spec(model: str, version: int) -> dict[str, Any]:
    return {"targets": [{"model": model, "version": version, "weight": 100}]}


def setup(stack: Stack, files: ModelFiles, *, cassandra: Cassandra | None, entities: int) -> None:
    """The project, the models and the deployments; with `cassandra`, the two groups and their values too."""
    with stack.client() as client:
        client.projects.create(PROJECT, "serving benchmark")
        plain = register(client, MODEL, files, _signature(files.spec.features, []))
        client.deployments.create(PROJECT, PLAIN, _spec(MODEL, plain))
        client.deployments.create(PROJECT, ROLLOUT, _spec(MODEL, plain))
        if cassandra is not None:
            stack.cassandra, stack.entities = cassandra, entities  # from here on, stop_stack drops the keyspace
            _store_features(client, cassandra, entities)
            version = register(client, STORE_MODEL, files, _signature(REQUEST_FEATURES_WITH_STORE, store_refs()))
            client.deployments.create(PROJECT, STORE, _spec(STORE_MODEL, version))


def store_value(group: str, key: int, i: int) -> float:
    """The value written for feature i of `group` for entity `key` (deterministic, so a request can be checked)."""
    return round(((key * 7919 + i * 104729 + len(group)) % 10_000) / 2_500.0 - 2.0, 6)


def _store_features(client: Any, cassandra: Cassandra, entities: int) -> None:
    """Register the 2 groups and write `entities` rows to each with the online store's `write_table`."""
    import pyarrow as pa

    from bottega.feature_store.catalog import batch_group
    from bottega.feature_store.online.cassandra import CassandraOnlineStore

    source = {"source": {"path": "/unused.parquet"}, "transform_sql": "SELECT * FROM source"}
    for group, (entity, key, prefix) in GROUPS.items():
        client.features.put_entity(PROJECT, entity, {key: "int"})
        features = [{"name": f"{prefix}{i}", "dtype": "float"} for i in range(STORE_FEATURES_PER_GROUP)]
        client.features.register_group(
            PROJECT, {"name": group, "entity": entity, "max_age": "30d", "features": features, **source}
        )
    host, port = cassandra.host_port()
    store = CassandraOnlineStore([host], port=port, keyspace=cassandra.keyspace)
    try:
        now = datetime.now(UTC)
        for group, (_, key, prefix) in GROUPS.items():
            _, schema = batch_group(client, PROJECT, group)
            store.create_group(schema)
            keys = list(range(entities))
            columns: dict[str, Any] = {key: pa.array(keys, pa.int64())}
            for i in range(STORE_FEATURES_PER_GROUP):
                columns[f"{prefix}{i}"] = pa.array([store_value(group, k, i) for k in keys], pa.float64())
            columns["event_time"] = pa.array([now] * entities, pa.timestamp("us", tz="UTC"))
            store.write_table(schema, pa.table(columns))
    finally:
        store.close()


def store_instances(files: ModelFiles, entities: int, seed: int = 11) -> list[dict[str, Any]]:
    """Rows for the `store` deployment: the first 40 features of each request row plus random entity keys."""
    rng = random.Random(seed)
    names = files.names()[:REQUEST_FEATURES_WITH_STORE]
    return [
        instance(
            names,
            row[:REQUEST_FEATURES_WITH_STORE],
            {"user_id": rng.randrange(entities), "merchant_id": rng.randrange(entities)},
        )
        for row in files.rows()
    ]


def store_vector(row: dict[str, Any]) -> list[float]:
    """The model input the service should assemble for a `store` row: request features, then store features."""
    vector = [float(row[f"f{i}"]) for i in range(REQUEST_FEATURES_WITH_STORE)]
    for group, (_, key, _) in GROUPS.items():
        vector += [store_value(group, int(row[key]), i) for i in range(STORE_FEATURES_PER_GROUP)]
    return vector


def start_serve(stack: Stack, name: str, *, prediction_log: bool, cpus: str | None) -> Child:
    """`bottega serve --workers 1` following the API (own cache and spool), ready with every deployment loaded."""
    home = stack.workdir / f"serve-{name}"
    port = free_port()
    env = {
        **_clean_env(),
        "BOTTEGA_URL": stack.api.url,
        "BOTTEGA_TOKEN": stack.token,
        "BOTTEGA_HOME": str(home),
        "BOTTEGA_SERVE_PREDICTION_LOG": "true" if prediction_log else "false",
    }
    if stack.cassandra is not None:
        env.update(
            {
                "BOTTEGA_ONLINE_STORE": "cassandra",
                "BOTTEGA_CASSANDRA_HOSTS": stack.cassandra.hosts,
                "BOTTEGA_CASSANDRA_KEYSPACE": stack.cassandra.keyspace,
            }
        )
    argv = [str(BIN / "bottega"), "serve", "--port", str(port), "--workers", "1"]
    child = start(f"serve-{name}", argv, stack.workdir / f"serve-{name}.log", env=env, cpus=cpus)
    child.url = f"http://127.0.0.1:{port}"
    child.notes["prediction_log"] = "spool" if prediction_log else "off"
    stack.serves[name] = child
    wait_http(child, f"{child.url}/readyz", timeout=180)
    expected = {f"{PROJECT}/{PLAIN}", f"{PROJECT}/{ROLLOUT}"} | ({f"{PROJECT}/{STORE}"} if stack.cassandra else set())
    _wait_deployments(child, expected)
    return child


def _wait_deployments(child: Child, expected: set[str], timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    served: set[str] = set()
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{child.url}/readyz", timeout=5) as response:
            served = set(json.loads(response.read())["deployments"])
        if expected <= served:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} serves {sorted(served)}, not all of {sorted(expected)}: {child.tail()}")


def predict_url(child: Child, deployment: str) -> str:
    return f"{child.url}/v1/models/{deployment}:predict"


def deploy_latency(stack: Stack, serve: Child, files: ModelFiles, rounds: int, timeout: float = 30.0) -> dict[str, Any]:
    """Case (d): per round, register a new version of `xgb`, point `rollout` at it, and time from the deployments
    call returning to the first response whose X-Bottega-Version is the new version (requests sent back to back)."""
    import httpx

    body = json.dumps({"instances": [instance(files.names(), files.rows()[0])]}).encode()
    url = predict_url(serve, ROLLOUT)
    out: list[dict[str, Any]] = []
    with stack.client() as client, httpx.Client(timeout=10) as http:
        for _ in range(rounds):
            version = register(client, MODEL, files, _signature(files.spec.features, []))
            current = client.deployments.get(PROJECT, ROLLOUT)
            called = time.perf_counter()
            client.deployments.update(
                PROJECT, ROLLOUT, _spec(MODEL, version), expected_revision=current.revision, reason="benchmark"
            )
            returned = time.perf_counter()
            label, polls, seen = f"{MODEL}:{version}", 0, None
            while time.perf_counter() - returned < timeout:
                response = http.post(url, content=body, headers={"content-type": "application/json"})
                polls += 1
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code} during a deploy: {response.text}")
                if response.headers.get("x-bottega-version") == label:
                    seen = time.perf_counter()
                    break
            out.append(
                {
                    "version": version,
                    "api_call_s": returned - called,
                    "to_first_prediction_s": None if seen is None else seen - returned,
                    "requests_before": polls,
                }
            )
    times = [r["to_first_prediction_s"] for r in out if r["to_first_prediction_s"] is not None]
    return {
        "rounds": out,
        "max_s": max(times) if len(times) == len(out) and times else None,
        "median_s": sorted(times)[len(times) // 2] if times else None,
        "failed_rounds": len(out) - len(times),
    }


def stop_stack(stack: Stack) -> None:
    for child in stack.serves.values():
        stop(child)
    stop(stack.api)
    if stack.cassandra is not None:
        drop_keyspace(stack.cassandra)


def drop_keyspace(cassandra: Cassandra) -> None:
    from cassandra.cluster import Cluster

    host, port = cassandra.host_port()
    cluster = Cluster([host], port=port)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {cassandra.keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def new_keyspace() -> str:
    return f"bench_sv_{uuid.uuid4().hex[:10]}"
