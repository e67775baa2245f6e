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


def test_stage_profile_keeps_the_reports_of_before(sides: ModuleType, tmp_path: Path) -> None:
    """`xgb_stages.py --before` runs every stage, and the faster feature report and permutation importance give
    the numbers the code before them gave (kept in `stages_before.py`)."""
    import json

    import numpy as np

    stages_before = importlib.import_module("stages_before")
    xgb_stages = importlib.import_module("xgb_stages")

    from bottega.training.artifacts import importance
    from bottega.training.data import build_dataset
    from bottega.training.report import feature_report
    from bottega.training.spec import load_spec
    from bottega.training.xgb import train_xgboost

    argv = ["--rows", str(ROWS), "--features", str(FEATURES), "--rounds", "5", "--nthread", "1"]
    assert xgb_stages.main([*argv, "--before", "--data", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "results" / f"xgb_stages-{ROWS}x{FEATURES}.json").read_text())
    stages = saved["stages"]
    for name in ("training set", "training (xgboost.train)", "feature report", "build_artifacts (whole)"):
        assert stages[name]["wall"] > 0
        assert stages[name]["cpu"] >= 0
    assert "  before: sorting histograms" in stages

    path = sides.generate(tmp_path, ROWS, FEATURES)
    knobs = {"rounds": 5, "depth": 3, "eta": 0.3, "nthread": 1, "seed": 7}
    spec = load_spec(sides.make_spec(path, ROWS, FEATURES, **knobs))
    data = build_dataset(None, spec)  # type: ignore[arg-type]  # no store features: no client needed
    trained = train_xgboost(spec, data)
    new = feature_report(data.feature_names, data.train.features, data.eval.features, 20)["features"]
    old = stages_before.feature_report(data.feature_names, data.train.features, data.eval.features, 20)
    for ours, theirs in zip(new, old, strict=True):
        for part in ("train", "eval"):
            assert ours[part]["histogram"]["counts"] == theirs[part]["counts"]
            assert list(ours[part]["quantiles"].values()) == theirs[part]["quantiles"]
            assert ours[part]["mean"] == theirs[part]["mean"]
    permutation = importance(spec, data, trained)["permutation"]
    before = stages_before.permutation_importance(spec, data, trained)
    assert permutation.keys() == before.keys()
    for name, value in before.items():
        assert permutation[name]["mean"] == pytest.approx(value, abs=1e-12)
    assert np.isfinite(list(before.values())).all()


def test_torch_sides_two_processes_reach_the_local_quality(sides: ModuleType, tmp_path: Path) -> None:
    """`torch_sides.py` trains in-process and with torchrun (2 DDP processes) on the same data: the same global
    batches and initial weights, so about the same holdout AUC."""
    import json

    torch_sides = importlib.import_module("torch_sides")

    argv = ["--rows", "2000", "--features", "5", "--epochs", "2", "--sides", "local,torchrun"]
    assert torch_sides.main([*argv, "--data", str(tmp_path)]) == 0
    saved = json.loads(next((tmp_path / "results").glob("torch_sides-*.json")).read_text())
    local, ddp = saved["results"]["local"], saved["results"]["torchrun"]
    assert (local["processes"], ddp["processes"]) == (1, 2)
    assert local["epochs_run"] == ddp["epochs_run"] == 2
    assert local["seconds"] > 0
    assert ddp["seconds"] > 0
    assert 0.6 < local["auc"] <= 1.0
    assert ddp["auc"] == pytest.approx(local["auc"], abs=1e-3)
