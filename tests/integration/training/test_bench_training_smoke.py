"""The sides of the XGBoost training benchmark (bench/training/xgb_overhead.py) at a tiny size, so the benchmark
code cannot rot: data generation, the raw `xgboost.train` side and the Bottega side (`train(client, spec)` through
the in-process API on SQLite) on the same file, with the same rounds and the same split."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest
from api_harness import harness, migrated_sqlite

BENCH = Path(__file__).resolve().parents[3] / "bench" / "training"
ROWS, FEATURES, ROUNDS = 3000, 6, 15


@pytest.fixture(scope="module")
def sides() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("xgb_sides")
    finally:
        sys.path.remove(str(BENCH))


def test_raw_and_bottega_sides_train_the_same_data(sides: ModuleType, tmp_path: Path) -> None:
    path = sides.generate(tmp_path / "data", ROWS, FEATURES)
    assert sides.generate(tmp_path / "data", ROWS, FEATURES) == path  # generated once per size
    table = pq.read_table(path)
    assert table.num_rows == ROWS
    assert [n for n in table.column_names if n.startswith("x")] == [f"x{j}" for j in range(FEATURES)]
    assert 0 < table["x0"].null_count < ROWS * 0.05

    knobs = {"rounds": ROUNDS, "depth": 3, "eta": 0.3, "nthread": 1, "seed": 7}
    raw = sides.raw_side(path, ROWS, **knobs)
    assert raw["rounds"] == ROUNDS
    assert raw["train_rows"] == int(ROWS * sides.TRAIN_FRACTION)
    assert raw["seconds"] >= raw["stages"]["train"] > 0
    assert 0.6 < raw["auc"] <= 1.0

    url = migrated_sqlite(tmp_path)
    with harness(url, tmp_path / "home") as api:
        client = api.sdk(api.project(sides.PROJECT))
        ours = sides.bottega_side(client, sides.make_spec(path, ROWS, FEATURES, **knobs))
        assert ours["side"] == "bottega"
        assert ours["rounds"] == ROUNDS
        assert ours["flavor"] == "onnx"
        assert set(ours["stages"]) >= {"building the training set", "training xgboost", "uploading artifacts"}
        assert ours["seconds"] >= sum(ours["stages"].values()) * 0.99
        # Same data, split, parameters and seed as the raw side: the same booster, so the same AUC.
        assert ours["auc"] == pytest.approx(raw["auc"], abs=1e-9)
        version = client.models.get_version(sides.PROJECT, "bench-xgb", ours["version"])
        assert version.evaluation["dataset"]["train_rows"] == raw["train_rows"]
