"""Evaluation slices end to end: `evaluation.slices` names categorical label-table columns (not model inputs); the
version's evaluation holds the task's metrics per value (top N by count, the rest as `__other__`, with row counts),
checked against a hand computation from the registered model for an XGBoost classifier and a PyTorch regressor;
a missing or non-categorical slice column fails before any run exists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from api_harness import ApiHarness, harness, migrated_sqlite
from customer_stats import customer_stats_schema, register_customer_stats
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.training.runner import train
from bottega.training.spec import SpecError

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 1200
TRAIN_ROWS = 900
CUT = T0 + timedelta(minutes=TRAIN_ROWS)
STORE_FEATURES = [f"shop:customer_stats:f{i}" for i in range(4)]
SCHEMA = customer_stats_schema()
REGIONS = np.array(["north", "south", "east", "west"])


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    offline: Path
    labels: Path
    inputs: np.ndarray
    """rows x [x4, x5, f0, f1, f2, f3]: the model's inputs in signature order (store values are exact here)."""
    table: pa.Table

    def spec(self, name: str, **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": name,
            "seed": 3,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "label_column": "label",
                "features": STORE_FEATURES,
                "request_features": ["x4", "x5"],
                "offline_root": str(self.offline),
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {"type": "xgboost", "task": "binary", "params": {"max_depth": 3, "nthread": 1}},
            "evaluation": {"slices": ["region", "segment"], "slice_top_n": 2, "permutation_repeats": 0},
        }
        base.update(over)
        return base


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from sklearn.datasets import make_classification

    root = tmp_path_factory.mktemp("slices")
    x, y = make_classification(n_samples=ROWS, n_features=6, n_informative=4, flip_y=0.05, random_state=8)
    ids = np.arange(ROWS, dtype=np.int64)
    at = [T0 + timedelta(minutes=i) for i in range(ROWS)]
    offline = root / "offline"
    columns: dict[str, Any] = {"customer_id": ids, **{f"f{i}": x[:, i] for i in range(4)}}
    columns["event_time"] = pa.array([t - timedelta(hours=1) for t in at], pa.timestamp("us", tz="UTC"))
    OfflineStore(offline).upsert(SCHEMA, pa.table(columns))
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "x4": x[:, 4],
            "x5": x[:, 5],
            "label": y.astype(np.int64),
            "amount": x @ np.array([2.0, -1.0, 0.5, 0.0, 1.5, 1.0]) * 10 + 40,
            "region": REGIONS[rng.choice(4, ROWS, p=[0.4, 0.3, 0.2, 0.1])],
            "segment": rng.integers(1, 3, ROWS),
            "score": rng.normal(size=ROWS),
        }
    )
    labels = root / "labels.parquet"
    pq.write_table(table, labels)
    with harness(migrated_sqlite(root), root / "home") as api:
        sdk = api.sdk(api.project("shop"))
        register_customer_stats(sdk)
        inputs = np.column_stack([x[:, 4], x[:, 5], x[:, 0], x[:, 1], x[:, 2], x[:, 3]])
        yield World(api=api, sdk=sdk, offline=offline, labels=labels, inputs=inputs, table=table)


def groups(values: np.ndarray, top: list[str]) -> dict[str, np.ndarray]:
    """Masks of the expected slices: each top value, then everything else as __other__."""
    text = values.astype(str)
    out = {v: text == v for v in top}
    rest = ~np.isin(text, top)
    if rest.any():
        out["__other__"] = rest
    return out


def test_xgboost_classifier_slices_match_a_hand_computation(world: World, tmp_path: Path) -> None:
    result = train(world.sdk, world.spec("sliced"))
    version = world.sdk.models.get_version("shop", "sliced", result.version)
    files = world.sdk.models.download("shop", "sliced", result.version, tmp_path)
    booster = xgb.Booster(model_file=str(files["model.ubj"]))
    held = slice(TRAIN_ROWS, ROWS)
    prob = booster.inplace_predict(world.inputs[held])
    label = np.asarray(world.table["label"])[held]
    region = np.asarray(world.table["region"])[held]
    segment = np.asarray(world.table["segment"])[held]

    report = {entry["column"]: entry for entry in version.evaluation["slices"]}
    assert list(report) == ["region", "segment"]
    counts = {v: int((region == v).sum()) for v in REGIONS}
    top_regions = sorted(counts, key=lambda v: (-counts[v], v))[:2]
    expected = {"region": groups(region, top_regions), "segment": groups(segment, ["1", "2"])}
    for column, masks in expected.items():
        values = report[column]["values"]
        assert [v["value"] for v in values] == list(masks)  # by count; the rest pooled last
        for entry in values:
            mask = masks[entry["value"]]
            assert entry["rows"] == int(mask.sum())
            metrics = entry["metrics"]
            assert metrics["auc"] == pytest.approx(roc_auc_score(label[mask], prob[mask]), abs=1e-6)
            assert metrics["log_loss"] == pytest.approx(log_loss(label[mask], prob[mask], labels=[0, 1]), abs=1e-6)
            assert metrics["accuracy"] == pytest.approx(accuracy_score(label[mask], prob[mask] >= 0.5))
            assert metrics["f1"] == pytest.approx(f1_score(label[mask], prob[mask] >= 0.5))
    assert sum(v["rows"] for v in report["region"]["values"]) == ROWS - TRAIN_ROWS
    assert "region" not in version.evaluation["importance"].get("gain", {})  # a slice need not be an input


def test_torch_regressor_slices_match_a_hand_computation(world: World, tmp_path: Path) -> None:
    spec = world.spec(
        "sliced-mlp",
        model={"type": "pytorch", "task": "regression", "architecture": {"hidden": [16]}, "epochs": 3, "lr": 0.01},
        evaluation={"slices": ["segment", "region"], "slice_top_n": 3, "permutation_repeats": 0},
    )
    spec["dataset"] = {**spec["dataset"], "label_column": "amount"}
    result = train(world.sdk, spec)
    version = world.sdk.models.get_version("shop", "sliced-mlp", result.version)
    assert version.flavor == "onnx"
    files = world.sdk.models.download("shop", "sliced-mlp", result.version, tmp_path)
    session = ort.InferenceSession(str(files["model.onnx"]), providers=["CPUExecutionProvider"])
    held = slice(TRAIN_ROWS, ROWS)
    predicted = session.run(None, {"input": world.inputs[held].astype(np.float32)})[0][:, 0].astype(np.float64)
    actual = np.asarray(world.table["amount"])[held]
    region = np.asarray(world.table["region"])[held]

    report = {entry["column"]: entry for entry in version.evaluation["slices"]}
    entries = {e["value"]: e for e in report["region"]["values"]}
    assert list(entries)[-1] == "__other__"
    assert len(entries) == 4
    for value, entry in entries.items():
        mask = region == value if value != "__other__" else ~np.isin(region, list(entries)[:3])
        assert entry["rows"] == int(mask.sum())
        error = actual[mask] - predicted[mask]
        assert entry["metrics"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(error**2))), rel=1e-4)
        assert entry["metrics"]["mae"] == pytest.approx(float(np.mean(np.abs(error))), rel=1e-4)
    assert [e["value"] for e in report["segment"]["values"]] in (["1", "2"], ["2", "1"])


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        (["channel"], "evaluation.slices: column 'channel' is not in the label table"),
        (["score"], "evaluation.slices: 'score' is double; a slice column holds strings, integers"),
    ],
)
def test_bad_slice_columns_fail_before_any_run(world: World, slices: list[str], message: str) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    with pytest.raises(SpecError) as caught:
        train(world.sdk, world.spec("never", evaluation={"slices": slices}))
    assert message in caught.value.detail
    assert world.sdk.runs.list("shop", limit=200).total == before
