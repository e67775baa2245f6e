"""The `tuning:` section and `evaluation.slices`: invalid spaces and settings are refused naming the field, trial
specs get the sampled values at their paths, and slice metrics match a hand computation."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from bottega.training.evaluate import OTHER, slice_groups, slice_report
from bottega.training.spec import SpecError, parse_spec
from bottega.training.tuning.spec import with_values

BASE: dict[str, Any] = {
    "project": "eats",
    "model_name": "eta",
    "dataset": {
        "labels": "labels.parquet",
        "entity_keys": ["restaurant_id"],
        "label_column": "late",
        "request_features": ["distance_km"],
    },
    "split": {"kind": "random", "eval_fraction": 0.25, "seed": 3},
    "model": {"type": "xgboost", "task": "binary", "params": {"max_depth": 4}, "num_boost_round": 30},
    "tuning": {
        "space": {
            "model.params.eta": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "model.params.max_depth": {"type": "int", "low": 2, "high": 6},
        },
        "n_trials": 5,
    },
}
TORCH_MODEL: dict[str, Any] = {"type": "pytorch", "task": "binary", "epochs": 3}


def with_tuning(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["tuning"].update(changes)
    return data


def test_defaults_follow_the_task() -> None:
    spec = parse_spec(BASE)
    assert spec.tuning is not None
    assert spec.tuning.metric_for("binary") == "auc"
    assert spec.tuning.direction_for("binary") == "maximize"
    assert spec.tuning.direction_for("regression") == "minimize"
    assert spec.tuning.pruner.kind == "hyperband"
    assert spec.tuning.sampler == "tpe"
    assert spec.tuning.n_jobs == 1
    assert parse_spec(with_tuning(pruner="successive_halving")).tuning.pruner.kind == "successive_halving"  # type: ignore[union-attr]


def test_trial_spec_gets_the_values_at_their_paths() -> None:
    spec = parse_spec(BASE)
    model = with_values(spec.model.model_dump(mode="json"), {"model.params.eta": 0.05, "model.num_boost_round": 7})
    trial = spec.with_model(model)
    assert trial.xgboost_model.params == {"max_depth": 4, "eta": 0.05}
    assert trial.xgboost_model.num_boost_round == 7
    assert spec.xgboost_model.params == {"max_depth": 4}  # the base spec is untouched
    torch_spec = parse_spec(
        {
            **BASE,
            "model": TORCH_MODEL,
            "tuning": {"space": {"model.architecture.hidden": {"type": "categorical", "choices": [[8], [16, 8]]}}},
        }
    )
    trial = torch_spec.with_model(
        with_values(torch_spec.model.model_dump(mode="json"), {"model.architecture.hidden": [16, 8]})
    )
    assert trial.torch_model.architecture.hidden == [16, 8]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"space": {}}, "tuning.space: Dictionary should have at least 1 item"),
        (
            {"space": {"params.eta": {"type": "float", "low": 0.1, "high": 0.2}}},
            "'params.eta' is not a path into the model",
        ),
        ({"space": {"model.task": {"type": "categorical", "choices": ["binary"]}}}, "model.task cannot be tuned"),
        (
            {"space": {"model.params.eta": {"type": "float", "low": 0.3, "high": 0.1}}},
            "tuning.space.model.params.eta: low (0.3) must be a number at most high (0.1)",
        ),
        ({"space": {"model.params.eta": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, "log needs low > 0"),
        ({"space": {"model.params.eta": {"type": "normal", "low": 0.0}}}, "tuning.space.model.params.eta"),
        (
            {"space": {"model.params.seed": {"type": "int", "low": 1, "high": 3}}},
            "tuning.space.model.params.seed: the value 1 makes an invalid model: model.params: params.seed is not "
            "allowed",
        ),
        (
            {"space": {"model.lr": {"type": "float", "low": 0.01, "high": 0.1}}},
            "tuning.space.model.lr: the value 0.01 makes an invalid model: model.lr: Extra inputs are not permitted",
        ),
        (
            {"space": {"model.num_boost_round": {"type": "int", "low": 0, "high": 10}}},
            "tuning.space.model.num_boost_round: the value 0 makes an invalid model: model.num_boost_round: Input "
            "should be greater than or equal to 1",
        ),
        (
            {"space": {"model.params.grow": {"type": "categorical", "choices": []}}},
            "tuning.space.model.params.grow.choices: List should have at least 1 item",
        ),
        ({"n_trials": 0}, "tuning.n_trials: Input should be greater than or equal to 1"),
        ({"timeout_s": 0}, "tuning.timeout_s: Input should be greater than 0"),
        ({"sampler": "grid"}, "tuning.sampler: Input should be 'tpe' or 'random'"),
        ({"pruner": "median"}, "tuning.pruner.kind"),
        ({"n_jobs": 0}, "tuning.n_jobs: Input should be greater than or equal to 1"),
        ({"metric": "rmse"}, "tuning.metric: unknown metric 'rmse' for task 'binary'"),
        ({"metric": "f1"}, "tuning.pruner: metric 'f1' has no per-round value for xgboost binary models to prune on"),
        ({"direction": "up"}, "tuning.direction: Input should be 'maximize' or 'minimize'"),
    ],
)
def test_invalid_tuning_is_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_tuning(**changes))
    assert message in caught.value.detail


def test_tuning_fits_only_local_compute_and_metric_without_curve_needs_no_pruner() -> None:
    with pytest.raises(SpecError, match="tuning: trials train with compute 'local'"):
        parse_spec({**BASE, "compute": {"kind": "spark", "workers": 2}})
    spec = parse_spec(with_tuning(metric="f1", pruner="none"))
    assert spec.tuning is not None
    assert spec.tuning.metric == "f1"
    torch_bad = {
        **BASE,
        "model": TORCH_MODEL,
        "tuning": {"space": {"model.params.eta": {"type": "float", "low": 0.1, "high": 0.2}}},
    }
    with pytest.raises(
        SpecError,
        match=r"tuning\.space\.model\.params\.eta: the value 0\.1 makes an invalid model: model\.params: Extra inputs",
    ):
        parse_spec(torch_bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slices": ["region", "region"]}, "evaluation.slices: Value error, a column is listed twice"),
        ({"slices": ["bad column"]}, "evaluation.slices[0]: String should match pattern"),
        ({"slice_top_n": 0}, "evaluation.slice_top_n: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_slices_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "evaluation": changes})
    assert message.replace("Value error, ", "") in caught.value.detail


def test_slice_groups_keep_the_top_values_and_pool_the_rest() -> None:
    values = ["a", "b", "a", "c", None, "a", "b", "d", None]
    groups = slice_groups(values, top_n=2)
    assert [(name, rows.tolist()) for name, rows in groups] == [
        ("a", [0, 2, 5]),
        ("__null__", [4, 8]),  # ties (2 rows each with "b") go by the value's text: "__null__" < "b"
        (OTHER, [1, 3, 6, 7]),
    ]
    assert [name for name, _ in slice_groups([3, 3, 1], top_n=5)] == ["3", "1"]


def test_slice_metrics_match_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1)
    region = rng.choice(["north", "south", "east"], 300, p=[0.5, 0.3, 0.2])
    out = slice_report("binary", y, p, {"region": list(region)}, classes=[0, 1], threshold=0.5, top_n=2)
    assert out[0]["column"] == "region"
    names = [v["value"] for v in out[0]["values"]]
    assert names == ["north", "south", OTHER]
    for entry in out[0]["values"]:
        mask = region == entry["value"] if entry["value"] != OTHER else region == "east"
        assert entry["rows"] == int(mask.sum())
        assert entry["metrics"]["auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
        assert entry["metrics"]["accuracy"] == pytest.approx(accuracy_score(y[mask], p[mask] >= 0.5))
        assert entry["metrics"]["log_loss"] == pytest.approx(log_loss(y[mask], p[mask], labels=[0, 1]))

    actual = rng.normal(size=50)
    predicted = actual + rng.normal(scale=0.1, size=50)
    segment = [i % 2 for i in range(50)]
    out = slice_report("regression", actual, predicted, {"segment": segment}, classes=None, threshold=0.5, top_n=5)
    for entry in out[0]["values"]:
        mask = np.array(segment) == int(entry["value"])
        rmse = float(np.sqrt(np.mean((actual[mask] - predicted[mask]) ** 2)))
        assert entry["metrics"]["rmse"] == pytest.approx(rmse)
        assert entry["metrics"]["mae"] == pytest.approx(float(np.mean(np.abs(actual[mask] - predicted[mask]))))
