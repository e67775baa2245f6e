"""The local XGBoost trainer: `xgboost.train` with per-iteration metrics, early stopping and a fixed seed.

XGBoost's `hist` method is deterministic for a given seed and data, so the same spec on the same data gives the same
booster. With early stopping the returned booster keeps only the rounds up to the best one, so the saved model, its
ONNX export and the evaluation all describe the same trees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bottega.core.extras import require
from bottega.training.data import TrainingData
from bottega.training.spec import TrainingSpec

IterationCallback = Callable[[int, dict[str, float]], bool | None]
"""Called after each boosting round with (round index, {"train.logloss": ..., "eval.auc": ...}); returning True
stops training after this round (tuning prunes trials this way)."""

OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}
# XGBoost stops early on the LAST metric of the list.
EVAL_METRICS = {"binary": ["logloss", "auc"], "multiclass": ["merror", "mlogloss"], "regression": ["mae", "rmse"]}


@dataclass
class TrainedModel:
    booster: Any
    params: dict[str, Any]
    rounds_run: int
    best_iteration: int
    history: dict[str, list[float]] = field(default_factory=dict)
    """`eval.auc` -> one value per round run."""


def booster_params(spec: TrainingSpec, data: TrainingData) -> dict[str, Any]:
    """The parameters handed to `xgboost.train`: defaults for the task, then the spec's params, then the seed."""
    task = spec.model.task
    params: dict[str, Any] = {
        "objective": OBJECTIVES[task],
        "eval_metric": list(EVAL_METRICS[task]),
        "tree_method": "hist",
    }
    params.update(spec.xgboost_model.params)
    params["seed"] = spec.seed
    if task == "multiclass":
        assert data.classes is not None
        params["num_class"] = len(data.classes)
    return params


def _dmatrix(xgb: Any, features: Any, label: Any, names: list[str]) -> Any:
    return xgb.DMatrix(features, label=label, feature_names=names, missing=float("nan"))


def train_xgboost(
    spec: TrainingSpec, data: TrainingData, on_iteration: IterationCallback | None = None
) -> TrainedModel:
    """Train on `data.train`, evaluate every round on train and eval, stop early on the last eval metric."""
    require("xgboost", "xgboost")
    import xgboost as xgb

    params = booster_params(spec, data)
    dtrain = _dmatrix(xgb, data.train.features, data.train.label, data.feature_names)
    deval = _dmatrix(xgb, data.eval.features, data.eval.label, data.feature_names)
    history: dict[str, list[float]] = {}

    class Recorder(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, Any]]) -> bool:
            latest: dict[str, float] = {}
            for data_name, metrics in evals_log.items():
                for metric, values in metrics.items():
                    value = values[-1]
                    latest[f"{data_name}.{metric}"] = float(value[0] if isinstance(value, tuple) else value)
            for key, value in latest.items():
                history.setdefault(key, []).append(value)
            return bool(on_iteration(epoch, latest)) if on_iteration is not None else False

    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=spec.xgboost_model.num_boost_round,
        evals=[(dtrain, "train"), (deval, "eval")],
        early_stopping_rounds=spec.xgboost_model.early_stopping_rounds,
        callbacks=[Recorder()],
        verbose_eval=False,
    )
    rounds_run = booster.num_boosted_rounds()
    best = rounds_run - 1
    if spec.xgboost_model.early_stopping_rounds is not None:
        try:
            best = int(booster.best_iteration)
        except AttributeError:  # stopped (a pruned trial) before early stopping recorded a best round
            best = rounds_run - 1
        if best + 1 < rounds_run:
            booster = booster[: best + 1]
    return TrainedModel(booster=booster, params=params, rounds_run=rounds_run, best_iteration=best, history=history)


def predict(booster: Any, features: Any) -> Any:
    """Probabilities of the positive class (binary), of each class (multiclass) or values (regression)."""
    import numpy as np

    return np.asarray(booster.inplace_predict(features, missing=float("nan")), dtype=np.float64)
