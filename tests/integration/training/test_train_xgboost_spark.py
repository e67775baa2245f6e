"""Distributed XGBoost on the real local Spark (`compute: {kind: spark, workers: 2}`, xgboost.spark) end to end
through the API (in-process app on SQLite): the run, its per-round metrics, a registered version with a validated
ONNX export, quality within a stated tolerance of the local trainer on the same data, and specs that cannot train
on Spark refused before any run exists.

The trainer uses the active SparkSession of the process: the `spark` fixture's local[2] session, so 2 workers run
as 2 concurrent barrier tasks.
"""

from __future__ import annotations

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
from api_harness import harness, migrated_sqlite

from bottega.core.errors import InvalidInput
from bottega.sdk import Client
from bottega.training.runner import train
from bottega.training.spec import SpecError

ROWS = 1500
AUC_TOLERANCE = 0.02
"""Spark's 2 workers build the same trees from histograms summed across workers, but their quantile sketch of the
inputs is merged from two halves, so splits (and AUC) may differ slightly from one process: within 0.02."""
INPUTS = [f"x{i}" for i in range(6)]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class World:
    sdk: Client
    labels: Path

    def spec(self, **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": "churn-spark",
            "seed": 7,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "timestamp_column": "timestamp",
                "label_column": "label",
                "request_features": INPUTS,
            },
            "split": {"kind": "time", "cut": (T0 + timedelta(minutes=int(ROWS * 0.75))).isoformat()},
            "model": {
                "type": "xgboost",
                "task": "binary",
                "params": {"max_depth": 3, "eta": 0.3, "nthread": 1},
                "num_boost_round": 30,
                "early_stopping_rounds": 5,
            },
            "compute": {"kind": "spark", "workers": 2},
            "evaluation": {"permutation_repeats": 1},
            "gates": ["auc >= 0.80"],
        }
        base.update(over)
        return base


def write_labels(path: Path) -> None:
    """make_classification rows, time-ordered; x0 has missing values (NaN -> Arrow -> Spark -> XGBoost missing)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=ROWS, n_features=6, n_informative=4, class_sep=1.0, random_state=5)
    x[::13, 0] = np.nan
    columns: dict[str, Any] = {
        "customer_id": np.arange(ROWS, dtype=np.int64),
        "timestamp": pa.array([T0 + timedelta(minutes=i) for i in range(ROWS)], pa.timestamp("us", tz="UTC")),
        "label": y.astype(np.int64),
        "kind": np.array(["a", "b", "c"])[(x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5).astype(int)],
    }
    columns.update({name: pa.array(x[:, i], from_pandas=True) for i, name in enumerate(INPUTS)})
    pq.write_table(pa.table(columns), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[World]:
    root = tmp_path_factory.mktemp("training-spark")
    url = migrated_sqlite(root)
    labels = root / "labels.parquet"
    write_labels(labels)
    with harness(url, root / "home") as api:
        yield World(sdk=api.sdk(api.project("shop")), labels=labels)


def test_spark_two_workers_register_a_validated_onnx_version_close_to_local(world: World, tmp_path: Path) -> None:
    sdk = world.sdk
    spark_result = train(sdk, world.spec())
    local_result = train(sdk, world.spec(model_name="churn-local", compute="local"))

    assert spark_result.candidate, spark_result.gates
    assert abs(spark_result.metrics["auc"] - local_result.metrics["auc"]) <= AUC_TOLERANCE, (
        spark_result.metrics["auc"],
        local_result.metrics["auc"],
    )
    run = sdk.runs.get("shop", spark_result.run_id)
    assert run.status == "finished"
    assert run.params["compute.kind"] == "spark"
    assert run.params["compute.workers"] == "2"
    history = sdk.runs.metric_history("shop", spark_result.run_id, "eval.auc")
    assert [p.step for p in history] == list(range(spark_result.rounds_run))
    assert len(sdk.runs.metric_history("shop", spark_result.run_id, "train.logloss")) == spark_result.rounds_run
    assert spark_result.best_iteration < spark_result.rounds_run

    version = sdk.models.get_version("shop", "churn-spark", spark_result.version)
    assert version.flavor == "onnx"
    assert version.lineage["flavors"] == {"xgboost": "model.ubj", "onnx": "model.onnx"}
    assert version.evaluation["onnx"]["valid"]
    assert version.evaluation["onnx"]["max_abs_diff"] <= 1e-5
    assert version.evaluation["best_iteration"] == spark_result.best_iteration
    assert set(version.evaluation["importance"]["gain"]) <= set(INPUTS)
    assert sdk.models.get("shop", "churn-spark").aliases["candidate"] == spark_result.version

    files = sdk.models.download("shop", "churn-spark", spark_result.version, tmp_path)
    booster = xgb.Booster(model_file=str(files["model.ubj"]))
    assert booster.feature_names == INPUTS
    assert booster.num_boosted_rounds() == spark_result.best_iteration + 1


def test_spark_multiclass_takes_its_classes_from_the_labels(world: World) -> None:
    def spec(name: str, compute: Any) -> dict[str, Any]:
        base = world.spec(model_name=name, compute=compute, gates=["accuracy >= 0.6"])
        base["dataset"] = {**base["dataset"], "label_column": "kind"}
        base["model"] = {**base["model"], "task": "multiclass"}
        return base

    spark_result = train(world.sdk, spec("kind-spark", {"kind": "spark", "workers": 2}))
    local_result = train(world.sdk, spec("kind-local", "local"))
    assert spark_result.candidate, spark_result.gates
    assert abs(spark_result.metrics["accuracy"] - local_result.metrics["accuracy"]) <= AUC_TOLERANCE
    version = world.sdk.models.get_version("shop", "kind-spark", spark_result.version)
    assert version.flavor == "onnx"
    assert version.signature.outputs[0].shape == [3]
    assert version.evaluation["eval"]["confusion_matrix"]["labels"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"type": "pytorch", "task": "binary"}}, "compute.kind"),
        ({"compute": {"kind": "spark", "workers": 0}}, "compute.workers: Input should be greater than or equal to 1"),
        (
            {"model": {"type": "xgboost", "task": "binary", "params": {"objective": "binary:hinge"}}},
            "model.params.objective: compute 'spark' sets a classifier's objective from the labels",
        ),
        (
            {"model": {"type": "xgboost", "task": "binary", "params": {"tree_method": "exact"}}},
            "model.params.tree_method: 'exact' does not train distributed",
        ),
    ],
)
def test_specs_spark_cannot_train_fail_before_any_run(world: World, change: dict[str, Any], message: str) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    with pytest.raises(SpecError) as caught:
        train(world.sdk, world.spec(model_name="never", **change))
    assert message in caught.value.detail
    assert world.sdk.runs.list("shop", limit=200).total == before


def test_more_workers_than_task_slots_fail_the_run_clearly(world: World) -> None:
    """3 workers cannot run as barrier tasks on local[2]: the run fails, naming compute.workers, no version."""
    before = world.sdk.runs.list("shop", limit=200).total
    with pytest.raises(InvalidInput, match=r"compute\.workers: 3 workers need 3 concurrent Spark task slots"):
        train(world.sdk, world.spec(model_name="too-wide", compute={"kind": "spark", "workers": 3}))
    runs = world.sdk.runs.list("shop", limit=200)
    assert runs.total == before + 1
    assert [r.status for r in runs.items if r.name == "too-wide"] == ["failed"]
