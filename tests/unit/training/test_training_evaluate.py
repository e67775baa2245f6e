"""Evaluation math on small arrays: metrics against hand-computed values, curve downsampling, feature statistics,
labels, splits and the tree dump."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from bottega.training.evaluate import binary_report, downsample, multiclass_report, regression_report
from bottega.training.report import column_stats, feature_report, permutation_importance, tree_structure
from bottega.training.spec import SpecError, TrainingSpec, parse_spec


def test_binary_metrics_at_the_threshold() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.6, 0.7, 0.4, 0.9, 0.2]
    report = binary_report(y, p, threshold=0.5)
    m = report["metrics"]
    # predictions at 0.5: 0 1 1 0 1 0 -> TP=2 FP=1 FN=1 TN=2
    assert report["confusion_matrix"]["matrix"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(8 / 9)  # 8 of the 9 (positive, negative) pairs are ordered right
    expected_loss = -np.mean(
        [math.log(1 - 0.1), math.log(0.4), math.log(0.7), math.log(0.4), math.log(0.9), math.log(0.8)]
    )
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert report["roc"]["x"][0] == 0.0
    assert report["roc"]["y"][-1] == 1.0
    assert sum(report["calibration"]["bin_counts"]) == 6
    json.dumps(report, allow_nan=False)


def test_one_class_leaves_auc_undefined() -> None:
    report = binary_report([1, 1, 1], [0.9, 0.8, 0.4])
    assert report["metrics"]["auc"] is None
    assert "roc" not in report
    assert report["metrics"]["recall"] == pytest.approx(2 / 3)


def test_curves_are_downsampled() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    report = binary_report(y, p)
    assert len(report["roc"]["x"]) <= 200
    assert len(report["pr"]["threshold"]) == len(report["pr"]["x"]) <= 200
    curve = downsample(np.arange(1000), np.arange(1000), max_points=10)
    assert curve["x"][0] == 0
    assert curve["x"][-1] == 999
    assert len(curve["x"]) == 10


def test_multiclass_confusion_matrix_and_macro_metrics() -> None:
    y = [0, 1, 2, 2, 1, 0]
    prob = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3], [0.3, 0.4, 0.3], [0.5, 0.3, 0.2]]
    )
    report = multiclass_report(y, prob, ["a", "b", "c"])
    assert report["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert report["confusion_matrix"]["matrix"] == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    assert report["metrics"]["accuracy"] == pytest.approx(5 / 6)
    # precision a=1, b=2/3, c=1; recall a=1, b=1, c=1/2
    assert report["metrics"]["macro_precision"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert report["metrics"]["macro_recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert [row["support"] for row in report["per_class"]] == [2, 2, 2]


def test_regression_metrics() -> None:
    y = np.array([1.0, 2.0, 4.0, 0.0])
    p = np.array([1.5, 2.0, 3.0, 1.0])
    report = regression_report(y, p, bins=4)
    m = report["metrics"]
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert m["mape"] == pytest.approx((0.5 + 0 + 0.25) / 3)  # the row whose actual is 0 is left out
    assert m["r2"] == pytest.approx(1 - 2.25 / np.sum((y - y.mean()) ** 2))
    assert sum(report["residual_histogram"]["counts"]) == 4
    assert report["predicted_vs_actual"]["actual"] == [1.0, 2.0, 4.0, 0.0]


def test_feature_statistics_with_nulls() -> None:
    stats = column_stats([1.0, np.nan, 3.0, 5.0], np.linspace(0, 6, 4))
    assert stats["count"] == 3
    assert stats["null_rate"] == pytest.approx(0.25)
    assert stats["mean"] == pytest.approx(3.0)
    assert stats["std"] == pytest.approx(np.std([1, 3, 5]))
    assert (stats["min"], stats["max"]) == (1.0, 5.0)
    assert stats["quantiles"]["0.5"] == pytest.approx(3.0)
    assert stats["histogram"]["counts"] == [1, 1, 1]
    report = feature_report(["a"], np.array([[1.0], [2.0]]), np.array([[np.nan], [np.nan]]))
    assert report["features"][0]["eval"]["count"] == 0
    assert report["features"][0]["eval"]["mean"] is None
    json.dumps(report, allow_nan=False)


def test_permutation_importance_finds_the_used_feature() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = 2.0 * x[:, 0]

    def score(label: np.ndarray, pred: np.ndarray) -> float:
        return -float(np.sqrt(np.mean((label - pred) ** 2)))

    out = permutation_importance(lambda m: 2.0 * m[:, 0], score, x, y, ["used", "ignored"], repeats=3, seed=0)
    assert (out["used"]["mean"] or 0.0) > 1.0
    assert out["ignored"]["mean"] == 0.0


def test_tree_structure_from_a_booster() -> None:
    import xgboost as xgb

    x = np.array([[0.0], [1.0], [2.0], [3.0]] * 10)
    y = (x[:, 0] > 1.5).astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 1, "nthread": 1},
        xgb.DMatrix(x, label=y, feature_names=["size"]),
        num_boost_round=2,
    )
    trees = tree_structure(booster, "binary")
    root = trees["trees"][0]["root"]
    assert trees["num_trees"] == 2
    assert root["feature"] == "size"
    assert 1.0 < root["threshold"] <= 2.0
    assert root["cover"] > 0
    assert all("leaf" in child for child in root["children"])


def _spec(**split: object) -> TrainingSpec:
    return parse_spec(
        {
            "project": "p",
            "model_name": "m",
            "dataset": {"labels": "l.parquet", "entity_keys": ["id"], "label_column": "y", "request_features": ["a"]},
            "split": split,
            "model": {"type": "xgboost", "task": "binary"},
        }
    )


def test_splits_and_labels() -> None:
    from bottega.training.data import encode_labels, split_mask

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    table = pa.table({"timestamp": pa.array([t0 + timedelta(days=i) for i in range(10)], pa.timestamp("ns", "UTC"))})
    by_time = split_mask(table, _spec(kind="time", cut=(t0 + timedelta(days=7)).isoformat()))
    assert by_time.tolist() == [True] * 7 + [False] * 3
    random_spec = _spec(kind="random", eval_fraction=0.3, seed=5)
    first = split_mask(table, random_spec)
    assert (~first).sum() == 3
    assert split_mask(table, random_spec).tolist() == first.tolist()

    labels, classes = encode_labels(pa.chunked_array([["b", "a", "c", "a"]]), "multiclass", "kind")
    assert classes == ["a", "b", "c"]
    assert labels.tolist() == [1.0, 0.0, 2.0, 0.0]
    labels, classes = encode_labels(pa.chunked_array([[True, False]]), "binary", "late")
    assert labels.tolist() == [1.0, 0.0]
    with pytest.raises(SpecError, match="binary labels must be 0/1"):
        encode_labels(pa.chunked_array([[0, 2]]), "binary", "late")
