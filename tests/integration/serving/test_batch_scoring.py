"""Batch scoring end to end with a real registered model: a tiny XGBoost exported to ONNX, request features plus
store features registered in the catalog and written to the offline store (DuckDB engine), an in-process API on
SQLite. The local engine's predictions are checked against the booster on a point-in-time join computed here by
hand; Spark (real local[2]) gives the same output; bad input fails before anything is written; a batch deployment's
cron fires `serving.batch_score` through the scheduler and the run's result is visible through the API."""

from __future__ import annotations

import bisect
import random
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
from customer_stats import customer_stats_schema, register_customer_stats
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.jobs import scheduler
from bottega.api.jobs.background import LocalBackend
from bottega.api.jobs.runtime import JobsRuntime, JobsSettings
from bottega.api.jobs.types import JobTypeRegistry
from bottega.api.jobs.worker import Worker
from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.serving.batch.jobs import job_types
from bottega.serving.batch.local import score_local
from bottega.serving.batch.plan import BatchInputError, ScoreRequest
from bottega.serving.runtimes.loader import ArtifactCache
from bottega.training.onnx_export import export_onnx

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MAX_AGE = timedelta(days=2)
SCHEMA = customer_stats_schema(2, MAX_AGE)
STORE = ["shop:customer_stats:f0", "shop:customer_stats:f1"]
SIGNATURE = {
    "inputs": [{"name": "x0", "type": "float64"}, {"name": "x1", "type": "int64"}],
    "store_features": STORE,
    "outputs": [{"name": "probability", "type": "float64"}],
}
ROWS = 400
MONTHLY = "0 0 1 * *"


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    root: Path
    offline: Path
    input: Path
    booster: xgb.Booster
    features: dict[int, list[tuple[datetime, float | None, float | None]]]

    def request(self, output: Path, **over: Any) -> ScoreRequest:
        base: dict[str, Any] = {
            "project": "shop",
            "model": "churn",
            "version": 1,
            "input": str(self.input),
            "output": str(output),
            "offline_root": str(self.offline),
        }
        return ScoreRequest(**{**base, **over})

    def cache(self) -> ArtifactCache:
        return ArtifactCache(self.root / "cache", self.sdk)


def write_store(offline: Path, rng: random.Random) -> dict[int, list[tuple[datetime, float | None, float | None]]]:
    """Feature rows for customers 0..19, one per day for 5 days; f1 is sometimes null. Returns them by customer."""
    rows: dict[int, list[tuple[datetime, float | None, float | None]]] = {}
    for customer in range(20):
        for day in range(5):
            at = T0 + timedelta(days=day, minutes=customer)
            f1 = None if rng.random() < 0.15 else rng.uniform(-2, 2)
            rows.setdefault(customer, []).append((at, rng.uniform(-2, 2), f1))
    flat = [(c, *r) for c, values in rows.items() for r in values]
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in flat], pa.int64()),
            "f0": pa.array([r[2] for r in flat], pa.float64()),
            "f1": pa.array([r[3] for r in flat], pa.float64()),
            "event_time": pa.array([r[1] for r in flat], pa.timestamp("us", tz="UTC")),
        }
    )
    OfflineStore(offline).upsert(SCHEMA, table)
    return rows


def write_input(path: Path, rng: random.Random) -> None:
    """Rows to score: some customers have no features (20..24), some rows are before/after what is known."""
    pq.write_table(
        pa.table(
            {
                "order_id": pa.array(range(ROWS), pa.int64()),
                "customer_id": pa.array([rng.randint(0, 24) for _ in range(ROWS)], pa.int64()),
                "timestamp": pa.array(
                    [T0 + timedelta(hours=rng.uniform(-24, 24 * 8)) for _ in range(ROWS)], pa.timestamp("us", tz="UTC")
                ),
                "x0": pa.array([rng.uniform(-1, 1) for _ in range(ROWS)], pa.float64()),
                "x1": pa.array([None if rng.random() < 0.05 else rng.randint(0, 5) for _ in range(ROWS)], pa.int64()),
            }
        ),
        path,
        row_group_size=97,
    )


def train(root: Path) -> tuple[xgb.Booster, Path, Path]:
    """A tiny binary XGBoost over (x0, x1, f0, f1), its ONNX export validated by training's exporter."""
    gen = np.random.default_rng(5)
    x = gen.normal(size=(600, 4))
    x[::9, 3] = np.nan
    y = ((x[:, 0] + 0.5 * x[:, 2] - 0.3 * np.nan_to_num(x[:, 3]) + 0.2 * x[:, 1]) > 0).astype(np.float64)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1}, xgb.DMatrix(x, label=y), 25
    )
    ubj = root / "model.ubj"
    booster.save_model(str(ubj))
    exported = export_onnx(booster, x[:200], booster.inplace_predict(x[:200]), "binary", root / "model.onnx")
    assert exported.ok, exported.warning
    assert exported.path is not None
    return booster, exported.path, ubj


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("batch")
    rng = random.Random(11)
    with harness(migrated_sqlite(root), root / "home") as api:
        sdk = api.sdk(api.project("shop"))
        register_customer_stats(sdk, 2)
        features = write_store(root / "offline", rng)
        write_input(root / "input.parquet", rng)
        booster, onnx_path, ubj = train(root)
        sdk.models.create("shop", "churn")
        sdk.models.register_version(
            "shop",
            "churn",
            "onnx",
            {"model.onnx": onnx_path, "model.ubj": ubj},
            signature=SIGNATURE,
            evaluation={"task": "binary"},
        )
        sdk.models.set_alias("shop", "churn", "champion", 1)
        yield World(api, sdk, root, root / "offline", root / "input.parquet", booster, features)


def expected(world: World) -> dict[int, float]:
    """order_id -> P(class 1) by the booster, on features joined point in time here, by hand."""
    table = pq.read_table(world.input).to_pylist()
    rows = []
    for row in table:
        history = world.features.get(row["customer_id"], [])
        times = [t for t, _, _ in history]
        at = bisect.bisect_right(times, row["timestamp"]) - 1
        f0 = f1 = None
        if at >= 0 and row["timestamp"] - times[at] <= MAX_AGE:
            _, f0, f1 = history[at]
        rows.append([row["x0"], row["x1"], f0, f1])
    matrix = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
    predictions = world.booster.inplace_predict(matrix)
    return {row["order_id"]: float(p) for row, p in zip(table, predictions, strict=True)}


def expected_counts(world: World) -> dict[int, tuple[int, int, int]]:
    """order_id -> (fresh, stale, missing) store features, judged by hand as the online store would: the newest row
    at or before the time, FRESH within max age, STALE up to twice that, else (or none) MISSING."""
    out = {}
    for row in pq.read_table(world.input).to_pylist():
        times = [t for t, _, _ in world.features.get(row["customer_id"], [])]
        at = bisect.bisect_right(times, row["timestamp"]) - 1
        age = row["timestamp"] - times[at] if at >= 0 else None
        n = len(STORE)
        if age is not None and age <= MAX_AGE:
            out[row["order_id"]] = (n, 0, 0)
        elif age is not None and age <= 2 * MAX_AGE:
            out[row["order_id"]] = (0, n, 0)
        else:
            out[row["order_id"]] = (0, 0, n)
    return out


def by_order(path: Path) -> dict[int, dict[str, Any]]:
    return {row["order_id"]: row for row in pq.read_table(path).to_pylist()}


def test_local_engine_scores_with_point_in_time_features(world: World, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    result = score_local(world.sdk, world.request(out, keep=("order_id", "customer_id", "timestamp")), world.cache())
    assert (result.rows, result.model, result.version, result.engine) == (ROWS, "churn", 1, "local")
    table = pq.read_table(out)
    assert table.column_names == [
        "order_id",
        "customer_id",
        "timestamp",
        "probability",
        "features_fresh",
        "features_stale",
        "features_missing",
        "model",
        "version",
        "scored_at",
    ]
    assert table.schema.field("probability").type == pa.float64()
    assert table.schema.field("features_fresh").type == pa.int32()
    rows = by_order(out)
    assert set(rows) == set(range(ROWS))
    want = expected(world)
    worst = max(abs(rows[i]["probability"] - want[i]) for i in rows)
    assert worst <= 1e-5, "ONNX on the joined vector gives the booster's probability on the hand-made join"
    assert len({round(p, 6) for p in want.values()}) > 20, "the data must exercise many feature values"
    assert {(r["model"], r["version"]) for r in rows.values()} == {("churn", 1)}
    assert len({r["scored_at"] for r in rows.values()}) == 1
    counts = {i: (r["features_fresh"], r["features_stale"], r["features_missing"]) for i, r in rows.items()}
    assert counts == expected_counts(world)
    assert set(counts.values()) == {(2, 0, 0), (0, 2, 0), (0, 0, 2)}, "rows of every kind"
    assert list(tmp_path.iterdir()) == [out], "no temporary file is left beside the output"


def test_chunks_and_folder_output_give_the_same_rows(world: World, tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    score_local(world.sdk, world.request(whole), world.cache())
    folder = tmp_path / "chunked"
    result = score_local(world.sdk, world.request(folder, chunk_size=37), world.cache())
    assert result.rows == ROWS
    assert [p.name for p in folder.iterdir()] == ["part-00000.parquet"]
    default = pq.read_table(folder)
    assert default.column_names[:2] == ["customer_id", "timestamp"], "default keep: entity keys and timestamp"
    a = pq.read_table(whole).drop_columns(["scored_at"])
    b = default.drop_columns(["scored_at"])
    assert a.equals(b), "input order is kept and chunking changes nothing"


def test_bad_input_fails_before_writing_and_keeps_the_previous_output(world: World, tmp_path: Path) -> None:
    previous = tmp_path / "out.parquet"
    score_local(world.sdk, world.request(previous, keep=("order_id",)), world.cache())
    before = previous.read_bytes()
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(pq.read_table(world.input).drop_columns(["x1"]), lacking)
    with pytest.raises(BatchInputError, match=r"lacks column\(s\) 'x1' \(a request feature of the model\)"):
        score_local(world.sdk, world.request(previous, input=str(lacking)), world.cache())
    no_ts = tmp_path / "no_ts.parquet"
    pq.write_table(pq.read_table(world.input).drop_columns(["timestamp"]), no_ts)
    with pytest.raises(BatchInputError, match=r"'timestamp' .*timestamp_column"):
        score_local(world.sdk, world.request(tmp_path / "x.parquet", input=str(no_ts)), world.cache())
    texts = tmp_path / "texts.parquet"
    table = pq.read_table(world.input)
    stamps = [t.isoformat() for t in table.column("timestamp").to_pylist()]
    stamps[-1] = "not a time"  # only the last chunk is bad: the run fails after writing earlier chunks
    pq.write_table(table.set_column(2, "timestamp", pa.array(stamps)), texts)
    with pytest.raises(BatchInputError, match="'timestamp' is not a timestamp"):
        score_local(world.sdk, world.request(previous, input=str(texts), chunk_size=50), world.cache())
    assert previous.read_bytes() == before, "a failed run leaves the previous output as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lacking.parquet",
        "no_ts.parquet",
        "out.parquet",
        "texts.parquet",
    ]
    good = tmp_path / "from_text.parquet"
    pq.write_table(
        table.set_column(2, "timestamp", pa.array([t.isoformat() for t in table.column(2).to_pylist()])), good
    )
    parsed = score_local(world.sdk, world.request(tmp_path / "t.parquet", input=str(good)), world.cache())
    assert parsed.rows == ROWS, "ISO-8601 text timestamps are parsed"


@pytest.mark.parametrize(("unit", "zone"), [("ns", "UTC"), ("ms", "Europe/Rome"), ("s", "America/New_York")])
def test_pandas_written_inputs_in_other_units_and_zones_score_the_same(
    world: World, tmp_path: Path, unit: str, zone: str
) -> None:
    """The one timestamp rule: an input written by pandas (datetime64[ns, UTC] by default), or in another unit and
    zone, joins the same point-in-time features and scores exactly as the UTC-microsecond input."""
    reference = tmp_path / "reference.parquet"
    score_local(world.sdk, world.request(reference, keep=("order_id",)), world.cache())
    frame = pq.read_table(world.input).to_pandas()
    frame["timestamp"] = frame["timestamp"].dt.tz_convert(zone).astype(f"datetime64[{unit}, {zone}]")
    pandas_input = tmp_path / "pandas.parquet"
    frame.to_parquet(pandas_input)
    out = tmp_path / "out.parquet"
    score_local(world.sdk, world.request(out, input=str(pandas_input), keep=("order_id",)), world.cache())
    got, want = pq.read_table(out), pq.read_table(reference)
    assert got.column("order_id").equals(want.column("order_id"))
    assert got.column(1).to_pylist() == want.column(1).to_pylist()  # the prediction column


@pytest.mark.spark
def test_spark_engine_writes_what_the_local_engine_writes(world: World, spark: Any, tmp_path: Path) -> None:
    from bottega.serving.batch.spark import score_spark

    keep = ("order_id", "customer_id", "timestamp")
    local = tmp_path / "local.parquet"
    score_local(world.sdk, world.request(local, keep=keep), world.cache())
    sparked = tmp_path / "spark"
    result = score_spark(spark, world.sdk, world.request(sparked, keep=keep, chunk_size=64), world.cache())
    assert (result.rows, result.engine) == (ROWS, "spark")
    spark_rows, local_rows = by_order(sparked), by_order(local)
    assert set(spark_rows) == set(local_rows)
    for order, row in local_rows.items():
        other = spark_rows[order]
        assert other["customer_id"] == row["customer_id"]
        assert other["probability"] == pytest.approx(row["probability"], abs=1e-12)
        assert (other["model"], other["version"]) == ("churn", 1)
        assert _utc(other["timestamp"]) == row["timestamp"]
        counts = ("features_fresh", "features_stale", "features_missing")
        assert [other[c] for c in counts] == [row[c] for c in counts], "the same FRESH / STALE / MISSING counts"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "the temporary folder was renamed"
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(pq.read_table(world.input).drop_columns(["x1"]), lacking)
    with pytest.raises(BatchInputError, match="'x1'"):
        score_spark(spark, world.sdk, world.request(tmp_path / "never", input=str(lacking)), world.cache())
    assert not (tmp_path / "never").exists()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sessions_of(api: ApiHarness) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    return factory


def test_a_batch_deployment_fires_on_its_cron_and_records_the_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTEGA_SERVE_CACHE", str(tmp_path / "cache"))
    registry = JobTypeRegistry(job_types())
    sdk = world.sdk
    output = tmp_path / "nightly-{date}.parquet"
    spec = {
        "model": "churn",
        "alias": "champion",
        "input": str(world.input),
        "output": str(output),
        "schedule": MONTHLY,
        "params": {"offline_root": str(world.offline), "chunk_size": 128, "keep": ["order_id"]},
    }
    sdk.deployments.create("shop", "nightly", spec)
    schedule = next(s for s in sdk.jobs.list_schedules("shop").items if s.name == "deployment.nightly")
    assert (schedule.job_type, schedule.params, schedule.cron) == (
        "serving.batch_score",
        {"deployment": "nightly"},
        MONTHLY,
    )
    assert schedule.next_run_at is not None
    sessions = sessions_of(world.api)
    assert scheduler.fire_due(sessions, schedule.next_run_at - timedelta(seconds=1)).queued == []
    (run_id,) = scheduler.fire_due(sessions, schedule.next_run_at + timedelta(seconds=2)).queued
    runtime = JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.2))
    worker = Worker(
        LocalBackend(sessions, runtime),
        registry,
        name="batch-test",
        client_factory=lambda: Client(token=world.api.admin_token, http=world.api.client),
    )
    assert worker.run(once=True) == 1
    run = sdk.jobs.get("shop", run_id)
    assert run.status == "succeeded", run.error + run.log_tail
    written = Path(str(output).replace("{date}", datetime.now(UTC).date().isoformat()))
    assert run.result["rows"] == ROWS
    assert (run.result["model"], run.result["version"], run.result["output"]) == ("churn", 1, str(written))
    assert (run.result["deployment"], run.result["revision"], run.result["engine"]) == ("nightly", 1, "local")
    assert run.result["seconds"] > 0
    assert run.schedule == "deployment.nightly"
    counts = ["features_fresh", "features_stale", "features_missing"]
    assert pq.read_table(written).column_names == ["order_id", "probability", *counts, "model", "version", "scored_at"]
    history = sdk.jobs.list("shop", job_type="serving.batch_score").items
    assert [r.id for r in history] == [run_id]

    sdk.deployments.undeploy("shop", "nightly", reason="paused")
    paused = next(s for s in sdk.jobs.list_schedules("shop").items if s.name == "deployment.nightly")
    assert (paused.enabled, paused.next_run_at) == (False, None)
    far = schedule.next_run_at + timedelta(days=70)
    assert scheduler.fire_due(sessions, far).queued == [], "an undeployed batch deployment does not fire"
    sdk.deployments.update("shop", "nightly", {**spec, "schedule": "0 5 * * *"}, expected_revision=2)
    resumed = next(s for s in sdk.jobs.list_schedules("shop").items if s.name == "deployment.nightly")
    assert (resumed.enabled, resumed.cron) == (True, "0 5 * * *")
    assert resumed.next_run_at is not None
    assert (resumed.next_run_at.hour, resumed.next_run_at.minute) == (5, 0)


def test_direct_params_and_their_validation(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bottega.core.errors import InvalidInput

    monkeypatch.setenv("BOTTEGA_SERVE_CACHE", str(tmp_path / "cache"))
    registry = JobTypeRegistry(job_types())
    world.api.client.app.state.jobs = JobsRuntime(registry, JobsSettings())  # type: ignore[attr-defined]
    sdk = world.sdk
    with pytest.raises(InvalidInput, match="give a `deployment`, or model, input, output, version"):
        sdk.jobs.submit("shop", "serving.batch_score", {})
    with pytest.raises(InvalidInput, match="not both"):
        sdk.jobs.submit("shop", "serving.batch_score", {"deployment": "d", "model": "churn"})
    params = {
        "model": "churn",
        "alias": "champion",
        "input": str(world.input),
        "output": str(tmp_path / "direct-{run_id}"),
        "offline_root": str(world.offline),
    }
    run = sdk.jobs.submit("shop", "serving.batch_score", params)
    bad = sdk.jobs.submit("shop", "serving.batch_score", {**params, "keep": ["nope"]})
    worker = Worker(
        LocalBackend(sessions_of(world.api), JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.2))),
        registry,
        name="batch-test",
        client_factory=lambda: Client(token=world.api.admin_token, http=world.api.client),
    )
    assert worker.run(once=True) == 1
    assert worker.run(once=True) == 1
    done = sdk.jobs.get("shop", run.id)
    assert done.status == "succeeded", done.error
    assert done.result["output"] == str(tmp_path / f"direct-{run.id}")
    assert (tmp_path / f"direct-{run.id}" / "part-00000.parquet").is_file()
    failed = sdk.jobs.get("shop", bad.id)
    assert failed.status == "failed"
    assert "'nope' (asked for in `keep`)" in failed.error
