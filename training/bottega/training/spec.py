"""The training spec: what to train, on which data, how to split it and which gates the result must pass.

A spec is a YAML file or a `TrainingSpec` built in Python; both go through the same pydantic validation, so an
invalid spec fails before any data is read or any run is created, with the field to fix named (`split.cut`,
`gates[1]`, ...). Pydantic and the standard library only: importing this module stays light.

    project: eats
    model_name: eta_classifier
    seed: 7
    dataset:
      labels: data/labels.parquet          # relative paths are read from the spec file's folder
      entity_keys: [restaurant_id]
      # key_columns: {restaurant_id: restaurantId}   # when the label table names a join key otherwise
      timestamp_column: timestamp
      label_column: late
      features: [eats:daily_prep:avg_prep, eats:daily_prep:n_orders]
      request_features: [distance_km]
    split: {kind: time, cut: "2026-11-20T00:00:00Z"}
    model:
      type: xgboost
      task: binary
      params: {max_depth: 4, eta: 0.1}
      num_boost_round: 200
      early_stopping_rounds: 20
    compute: local
    gates: ["auc >= 0.80", "log_loss <= 0.5"]
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bottega.api.registry.schemas import FEATURE_REF_PATTERN
from bottega.core.errors import InvalidInput
from bottega.core.keys import check_key_columns
from bottega.core.names import COLUMN_PATTERN, MODEL_NAME_PATTERN, PROJECT_PATTERN
from bottega.training.torch.spec import TORCH_COMPUTES, TorchModel, check_compute
from bottega.training.tuning.spec import TuningSpec, check_tuning, with_values

Task = Literal["binary", "multiclass", "regression"]
DISTRIBUTED = ("spark", *TORCH_COMPUTES)
"""The distributed computes: XGBoost on Spark, PyTorch with torchrun, TorchDistributor or Horovod."""

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1"),
    "multiclass": ("auc", "log_loss", "accuracy", "macro_precision", "macro_recall", "macro_f1"),
    "regression": ("rmse", "mae", "mape", "r2"),
}
"""The scalar evaluation metrics of each task: what gates may name and what a version records."""

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OBJECTIVE_PREFIX = {"binary": ("binary:",), "multiclass": ("multi:",), "regression": ("reg:",)}
_RESERVED_PARAMS = {
    "seed": "set `seed` at the top of the spec",
    "random_state": "set `seed` at the top of the spec",
    "num_class": "it is taken from the label values",
    "num_boost_round": "set `model.num_boost_round`",
    "n_estimators": "set `model.num_boost_round`",
    "early_stopping_rounds": "set `model.early_stopping_rounds`",
}

ColumnName = Annotated[str, Field(pattern=COLUMN_PATTERN)]
FeatureRefText = Annotated[str, Field(pattern=FEATURE_REF_PATTERN, description="`project:group:feature`")]
ParamScalar = str | int | float | bool


class SpecError(InvalidInput):
    """An invalid training spec; the message names each field to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """The label table and the inputs: features from the store (joined point in time) and request features (columns
    of the label table sent by callers at prediction time)."""

    labels: str = Field(min_length=1, description="Parquet or CSV path of the label table")
    entity_keys: list[ColumnName] = Field(min_length=1)
    key_columns: dict[str, ColumnName] = Field(
        default_factory=dict,
        description="join key -> the label table's column holding it, when named otherwise (e.g. user_id: userId); "
        "requests and batch-scoring inputs of the model use the same column names",
        exclude_if=lambda value: not value,
    )
    timestamp_column: ColumnName = "timestamp"
    label_column: ColumnName
    features: list[FeatureRefText] = Field(default_factory=list, description="store features to join")
    request_features: list[ColumnName] = Field(default_factory=list, description="label-table columns used as inputs")
    offline_root: str | None = Field(default=None, description="offline store root; default from BOTTEGA_OFFLINE_URL")
    on_duplicates: Literal["error", "warn", "keep"] = Field(
        default="warn",
        description="label rows repeated exactly or conflicting (same keys and timestamp): warn (keep and report), "
        "keep (report only) or error (refuse)",
    )

    @field_validator("features", "request_features", "entity_keys")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for item in value:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return value

    @model_validator(mode="after")
    def _inputs(self) -> DatasetSpec:
        if not self.features and not self.request_features:
            raise ValueError("give at least one input: `features` (store references) or `request_features`")
        special = {self.label_column: "the label column", self.timestamp_column: "the timestamp column"}
        for name in self.request_features:
            if name in special:
                raise ValueError(f"request_features: {name!r} is {special[name]}; it cannot be an input")
        if self.label_column == self.timestamp_column or self.label_column in self.entity_keys:
            raise ValueError(f"label_column {self.label_column!r} is also the timestamp column or an entity key")
        check_key_columns(self.key_columns, self.key_columns, "key_columns")
        outside = [c for c in self.key_columns.values() if c not in self.entity_keys]
        if outside:
            raise ValueError(f"key_columns: {outside[0]!r} must also be listed in entity_keys (the label columns)")
        return self


class TimeSplit(_Strict):
    """Rows with timestamp < cut train the model; rows at or after the cut evaluate it."""

    kind: Literal["time"]
    cut: datetime = Field(
        description="ISO-8601 datetime, e.g. 2026-11-20T00:00:00Z (without an offset: UTC, with a warning)"
    )

    @field_validator("cut")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        from bottega.core.timestamps import as_utc

        return as_utc(value, "split.cut")


class RandomSplit(_Strict):
    """A seeded random holdout of `eval_fraction` of the rows."""

    kind: Literal["random"]
    eval_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


Split = Annotated[TimeSplit | RandomSplit, Field(discriminator="kind")]


class XGBoostModel(_Strict):
    """An XGBoost booster; the objective follows `task` unless `params.objective` picks another of the same kind."""

    type: Literal["xgboost"]
    task: Task
    params: dict[str, ParamScalar | list[ParamScalar]] = Field(default_factory=dict)
    num_boost_round: int = Field(default=100, ge=1, le=100_000)
    early_stopping_rounds: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in _RESERVED_PARAMS:
                raise ValueError(f"params.{key} is not allowed here: {_RESERVED_PARAMS[key]}")
        return value

    @model_validator(mode="after")
    def _objective(self) -> XGBoostModel:
        objective = self.params.get("objective")
        if objective is not None and not str(objective).startswith(_OBJECTIVE_PREFIX[self.task]):
            allowed = " or ".join(f"{p}..." for p in _OBJECTIVE_PREFIX[self.task])
            raise ValueError(f"params.objective {objective!r} does not fit task {self.task!r}: use {allowed}")
        return self


class ComputeSpec(_Strict):
    """Where training runs: `local` (this process), `spark` (XGBoost, `workers`), or for PyTorch `torchrun`,
    `torch_distributor` or `horovod` (`processes`)."""

    kind: str = "local"
    workers: int = Field(default=1, ge=1, le=1024)
    processes: int = Field(default=1, ge=1, le=256, description="processes of torchrun, torch_distributor or horovod")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value == "local" or value in DISTRIBUTED:
            return value  # which model type each fits: check_compute and TrainingSpec._spark_fits_model
        raise ValueError(f"unknown compute {value!r}: use one of local, {', '.join(DISTRIBUTED)}")


class EvaluationSpec(_Strict):
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="decision threshold of binary classifiers")
    permutation_repeats: int = Field(default=3, ge=0, le=50, description="0 skips permutation importance")
    histogram_bins: int = Field(default=20, ge=2, le=200)
    slices: list[ColumnName] = Field(
        default_factory=list, max_length=20, description="categorical label-table columns to report metrics by"
    )
    slice_top_n: int = Field(default=10, ge=1, le=1000, description="values per slice column; the rest: __other__")

    @field_validator("slices")
    @classmethod
    def _unique_slices(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value


class Gate(_Strict):
    """A condition on an evaluation metric, e.g. `auc >= 0.80`."""

    metric: str
    op: Literal[">=", ">", "<=", "<", "=="]
    threshold: float

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _GATE.match(data)
        if match is None:
            raise ValueError(f"{data!r} is not a gate: write `<metric> <op> <number>` with op one of >= > <= < ==")
        metric, op, number = match.groups()
        return {"metric": metric, "op": op, "threshold": float(number)}

    @classmethod
    def parse(cls, text: str) -> Gate:
        return cls.model_validate(text)

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


class TrainingSpec(_Strict):
    project: str = Field(pattern=PROJECT_PATTERN)
    model_name: str = Field(pattern=MODEL_NAME_PATTERN, description="the model in the model DB (created if missing)")
    run_name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=10_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    tags: dict[str, str] = Field(default_factory=dict)
    dataset: DatasetSpec
    split: Split
    model: Annotated[XGBoostModel | TorchModel, Field(discriminator="type")]
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    gates: list[Gate] = Field(default_factory=list)
    tuning: TuningSpec | None = None
    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compute_fits_model(self) -> TrainingSpec:
        compute = self.compute
        check_compute(self.model.type, compute.kind, compute.processes, compute.workers)
        return self

    @model_validator(mode="after")
    def _spark_fits_model(self) -> TrainingSpec:
        if self.compute.kind != "spark":
            return self
        model = self.model
        if not isinstance(model, XGBoostModel):
            raise ValueError(f"compute.kind: compute 'spark' trains model.type 'xgboost' only, not {model.type!r}")
        params = model.params
        if model.task != "regression" and "objective" in params:
            raise ValueError("model.params.objective: compute 'spark' sets a classifier's objective from the labels")
        if params.get("tree_method") == "exact":
            raise ValueError("model.params.tree_method: 'exact' does not train distributed; use 'hist' or 'approx'")
        return self

    @model_validator(mode="after")
    def _gate_metrics(self) -> TrainingSpec:
        known = TASK_METRICS[self.model.task]
        for i, gate in enumerate(self.gates):
            if gate.metric not in known:
                raise ValueError(
                    f"gates[{i}]: unknown metric {gate.metric!r} for task {self.model.task!r}; "
                    f"use one of {', '.join(known)}"
                )
        return self

    @model_validator(mode="after")
    def _tuning_fits(self) -> TrainingSpec:
        if self.tuning is None:
            return self
        model = self.model
        check_tuning(self.tuning, model.type, model.task, self.compute.kind, TASK_METRICS[model.task])
        document = model.model_dump(mode="json")
        for path, param in self.tuning.space.items():
            for value in param.values():
                try:
                    type(model).model_validate(with_values(document, {path: value}))
                except ValidationError as exc:
                    raise ValueError(
                        f"tuning.space.{path}: the value {value!r} makes an invalid model: "
                        f"{format_errors(exc, prefix='model')}"
                    ) from None
        return self

    def with_model(self, model_document: dict[str, Any]) -> TrainingSpec:
        """This spec with another (validated) model section, reading data from the same folder."""
        data = {**self.model_dump(mode="json"), "model": model_document, "gates": [str(g) for g in self.gates]}
        other = TrainingSpec.model_validate(data)
        other._base_dir = self._base_dir
        return other

    @property
    def xgboost_model(self) -> XGBoostModel:
        """`model` of an XGBoost spec (typed for the XGBoost trainers)."""
        if not isinstance(self.model, XGBoostModel):
            raise SpecError(f"model.type: the XGBoost trainer cannot train a {self.model.type!r} model")
        return self.model

    @property
    def torch_model(self) -> TorchModel:
        """`model` of a PyTorch spec (typed for the PyTorch trainers)."""
        if not isinstance(self.model, TorchModel):
            raise SpecError(f"model.type: the PyTorch trainer cannot train a {self.model.type!r} model")
        return self.model

    @property
    def base_dir(self) -> Path | None:
        """The folder of the spec file (relative dataset paths are read from there); None for SDK objects."""
        return self._base_dir

    def labels_path(self) -> Path:
        path = Path(self.dataset.labels).expanduser()
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        return path

    def to_document(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (gates as their text), what `spec.yaml` records."""
        data = self.model_dump(mode="json")
        data["gates"] = [str(g) for g in self.gates]
        return data


def format_errors(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = prefix
        where = list(err["loc"])
        if where[:2] == ["tuning", "space"] and len(where) > 3 and where[3] in ("float", "int", "categorical"):
            del where[3]  # a space entry's type tag: `tuning.space.model.lr`, not `tuning.space.model.lr.float`
        for item in where:
            if loc == "model" and item in ("xgboost", "pytorch"):
                continue  # the union's tag: `model.task`, not `model.xgboost.task`
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


def parse_spec(data: Mapping[str, Any], *, source: str = "", base_dir: Path | None = None) -> TrainingSpec:
    """Validate a spec given as data; raises SpecError naming every field to fix."""
    where = f"invalid training spec {source}".rstrip()
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    try:
        spec = TrainingSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(f"{where}: {format_errors(exc)}") from exc
    spec._base_dir = base_dir
    return spec


def load_spec(source: str | Path | Mapping[str, Any] | TrainingSpec) -> TrainingSpec:
    """A validated spec from a YAML file, a mapping or a spec object (returned as it is)."""
    if isinstance(source, TrainingSpec):
        return source
    if isinstance(source, Mapping):
        return parse_spec(source)
    path = Path(source)
    if not path.is_file():
        raise SpecError(f"training spec {path} is not a file")
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SpecError('reading a YAML spec needs PyYAML: pip install "bottega[store]"') from exc
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"training spec {path} is not valid YAML: {exc}") from exc
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent)
