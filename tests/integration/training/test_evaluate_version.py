"""Evaluation on newly labelled data (`Client.evaluate_model`, `bottega models evaluate`, the `training.evaluate`
job), end to end through the in-process API on SQLite and the DuckDB offline store: a version scored on the rows
training held out reproduces the training evaluation exactly (same point-in-time join, same report), a later
period's labels become a named evaluation listed beside `training`, and two versions on the same labels compare."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from api_harness import ApiHarness, harness, migrated_sqlite
from cli_harness import cli_invoker
from customer_stats import customer_stats_schema, register_customer_stats

from bottega.api.jobs.background import LocalBackend
from bottega.api.jobs.builtin import job_types as builtin_types
from bottega.api.jobs.runtime import JobsRuntime, JobsSettings
from bottega.api.jobs.types import JobTypeRegistry
from bottega.api.jobs.worker import Worker
from bottega.core.errors import Conflict, InvalidInput
from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.training.jobs import job_types
from bottega.training.runner import train

pytest.importorskip("xgboost")
T0 = datetime(2026, 9, 1, tzinfo=UTC)
ROWS, TRAINED = 1600, 1200  # the first 1200 label rows train (time split at 900), the last 400 come later
CUT = T0 + timedelta(minutes=900)
STORE = [f"shop:customer_stats:f{i}" for i in range(4)]


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    token: str
    root: Path

    def spec(self, model: str, depth: int, task: str = "binary", label: str = "label") -> dict[str, Any]:
        return {
            "project": "shop",
            "model_name": model,
            "dataset": {
                "labels": str(self.root / "train.parquet"),
                "entity_keys": ["customer_id"],
                "label_column": label,
                "features": STORE,
                "request_features": ["x4"],
                "offline_root": str(self.root / "offline"),
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {
                "type": "xgboost",
                "task": task,
                "params": {"max_depth": depth, "nthread": 1},
                "num_boost_round": 25,
            },
            "evaluation": {"permutation_repeats": 0, "slices": ["segment"]},
        }


def _write(root: Path) -> None:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=5, n_informative=4, n_redundant=1, n_classes=3, random_state=9
    )
    at = [T0 + timedelta(minutes=i) for i in range(ROWS)]
    ids = np.arange(ROWS, dtype=np.int64)
    features: dict[str, Any] = {"customer_id": ids, **{f"f{i}": x[:, i] for i in range(4)}}
    features["event_time"] = pa.array([t - timedelta(hours=1) for t in at], pa.timestamp("us", tz="UTC"))
    OfflineStore(root / "offline").upsert(customer_stats_schema(), pa.table(features))
    labels = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "x4": x[:, 4],
            "label": (y == 0).astype(np.int64),
            "kind": np.array(["a", "b", "c"])[y],
            "segment": np.array(["north", "south"])[ids % 2],
        }
    )
    pq.write_table(labels.slice(0, TRAINED), root / "train.parquet")
    pq.write_table(labels.slice(TRAINED), root / "december.parquet")
    held = labels.slice(0, TRAINED).filter(pc.greater_equal(labels.slice(0, TRAINED)["timestamp"], pa.scalar(CUT)))
    pq.write_table(held, root / "held_out.parquet")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("evaluate")
    with harness(migrated_sqlite(root), root / "home", scheduler_interval_s=0) as api:
        registry = JobTypeRegistry([*builtin_types(), *job_types()])
        api.client.app.state.jobs = JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.1))  # type: ignore[attr-defined]
        token = api.project("shop")
        sdk = api.sdk(token)
        register_customer_stats(sdk)
        _write(root)
        yield World(api, sdk, token, root)


def test_the_held_out_rows_reproduce_the_training_evaluation(world: World) -> None:
    version = train(world.sdk, world.spec("churn", 3)).version
    stored = world.sdk.evaluate_model("shop", "churn", version, world.root / "held_out.parquet", name="replay")
    own = world.sdk.models.get_evaluation("shop", "churn", version, "training").evaluation
    assert stored.dataset["rows"] == own["dataset"]["eval_rows"] == 300
    for metric, value in own["eval"]["metrics"].items():
        assert stored.metrics[metric] == pytest.approx(value, abs=1e-6), metric
    for curve, points in own["eval"]["roc"].items():
        assert np.allclose(stored.evaluation["eval"]["roc"][curve], points, atol=1e-6), curve
    assert [s["column"] for s in stored.evaluation["slices"]] == ["segment"]
    got, want = stored.evaluation["slices"][0]["values"], own["slices"][0]["values"]
    assert [(v["value"], v["rows"]) for v in got] == [(v["value"], v["rows"]) for v in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], abs=1e-6)
    names = [f["name"] for f in stored.evaluation["feature_report"]["features"]]
    assert names == ["x4", *(f"customer_stats__f{i}" for i in range(4))]


def test_new_labels_become_a_named_evaluation_compared_across_versions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = train(world.sdk, world.spec("ranker", 1)).version
    second = train(world.sdk, world.spec("ranker", 4)).version
    for version in (first, second):
        world.sdk.evaluate_model("shop", "ranker", version, world.root / "december.parquet", name="december")
    listed = world.sdk.models.list_evaluations("shop", "ranker", second)
    assert [e.name for e in listed] == ["training", "december"]
    december = listed[1]
    assert december.dataset["rows"] == ROWS - TRAINED
    assert december.dataset["first_timestamp"] == (T0 + timedelta(minutes=TRAINED)).isoformat()
    assert 0.6 < december.metrics["auc"] <= 1.0
    compared = world.sdk.models.compare_evaluations("shop", "ranker", name="december").items
    assert [e.version for e in compared] == [second, first]
    assert compared[0].metrics != compared[1].metrics
    with pytest.raises(Conflict, match="already has an evaluation 'december'"):
        world.sdk.evaluate_model("shop", "ranker", second, world.root / "december.parquet", name="december")

    invoke = cli_invoker(world.api, monkeypatch, "models", world.token)
    text = invoke("evaluate", "shop", "ranker", str(second), "--labels", str(world.root / "december.parquet"),
                  "--name", "from-cli", as_json=False)  # fmt: skip
    assert "stored evaluation 'from-cli'" in text
    assert "training" in text
    assert "log_loss" in text
    table = pq.read_table(world.root / "december.parquet")
    pq.write_table(table.rename_columns([c.replace("customer_id", "customerId") for c in table.column_names]),
                   world.root / "camel.parquet")  # fmt: skip
    camel = invoke("evaluate", "shop", "ranker", str(second), "--labels", str(world.root / "camel.parquet"),
                   "--name", "camel", "--key-column", "customer_id=customerId")  # fmt: skip
    assert camel["metrics"] == pytest.approx(december.metrics)
    rows = invoke("evaluations", "shop", "ranker", "--name", "december")
    assert [(r["version"], r["name"]) for r in rows] == [(second, "december"), (first, "december")]
    assert rows[0]["auc"] == pytest.approx(compared[0].metrics["auc"], abs=1e-6)


def test_multiclass_labels_keep_the_versions_classes(world: World) -> None:
    version = train(world.sdk, world.spec("kinds", 3, task="multiclass", label="kind")).version
    stored = world.sdk.evaluate_model("shop", "kinds", version, world.root / "december.parquet", name="december")
    assert stored.evaluation["eval"]["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert stored.metrics["accuracy"] > 0.5
    table = pq.read_table(world.root / "december.parquet")
    odd = table.set_column(table.schema.get_field_index("kind"), "kind", pa.array(["d"] * table.num_rows))
    pq.write_table(odd, world.root / "odd.parquet")
    with pytest.raises(InvalidInput, match=r"values the version never saw: 'd' \(its classes: 'a', 'b', 'c'\)"):
        world.sdk.evaluate_model("shop", "kinds", version, world.root / "odd.parquet", name="odd")
    assert [e.name for e in world.sdk.models.list_evaluations("shop", "kinds", version)] == ["training", "december"]


def test_the_platform_job_stores_the_evaluation(world: World) -> None:
    version = train(world.sdk, world.spec("jobbed", 2)).version
    params = {"model": "jobbed", "version": str(version), "labels": str(world.root / "december.parquet"),
              "name": "holdout-{date}"}  # fmt: skip
    job = world.sdk.jobs.submit("shop", "training.evaluate", params)
    registry = JobTypeRegistry([*builtin_types(), *job_types()])
    sessions = world.api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    worker = Worker(
        LocalBackend(sessions, JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.1))),
        registry,
        name="evaluate-test",
        poll_interval_s=0.05,
        client_factory=lambda: Client(token=world.token, http=world.api.client),
    )
    assert worker.run(once=True) == 1
    done = world.sdk.jobs.get("shop", job.id)
    assert done.status == "succeeded", done.error
    name = f"holdout-{datetime.now(UTC).date().isoformat()}"
    assert done.result["name"] == name
    stored = world.sdk.models.get_evaluation("shop", "jobbed", version, name)
    assert stored.metrics == pytest.approx(done.result["metrics"])
