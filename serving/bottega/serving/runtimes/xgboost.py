"""Native XGBoost: the fallback when a version has no validated ONNX export (`model.ubj` only).

The booster runs with `nthread=1` and `inplace_predict` (thread-safe; a default-threaded booster has a p99 of tens of
milliseconds under CPU contention). Outputs are shaped like the ONNX runtime's: binary -> P(class 1) (n,), multiclass
-> (n, K), regression -> (n,). Objectives whose value is not a probability (`binary:logitraw`, `multi:softmax`) are
turned into one from the margin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bottega.serving.runtimes.base import ModelLoadError, Runtime, signature_width

if TYPE_CHECKING:
    import numpy as np

MARGIN_OBJECTIVES = ("binary:logitraw", "multi:softmax")


def objective_task(objective: str) -> str:
    if objective.startswith("binary:"):
        return "binary"
    if objective.startswith("multi:"):
        return "multiclass"
    return "regression"


def open_booster(path: Path) -> Any:
    try:
        import xgboost as xgb
    except ImportError as exc:
        raise ModelLoadError("xgboost is not installed: install bottega[xgboost]") from exc
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: the file is missing ({path})")
    try:
        booster = xgb.Booster(model_file=str(path))
    except Exception as exc:  # XGBoostError for anything that is not a saved booster
        raise ModelLoadError(f"{path.name}: not a model XGBoost can load: {exc}") from exc
    booster.set_param({"nthread": 1})
    return booster


class XGBoostRuntime(Runtime):
    """A booster loaded from `model.ubj` (or any format XGBoost reads)."""

    flavor: ClassVar[str] = "xgboost"

    def __init__(self, path: Path, *, task: str | None = None, signature: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self.booster = open_booster(path)
        objective = str(json.loads(self.booster.save_config())["learner"]["objective"]["name"])
        self.objective = objective
        self.task = objective_task(objective)
        if task is not None and task != self.task:
            raise ModelLoadError(
                f"{path.name}: the version's task is {task} but the booster's objective is {objective}"
            )
        self.n_inputs = int(self.booster.num_features())
        expected = signature_width(signature or {})
        if expected is not None and expected != self.n_inputs:
            raise ModelLoadError(
                f"{path.name}: the booster takes {self.n_inputs} inputs but the signature lists {expected} "
                "(request features + store features)"
            )
        # the feature names of training are not needed: inputs arrive as a matrix in signature order
        self.booster.feature_names = None
        self.booster.feature_types = None
        self._margin = objective in MARGIN_OBJECTIVES

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np

        self.check_width(matrix)
        if not self._margin:
            return np.asarray(self.booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)
        margin = np.asarray(self.booster.inplace_predict(matrix, missing=np.nan, predict_type="margin"), np.float64)
        if self.task == "binary":
            return np.asarray(1.0 / (1.0 + np.exp(-margin)), dtype=np.float64)
        shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)

    def close(self) -> None:
        self.booster = None
