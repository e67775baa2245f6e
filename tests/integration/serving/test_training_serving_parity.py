"""Training/serving parity: one batch pipeline run writes the offline store and the online store (SQLite, and the
real Cassandra node); a model is trained on a point-in-time training set and exported to ONNX; the same rows are then
served online (the feature join and the runtime the prediction service uses) and scored in batch (the local engine).
Some entities' latest values are past the group's max age. With the default policy the online feature vectors equal
the point-in-time vectors training and batch scoring see (stale -> null) and the scores are identical; an explicit
`on_stale: serve` is the documented way to get the other behaviour, and it visibly differs."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from api_harness import ApiHarness, harness, migrated_sqlite
from cli_harness import cli_invoker

from bottega.feature_store.batch.duckdb_pipeline import run_batch
from bottega.feature_store.catalog import batch_group
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.sdk import Client
from bottega.serving.batch.local import score_local
from bottega.serving.batch.plan import ScoreRequest
from bottega.serving.features.join import FeatureJoiner
from bottega.serving.features.plan import FeaturePlan
from bottega.serving.features.policy import parse_policies
from bottega.serving.runtimes.loader import ArtifactCache, load_runtime
from bottega.training.onnx_export import export_onnx

STORE = ["shop:customer_stats:f0", "shop:customer_stats:f1"]
COLUMNS = ["customer_stats__f0", "customer_stats__f1"]  # how a training set names them
SIGNATURE = {
    "inputs": [{"name": "x0", "type": "float64"}],
    "store_features": STORE,
    "outputs": [{"name": "probability", "type": "float64"}],
}
CUSTOMERS = 40
# the age of each customer's newest value: fresh ones well inside the 2-day max age, stale ones well past it
AGES = [timedelta(hours=1), timedelta(hours=20), timedelta(days=3), timedelta(days=6)]


@dataclass
class World:
    api: ApiHarness
    token: str
    sdk: Client
    root: Path
    offline: Path
    now: datetime
    source: pa.Table


def _source(now: datetime, rng: random.Random) -> pa.Table:
    """Raw per-customer observations over the last 20 days; the newest one's age cycles through AGES."""
    rows = []
    for customer in range(CUSTOMERS):
        newest = now - AGES[customer % len(AGES)]
        for back in range(8):
            at = newest - timedelta(days=2 * back, minutes=customer)
            f1 = None if rng.random() < 0.1 else rng.uniform(-2, 2)
            rows.append((customer, at, rng.uniform(-2, 2), f1))
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "seen_at": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "f0": pa.array([r[2] for r in rows], pa.float64()),
            "f1": pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def _train(sdk: Client, root: Path, now: datetime, rng: random.Random) -> None:
    """Labels at past times -> the point-in-time training set -> XGBoost -> ONNX -> version 1 of `churn`."""
    n = 600
    labels = pa.table(
        {
            "customer_id": pa.array([rng.randrange(CUSTOMERS) for _ in range(n)], pa.int64()),
            "timestamp": pa.array(
                [now - timedelta(hours=rng.uniform(0, 24 * 16)) for _ in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "x0": pa.array([rng.uniform(-1, 1) for _ in range(n)], pa.float64()),
        }
    )
    joined = sdk.get_training_set(labels, STORE, offline_root=str(root / "offline"))
    x = np.column_stack(
        [joined.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in ("x0", *COLUMNS)]
    )
    assert np.isnan(x[:, 1]).any(), "some label times must see no fresh value (the stale case training learns)"
    y = ((x[:, 0] + np.nan_to_num(x[:, 1], nan=1.5) - 0.5 * np.nan_to_num(x[:, 2])) > 0.3).astype(np.float64)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=y), 20)
    exported = export_onnx(booster, x[:200], booster.inplace_predict(x[:200]), "binary", root / "model.onnx")
    assert exported.ok, exported.warning
    assert exported.path is not None
    sdk.models.create("shop", "churn")
    sdk.models.register_version(
        "shop", "churn", "onnx", {"model.onnx": exported.path}, signature=SIGNATURE, evaluation={"task": "binary"}
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("parity")
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    source = _source(now, rng)
    pq.write_table(source, root / "events.parquet")
    with harness(migrated_sqlite(root), root / "home") as api:
        token = api.project("shop")
        sdk = api.sdk(token)
        sdk.features.put_entity("shop", "customer", {"customer_id": "int"})
        sdk.features.register_group(
            "shop",
            {
                "name": "customer_stats",
                "entity": "customer",
                "max_age": "2d",
                "features": [{"name": "f0", "dtype": "float"}, {"name": "f1", "dtype": "float"}],
                "source": {"path": str(root / "events.parquet"), "timestamp_column": "seen_at"},
                "transform_sql": "SELECT customer_id, seen_at AS event_time, f0, f1 FROM source",
            },
        )
        definition, schema = batch_group(sdk, "shop", "customer_stats")
        run_batch(definition, schema, OfflineStore(root / "offline"), None, now - timedelta(days=30), now)
        _train(sdk, root, now, rng)
        yield World(api, token, sdk, root, root / "offline", now, source)


@pytest.fixture(params=["sqlite", "cassandra"])
def online(request: pytest.FixtureRequest, world: World, tmp_path: Path) -> Iterator[OnlineStore]:
    """The online store the same pipeline run materializes into (run again: idempotent offline)."""
    store: OnlineStore
    if request.param == "sqlite":
        store = SqliteOnlineStore(tmp_path / "online.db")
    else:
        from bottega.feature_store.online.cassandra import CassandraOnlineStore

        host, port = request.getfixturevalue("cassandra_hosts").rsplit(":", 1)
        store = CassandraOnlineStore([host], port=int(port), keyspace=f"p_{uuid.uuid4().hex[:12]}")
    try:
        definition, schema = batch_group(world.sdk, "shop", "customer_stats")
        offline = OfflineStore(world.offline)
        run_batch(definition, schema, offline, store, world.now - timedelta(days=30), world.now)
        yield store
    finally:
        drop = getattr(store, "drop_keyspace", None)  # Cassandra: the test's own keyspace
        if drop is not None:
            drop()
        store.close()


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [{"order_id": i, "customer_id": i % CUSTOMERS, "x0": rng.uniform(-1, 1)} for i in range(2 * CUSTOMERS)]


def _online(world: World, store: OnlineStore, spec: dict[str, Any]) -> tuple[Any, np.ndarray, datetime]:
    plan = FeaturePlan.build(SIGNATURE, world.sdk.features.resolve(STORE), parse_policies(spec))
    plan.register(store)
    at = datetime.now(UTC)
    assembled = asyncio.run(FeatureJoiner(store, timeout_s=10.0).assemble(plan, _rows()))
    runtime = load_runtime(ArtifactCache(world.root / "cache", world.sdk).fetch("shop", "churn", 1))
    return assembled, np.asarray(runtime.predict(assembled.matrix), dtype=np.float64), at


def _batch(world: World, at: datetime, out: Path) -> tuple[list[list[float | None]], dict[int, float], Any]:
    """The point-in-time vectors (what training and batch scoring join), the batch scores and the batch output's
    FRESH / STALE / MISSING counts per row, for rows at `at`."""
    rows = _rows()
    table = pa.table(
        {
            "order_id": pa.array([r["order_id"] for r in rows], pa.int64()),
            "customer_id": pa.array([r["customer_id"] for r in rows], pa.int64()),
            "timestamp": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC")),
            "x0": pa.array([r["x0"] for r in rows], pa.float64()),
        }
    )
    pq.write_table(table, out.with_name("input.parquet"))
    joined = world.sdk.get_training_set(table, STORE, offline_root=str(world.offline)).to_pylist()
    vectors = [[r["x0"], *(r[name] for name in COLUMNS)] for r in sorted(joined, key=lambda r: r["order_id"])]
    request = ScoreRequest(
        project="shop",
        model="churn",
        version=1,
        input=str(out.with_name("input.parquet")),
        output=str(out),
        offline_root=str(world.offline),
        keep=("order_id",),
    )
    score_local(world.sdk, request, ArtifactCache(world.root / "cache", world.sdk))
    scored = pq.read_table(out).to_pylist()
    scores = {r["order_id"]: r["probability"] for r in scored}
    counts = {r["order_id"]: (r["features_fresh"], r["features_stale"], r["features_missing"]) for r in scored}
    return vectors, scores, counts


def test_online_serves_what_training_and_batch_see(world: World, online: OnlineStore, tmp_path: Path) -> None:
    assembled, served, at = _online(world, online, {})
    vectors, batch, counts = _batch(world, at, tmp_path / "scores.parquet")
    statuses = [row[STORE[0]] for row in assembled.status]
    assert statuses.count("FRESH") == CUSTOMERS  # half the customers' newest values are past max age:
    assert statuses.count("STALE") == CUSTOMERS // 2  # 3 days old, still stored
    assert statuses.count("MISSING") == CUSTOMERS // 2  # 6 days old, expired from the online store
    stale = [i for i, s in enumerate(statuses) if s == "STALE"]
    assert all(assembled.vectors[i][1] is None and assembled.vectors[i][2] is None for i in stale)
    assert assembled.vectors == vectors, "online feature vectors equal the point-in-time ones"
    assert served.tolist() == [batch[i] for i in range(len(served))], "online scores equal batch scores"
    online_counts = [
        tuple(list(row.values()).count(k) for k in ("FRESH", "STALE", "MISSING")) for row in assembled.status
    ]
    assert online_counts == [counts[i] for i in range(len(online_counts))], "batch flags rows as serving does"
    assert len({round(p, 6) for p in served.tolist()}) > 10


def test_on_stale_serve_is_an_explicit_choice_that_differs(world: World, online: OnlineStore, tmp_path: Path) -> None:
    assembled, served, at = _online(world, online, {"features": {ref: {"on_stale": "serve"} for ref in STORE}})
    vectors, batch, _ = _batch(world, at, tmp_path / "scores.parquet")
    stale = [i for i, row in enumerate(assembled.status) if row[STORE[0]] == "STALE"]
    assert stale
    assert all(assembled.vectors[i][1] is not None for i in stale)  # the stored value, not what training saw
    assert [assembled.vectors[i] for i in stale] != [vectors[i] for i in stale]
    fresh = [i for i in range(len(vectors)) if i not in stale]
    assert [assembled.vectors[i] for i in fresh] == [vectors[i] for i in fresh]
    assert any(served[i] != batch[i] for i in stale)


def _newest(world: World, customer: int) -> dict[str, Any]:
    rows = [r for r in world.source.to_pylist() if r["customer_id"] == customer]
    return max(rows, key=lambda r: r["seen_at"])


def test_online_get_shows_what_serving_reads(
    world: World, online: OnlineStore, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if isinstance(online, SqliteOnlineStore):
        monkeypatch.setenv("BOTTEGA_ONLINE_STORE", "sqlite")
        monkeypatch.setenv("BOTTEGA_ONLINE_SQLITE_PATH", str(online.path))
    else:
        monkeypatch.setenv("BOTTEGA_ONLINE_STORE", "cassandra")
        monkeypatch.setenv("BOTTEGA_CASSANDRA_HOSTS", request.getfixturevalue("cassandra_hosts"))
        monkeypatch.setenv("BOTTEGA_CASSANDRA_KEYSPACE", online.keyspace)  # type: ignore[attr-defined]
    cli = cli_invoker(world.api, monkeypatch, "features", world.token)
    keys = ["-k", "customer_id=0", "-k", "customer_id=2", "-k", "customer_id=3", "-k", "customer_id=99"]
    got = cli("online-get", "shop", "customer_stats", *keys)
    assert [r["status"] for r in got] == ["FRESH", "STALE", "MISSING", "MISSING"]  # 1 h, 3 d, 6 d old, never
    for row, customer in zip(got[:2], (0, 2), strict=True):
        newest = _newest(world, customer)
        assert (row["customer_id"], row["f0"], row["f1"]) == (customer, newest["f0"], newest["f1"])
        assert datetime.fromisoformat(row["event_time"]) == newest["seen_at"]
    assert abs(got[0]["age_seconds"] - (AGES[0].total_seconds())) < 600
    assert got[2]["f0"] is None
    assert got[2]["event_time"] is None
    sdk_rows = world.sdk.get_online_features(
        "shop", "customer_stats", [{"customer_id": 0}, {"customer_id": 2}], store=online
    )
    assert [(r.status, r.values) for r in sdk_rows] == [(r["status"], {"f0": r["f0"], "f1": r["f1"]}) for r in got[:2]]

    human = cli("online-get", "shop", "customer_stats", "-k", "customer_id=2", "-f", "f0", as_json=False)
    assert "STALE" in human
    assert "customer_id" in human
    assert "f1" not in human
    assert "not a join key" in cli("online-get", "shop", "customer_stats", "-k", "customer=1", as_json=False, code=2)
    assert "declared int" in cli("online-get", "shop", "customer_stats", "-k", "customer_id=x", as_json=False, code=2)
    assert "not a feature" in cli("online-get", "shop", "customer_stats", *keys[:2], "-f", "f9", as_json=False, code=2)
    assert "key=value" in cli("online-get", "shop", "customer_stats", "-k", "customer_id", as_json=False, code=2)


def _call(app: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST to the serving ASGI app in process."""
    import json

    sent: list[dict[str, Any]] = []

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "path": "/v1/models/churn:predict", "method": "POST", "headers": []}, receive, send)

    asyncio.run(run())
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_as_of_replays_history_as_batch_scoring_does(world: World, online: OnlineStore, tmp_path: Path) -> None:
    from bottega.serving.app import ServingApp
    from bottega.serving.metrics import ServingMetrics
    from bottega.serving.predlog.log import default_topic, open_prediction_log
    from bottega.serving.predlog.spool import read_spool
    from bottega.serving.routing import LoadedModel, Route, ServingState
    from bottega.serving.settings import ServingSettings

    plan = FeaturePlan.build(SIGNATURE, world.sdk.features.resolve(STORE), {})
    plan.register(online)
    runtime = load_runtime(ArtifactCache(world.root / "cache", world.sdk).fetch("shop", "churn", 1))
    model = LoadedModel("shop", "churn", 1, runtime, plan, SIGNATURE, "probability")
    log = open_prediction_log(tmp_path / "spool", kafka_bootstrap=None, topic_for=default_topic)
    log.start()
    app = ServingApp(ServingSettings(serve_as_of_max_rows=100), offline=OfflineStore(world.offline), prediction_log=log)
    app.metrics = ServingMetrics()
    app.joiner = FeatureJoiner(online, timeout_s=10.0, offline=app.offline)
    app.state = ServingState.of({("shop", "churn"): Route("shop", "churn", 1, (model,), (100,))}, 1)
    instances = [{k: v for k, v in row.items() if k != "order_id"} for row in _rows()]
    when = world.now - timedelta(days=19)  # only the entities whose history reaches back that far are known

    status, body = _call(app, {"instances": instances, "as_of": when.isoformat()})
    assert status == 200, body
    assert datetime.fromisoformat(body["as_of"]) == when
    _, batch, counts = _batch(world, when, tmp_path / "scores.parquet")
    assert body["predictions"] == [batch[i] for i in range(len(instances))], "a replay scores as batch scoring does"
    flags = [
        tuple(list(row.values()).count(k) for k in ("FRESH", "STALE", "MISSING")) for row in body["feature_status"]
    ]
    assert flags == [counts[i] for i in range(len(instances))]
    assert {f[0] for f in flags} == {0, 2}, "fresh and not fresh rows at that time"
    live_status, live = _call(app, {"instances": instances})
    assert live_status == 200
    assert "as_of" not in live
    assert live["predictions"] != body["predictions"], "today's online values are not those of 19 days ago"

    too_many = {"instances": instances * 2, "as_of": when.isoformat()}
    assert _call(app, too_many)[0] == 413
    bad_status, bad = _call(app, {"instances": instances[:1], "as_of": "last tuesday"})
    assert (bad_status, bad["field"]) == (422, "as_of")
    log.close()
    records = list(read_spool(tmp_path / "spool"))
    replayed = [r for r in records if r.get("as_of_us") is not None]
    assert len(replayed) == len(instances)
    assert {r["as_of_us"] for r in replayed} == {int(when.timestamp() * 1_000_000)}
    assert len(records) == 2 * len(instances), "the live request is logged without as_of"
