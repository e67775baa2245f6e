"""A trial stopped by its pruner at the very first boosting round (before early stopping records a best round)
gives a one-round model instead of crashing on `booster.best_iteration`."""

from __future__ import annotations

import numpy as np

from bottega.training.data import Part, TrainingData
from bottega.training.spec import parse_spec
from bottega.training.xgb import train_xgboost


def test_stopped_at_round_zero_with_early_stopping() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(np.float64)
    names = ["a", "b", "c"]
    data = TrainingData(names, [(n, "float64") for n in names], {}, [0, 1], Part(x[:150], y[:150]),
                        Part(x[150:], y[150:]), 0)  # fmt: skip
    spec = parse_spec(
        {
            "project": "p",
            "model_name": "m",
            "dataset": {"labels": "l.parquet", "entity_keys": ["id"], "label_column": "y", "request_features": names},
            "split": {"kind": "random"},
            "model": {
                "type": "xgboost",
                "task": "binary",
                "params": {"nthread": 1},
                "num_boost_round": 20,
                "early_stopping_rounds": 5,
            },
        }
    )
    steps: list[int] = []

    def prune_now(step: int, _metrics: object) -> bool:
        steps.append(step)
        return True

    trained = train_xgboost(spec, data, prune_now)
    assert steps == [0]
    assert trained.rounds_run == 1
    assert trained.best_iteration == 0
