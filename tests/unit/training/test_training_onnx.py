"""ONNX export of a booster: kept when ONNX Runtime matches XGBoost within 1e-5, refused with a warning otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from bottega.training.onnx_export import TOLERANCE, export_onnx, max_difference


def _booster(task: str) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    x[::7, 1] = np.nan
    y = (x[:, 0] > 0).astype(float) if task == "binary" else x[:, 0] * 300.0 + 1000.0
    objective = "binary:logistic" if task == "binary" else "reg:squarederror"
    params = {"objective": objective, "max_depth": 3, "nthread": 1, "seed": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, feature_names=["a", "b", "c", "d"]), num_boost_round=15)
    return booster, x


def test_a_matching_export_is_written(tmp_path: Path) -> None:
    for task in ("binary", "regression"):
        booster, x = _booster(task)
        native = booster.inplace_predict(x)
        out = tmp_path / f"{task}.onnx"
        result = export_onnx(booster, x, native, task, out)
        assert result.ok, result.warning
        assert out.is_file()
        assert result.max_abs_diff is not None
        assert result.max_abs_diff <= TOLERANCE
        assert result.rows_checked == 300


def test_a_mismatch_leaves_no_onnx_and_a_warning(tmp_path: Path) -> None:
    booster, x = _booster("binary")
    wrong = booster.inplace_predict(x) + 1e-3
    out = tmp_path / "model.onnx"
    result = export_onnx(booster, x, wrong, "binary", out)
    assert not result.ok
    assert not out.exists()
    assert result.warning is not None
    assert "no ONNX flavor" in result.warning
    assert result.to_dict()["valid"] is False


def test_regression_difference_is_relative_to_large_values() -> None:
    native = np.array([1000.0, 0.5])
    assert max_difference(native, native + np.array([1e-3, 0.0]), "regression") == pytest.approx(1e-6)
    assert max_difference(native, native + np.array([0.0, 1e-3]), "binary") == pytest.approx(1e-3)
