"""The `tuning:` section of a training spec (pydantic and the standard library only: importing it stays light).

    tuning:
      space:                                   # paths into the `model:` section
        model.params.eta: {type: float, low: 0.01, high: 0.3, log: true}
        model.params.max_depth: {type: int, low: 2, high: 8}
        model.params.grow_policy: {type: categorical, choices: [depthwise, lossguide]}
      n_trials: 30
      timeout_s: 600                           # wall budget of the whole study
      sampler: tpe                             # tpe | random
      pruner: hyperband                        # hyperband | successive_halving | none (or {kind: ..., min_resource: 1})
      metric: auc                              # default: the task's main metric (auc, log_loss, rmse)
      direction: maximize                      # default: from the metric
      n_jobs: 1                                # parallel trials (threads)
      seed: 7                                  # default: the spec's seed

Each trial's model section is the spec's with the sampled values set at their paths, validated like any spec; the
space is checked before any work starts by validating the model section at each bound and each choice.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bottega.core.names import MODEL_PATH_PATTERN

PATH_PATTERN = MODEL_PATH_PATTERN
FIXED_PATHS = ("model.type", "model.task")
DEFAULT_METRIC = {"binary": "auc", "multiclass": "log_loss", "regression": "rmse"}
MINIMIZED = frozenset({"log_loss", "rmse", "mae", "mape"})
CURVES: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("xgboost", "binary", "auc"): ("eval.auc", False),
    ("xgboost", "binary", "log_loss"): ("eval.logloss", False),
    ("xgboost", "multiclass", "log_loss"): ("eval.mlogloss", False),
    ("xgboost", "multiclass", "accuracy"): ("eval.merror", True),
    ("xgboost", "regression", "rmse"): ("eval.rmse", False),
    ("xgboost", "regression", "mae"): ("eval.mae", False),
    ("pytorch", "binary", "auc"): ("eval.auc", False),
    ("pytorch", "binary", "log_loss"): ("eval.loss", False),
    ("pytorch", "multiclass", "accuracy"): ("eval.accuracy", False),
    ("pytorch", "multiclass", "log_loss"): ("eval.loss", False),
    ("pytorch", "regression", "rmse"): ("eval.rmse", False),
}
"""(model type, task, metric) -> (the per-round / per-epoch metric that follows it, whether it is 1 - metric)."""

Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Strict):
    """A float in [low, high], on a log scale with `log`, or on a grid of `step`."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must be a number at most high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self

    def values(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Strict):
    """An integer in [low, high] (both included), on a log scale with `log`, or every `step`."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be at most high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low >= 1, got {self.low}")
        if self.log and self.step != 1:
            raise ValueError("give either log or step, not both")
        return self

    def values(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Strict):
    """One of `choices` (any JSON values: numbers, strings, lists such as layer widths)."""

    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1, max_length=1000)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, value: list[Any]) -> list[Any]:
        texts = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(texts)) != len(texts):
            raise ValueError("choices are listed twice")
        return value

    def values(self) -> list[Any]:
        return list(self.choices)

    @property
    def scalar(self) -> bool:
        """Whether Optuna can take the choices as they are (else they go through their JSON text)."""
        return all(isinstance(v, Scalar) for v in self.choices)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class PrunerSpec(_Strict):
    """How unpromising trials stop early, on the per-round (XGBoost) or per-epoch (PyTorch) values of the metric."""

    kind: Literal["hyperband", "successive_halving", "none"] = "hyperband"
    min_resource: int = Field(default=1, ge=1, description="rounds or epochs before a trial can be pruned")
    reduction_factor: int = Field(default=3, ge=2, le=100)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data


class TuningSpec(_Strict):
    space: dict[Annotated[str, Field(pattern=PATH_PATTERN)], Param] = Field(min_length=1, max_length=100)
    n_trials: int = Field(default=20, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0.0, description="wall-clock budget of the study")
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    n_jobs: int = Field(default=1, ge=1, le=64, description="trials run at the same time (threads)")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("space", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for path in value:
                if not isinstance(path, str) or not path.startswith("model."):
                    raise ValueError(f"{path!r} is not a path into the model section: write e.g. model.params.eta")
                if path in FIXED_PATHS:
                    raise ValueError(f"{path} cannot be tuned")
        return value

    def metric_for(self, task: str) -> str:
        return self.metric or DEFAULT_METRIC[task]

    def direction_for(self, task: str) -> Literal["maximize", "minimize"]:
        if self.direction is not None:
            return self.direction
        return "minimize" if self.metric_for(task) in MINIMIZED else "maximize"


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at a dotted path (`model.params.eta` -> document["params"]["eta"]) of the model section."""
    keys = path.split(".")[1:]
    node = document
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def with_values(model_document: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the model section with each path set to its value."""
    out = copy.deepcopy(model_document)
    for path, value in values.items():
        set_path(out, path, value)
    return out


def curve(model_type: str, task: str, metric: str) -> tuple[str, bool] | None:
    return CURVES.get((model_type, task, metric))


def check_tuning(
    tuning: TuningSpec, model_type: str, task: str, compute_kind: str, known_metrics: tuple[str, ...]
) -> None:
    """Raise ValueError naming the field when the tuning section does not fit the model, task or compute."""
    if compute_kind != "local":
        raise ValueError(f"tuning: trials train with compute 'local'; compute {compute_kind!r} cannot be tuned")
    metric = tuning.metric_for(task)
    if metric not in known_metrics:
        raise ValueError(
            f"tuning.metric: unknown metric {metric!r} for task {task!r}; use one of {', '.join(known_metrics)}"
        )
    if tuning.pruner.kind != "none" and curve(model_type, task, metric) is None:
        usable = [m for (t, k, m) in CURVES if t == model_type and k == task]
        raise ValueError(
            f"tuning.pruner: metric {metric!r} has no per-round value for {model_type} {task} models to prune on; "
            f"set `pruner: none` or tune {' or '.join(usable)}"
        )
