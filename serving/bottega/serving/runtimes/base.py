"""The runtime contract of the prediction service and its typed errors.

A `Runtime` turns a float64 matrix (rows x `n_inputs`, inputs in signature order: request features, then store
features) into predictions shaped by the task:

| task | result |
|---|---|
| binary | (n,) float64, probability of class 1 |
| multiclass | (n, k) float64, class probabilities |
| regression | (n,) float64 values |
| custom Python model | (n,) object array of JSON-able values |

`predict` is thread-safe and never blocks forever. Errors:
- `ModelLoadError`: a version cannot be loaded (missing, corrupt or unreadable artifact; an unsupported flavor);
- `ModelUnavailable`: the model cannot answer now (its worker crashed or timed out); the service answers 503 for that
  model only, and the runtime recovers on its own;
- `PredictionFailed`: the model itself raised on these rows (a bug in a custom model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from bottega.core.errors import BottegaError, Unavailable

if TYPE_CHECKING:
    import numpy as np

TASKS = ("binary", "multiclass", "regression")


class ModelLoadError(BottegaError):
    """A model version could not be loaded; the detail names the file and the problem."""

    status = 500
    slug = "model-load"
    title = "Model could not be loaded"


class ModelUnavailable(Unavailable):
    """The model cannot answer now (e.g. its worker process died); other models are unaffected."""

    slug = "model-unavailable"
    title = "Model unavailable"


class PredictionFailed(BottegaError):
    """The model raised while predicting these rows."""

    status = 500
    slug = "model-error"
    title = "Model failed to predict"


def task_of(evaluation: Mapping[str, Any], signature: Mapping[str, Any]) -> str | None:
    """The version's task: the trainer's record (`evaluation.task`), else what the signature's outputs say
    (`probability` -> binary, `probabilities` -> multiclass, `prediction` -> regression), else None."""
    task = evaluation.get("task")
    if task in TASKS:
        return str(task)
    names = [str(o.get("name")) for o in signature.get("outputs") or [] if isinstance(o, Mapping)]
    by_output = {"probability": "binary", "probabilities": "multiclass", "prediction": "regression"}
    return by_output.get(names[0]) if len(names) == 1 else None


def signature_width(signature: Mapping[str, Any]) -> int | None:
    """How many inputs the signature gives the model (request features + store features); None when it is empty."""
    width = len(signature.get("inputs") or []) + len(signature.get("store_features") or [])
    return width or None


class Runtime(ABC):
    """One loaded model version."""

    flavor: ClassVar[str]
    n_inputs: int

    @abstractmethod
    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Predictions for the rows of `matrix` (float64, rows x n_inputs), shaped as the module docstring says."""

    @abstractmethod
    def close(self) -> None:
        """Release what the runtime holds (sessions, worker processes); predict must not be called afterwards."""

    def check_width(self, matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != self.n_inputs:
            raise ValueError(
                f"{self.flavor} model takes rows of {self.n_inputs} inputs, got an array of shape {matrix.shape}"
            )


def signature_classes(signature: Mapping[str, Any]) -> tuple[Any, ...]:
    """The class labels of the signature's single output (a multiclass model trained by Bottega names them)."""
    outputs = [o for o in signature.get("outputs") or [] if isinstance(o, Mapping)]
    classes = outputs[0].get("classes") if len(outputs) == 1 else None
    return tuple(classes) if isinstance(classes, list) else ()
