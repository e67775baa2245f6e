"""Train from a spec and record everything through the API: run, params, metrics per round, artifacts, version.

    from bottega.sdk import Client
    from bottega.training.runner import train

    result = train(Client(), "spec.yaml")
    print(result.version, result.candidate, result.metrics)

Order: the spec is validated and the training data is built first (an invalid spec or a missing column fails
before anything is recorded), then the model is created in the model DB if missing, a run is started, the booster is
trained (metrics of each round logged to the run), evaluated, exported to ONNX and validated, the artifacts
uploaded, the run finished, a version registered from the run's artifacts, and the `candidate` alias set when every
gate holds. A failure after the run started marks the run `failed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bottega.api.registry.schemas import EVALUATION_MAX_BYTES
from bottega.core.errors import NotFound
from bottega.core.extras import require
from bottega.training.spec import TrainingSpec, load_spec
from bottega.training.torch.spec import TorchModel

if TYPE_CHECKING:
    from bottega.sdk import Client
    from bottega.training.data import TrainingData
    from bottega.training.torch.trainer import TorchTrained
    from bottega.training.xgb import TrainedModel

CANDIDATE = "candidate"
FLUSH_SECONDS = 1.0
FLUSH_POINTS = 2000


class Progress(Protocol):
    def stage(self, message: str) -> None: ...

    def iteration(self, step: int, total: int, metrics: Mapping[str, float], unit: str = "rounds") -> None:
        """`step` (0-based) of `total` `unit`s done (boosting rounds or epochs; trials while tuning)."""
        ...


class QuietProgress:
    def stage(self, message: str) -> None:
        pass

    def iteration(self, step: int, total: int, metrics: Mapping[str, float], unit: str = "rounds") -> None:
        pass


@dataclass
class GateResult:
    gate: str
    metric: str
    value: float | None
    passed: bool


@dataclass
class TrainResult:
    project: str
    model: str
    run_id: str
    version: int
    flavor: str
    metrics: dict[str, float]
    gates: list[GateResult]
    candidate: bool
    onnx: dict[str, Any]
    best_iteration: int
    rounds_run: int
    warnings: list[str] = field(default_factory=list)
    tuning: dict[str, Any] | None = None
    """the study summary (best trial, value and params, trials by state, each trial) when the spec tunes."""

    @property
    def failed_gates(self) -> list[str]:
        return [g.gate for g in self.gates if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_gates": self.failed_gates}


class MetricBuffer:
    """Per-round metrics sent to the run in batches (at most one request a second while training)."""

    def __init__(self, client: Client, project: str, run_id: str) -> None:
        self.client, self.project, self.run_id = client, project, run_id
        self.points: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        self.points.extend({"key": k, "value": v, "step": step} for k, v in metrics.items())
        if len(self.points) >= FLUSH_POINTS or time.monotonic() - self.last >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.points:
            self.client.runs.log_metrics(self.project, self.run_id, self.points)
            self.points = []
        self.last = time.monotonic()


def check_gates(spec: TrainingSpec, metrics: Mapping[str, float]) -> list[GateResult]:
    """Each gate against the evaluation metrics; a metric the data could not define (e.g. AUC of one class)
    fails its gate."""
    out = []
    for gate in spec.gates:
        value = metrics.get(gate.metric)
        out.append(GateResult(str(gate), gate.metric, value, value is not None and gate.holds(value)))
    return out


def run_params(spec: TrainingSpec, data: TrainingData) -> dict[str, str | int | float | bool]:
    """The run's params: the spec's training choices, flattened (`model.params.max_depth`, `split.kind`, ...)."""
    if isinstance(spec.model, TorchModel):
        from bottega.training.torch.trainer import run_params as torch_run_params

        return torch_run_params(spec, data)
    params: dict[str, str | int | float | bool] = {
        "trainer": spec.model.type,
        "model.task": spec.model.task,
        "model.num_boost_round": spec.model.num_boost_round,
        "model.early_stopping_rounds": str(spec.model.early_stopping_rounds),
        "seed": spec.seed,
        "compute.kind": spec.compute.kind,
        "compute.workers": spec.compute.workers,
        "dataset.label_column": spec.dataset.label_column,
        "dataset.inputs": len(data.feature_names),
        "dataset.train_rows": data.train.rows,
        "dataset.eval_rows": data.eval.rows,
    }
    for key, value in spec.split.model_dump(mode="json").items():
        params[f"split.{key}"] = value
    for key, value in spec.model.params.items():
        params[f"model.params.{key}"] = json.dumps(value) if isinstance(value, list) else value
    return params


def signature(spec: TrainingSpec, data: TrainingData) -> dict[str, Any]:
    task = spec.model.task
    if task == "binary":
        outputs: list[dict[str, Any]] = [{"name": "probability", "type": "float64"}]
    elif task == "multiclass":
        from bottega.training.data import class_labels

        classes = class_labels(data.classes) or []
        outputs = [{"name": "probabilities", "type": "float64", "shape": [len(classes)], "classes": classes}]
    else:
        outputs = [{"name": "prediction", "type": "float64"}]
    return {
        "inputs": [{"name": name, "type": kind} for name, kind in data.request_features],
        "store_features": list(spec.dataset.features),
        "outputs": outputs,
        **({"key_columns": dict(spec.dataset.key_columns)} if spec.dataset.key_columns else {}),
    }


def ensure_model(client: Client, spec: TrainingSpec) -> None:
    try:
        client.models.get(spec.project, spec.model_name)
    except NotFound:
        client.models.create(spec.project, spec.model_name, description=spec.description)


def train(
    client: Client, source: str | Path | Mapping[str, Any] | TrainingSpec, progress: Progress | None = None
) -> TrainResult:
    """Validate the spec, build the data, train (or tune), evaluate, record the run and register a version."""
    spec = load_spec(source)
    if isinstance(spec.model, TorchModel):
        from bottega.training.torch.trainer import prepare

        prepare(spec)  # the extras, and a user module's class: before any run exists
    else:
        require("xgboost", "xgboost")
        require("sklearn", "xgboost")
    if spec.tuning is not None:
        require("optuna", "tuning")
    from bottega.training.artifacts import load_slices
    from bottega.training.data import build_dataset

    shown = progress or QuietProgress()
    shown.stage("building the training set")
    data = build_dataset(client, spec)
    slices = load_slices(spec, data)
    ensure_model(client, spec)
    tags = {"trainer": spec.model.type, "model": spec.model_name, **spec.tags, **label_tags(spec, data)}
    if spec.tuning is not None:
        tags["tuning"] = "optuna"
    run = client.runs.create(spec.project, spec.run_name or spec.model_name, description=spec.description, tags=tags)
    try:
        if data.duplicates is not None:
            counts = {"labels.duplicate_rows": data.duplicates.duplicate_rows}
            counts["labels.conflicting_rows"] = data.duplicates.conflicting_rows
            client.runs.log_metrics(spec.project, run.id, counts)
        return _train_in_run(client, spec, data, run.id, shown, slices)
    except BaseException:
        with contextlib.suppress(Exception):
            client.runs.finish(spec.project, run.id, "failed")
        raise


def label_tags(spec: TrainingSpec, data: TrainingData) -> dict[str, str]:
    """The run's `labels.duplicates` tag: `none`, or the counts found and the policy that kept them."""
    found = data.duplicates
    if found is None:
        return {}
    if not found.found:
        return {"labels.duplicates": "none"}
    counts = f"{found.duplicate_rows} duplicate, {found.conflicting_rows} conflicting"
    return {"labels.duplicates": f"{counts} ({spec.dataset.on_duplicates})"}


def _fit(client: Client, spec: TrainingSpec, data: TrainingData, run_id: str, shown: Progress) -> TrainedModel:
    from bottega.training.xgb import train_xgboost

    buffer = MetricBuffer(client, spec.project, run_id)
    total = spec.xgboost_model.num_boost_round

    def on_iteration(step: int, metrics: dict[str, float]) -> None:
        buffer.add(step, metrics)
        shown.iteration(step, total, metrics)

    shown.stage(f"training xgboost ({data.train.rows} train rows, {data.eval.rows} eval rows)")
    if spec.compute.kind == "spark":
        from bottega.training.xgb_spark import train_xgboost_spark

        shown.stage(f"on Spark with {spec.compute.workers} workers (round metrics arrive when training ends)")
        trained = train_xgboost_spark(spec, data, on_iteration)
    else:
        trained = train_xgboost(spec, data, on_iteration)
    buffer.flush()
    return trained


def _train_in_run(
    client: Client,
    spec: TrainingSpec,
    data: TrainingData,
    run_id: str,
    shown: Progress,
    slices: dict[str, list[Any]],
) -> TrainResult:
    from concurrent.futures import ThreadPoolExecutor

    from bottega.training.artifacts import start_feature_report
    from bottega.training.torch.trainer import fit_torch

    params = run_params(spec, data)
    # The feature report needs only the data: it is computed beside training (NumPy releases the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-report") as pool:
        features = start_feature_report(pool, spec, data)
        if spec.tuning is not None:
            from bottega.training.tuning.study import parent_params, tune

            client.runs.log_params(spec.project, run_id, parent_params(spec, params))
            tuned = tune(client, spec, data, run_id, shown)
            return _register(client, tuned.spec, data, run_id, tuned.trained, shown, slices, tuned.summary, features)
        client.runs.log_params(spec.project, run_id, params)
        trained: TrainedModel | TorchTrained
        if isinstance(spec.model, TorchModel):
            trained = fit_torch(client, spec, data, run_id, shown)
        else:
            trained = _fit(client, spec, data, run_id, shown)
        return _register(client, spec, data, run_id, trained, shown, slices, None, features)


def _register(
    client: Client,
    spec: TrainingSpec,
    data: TrainingData,
    run_id: str,
    trained: TrainedModel | TorchTrained,
    shown: Progress,
    slices: dict[str, list[Any]],
    tuning: dict[str, Any] | None,
    features: Future[dict[str, Any]] | None = None,
) -> TrainResult:
    """Evaluate and export the trained model, upload the artifacts, finish the run, register the version and set
    the `candidate` alias when every gate holds."""
    from bottega.training.artifacts import build_artifacts, write_json
    from bottega.training.torch.artifacts import build_torch_artifacts
    from bottega.training.torch.trainer import TorchTrained

    shown.stage("evaluating and exporting")
    with tempfile.TemporaryDirectory(prefix="bottega-train-") as tmp:
        if isinstance(trained, TorchTrained):
            built = build_torch_artifacts(spec, data, trained, Path(tmp), slices, features)
        else:
            built = build_artifacts(spec, data, trained, Path(tmp), slices, features)
        if tuning is not None:
            built.evaluation["tuning"] = {k: v for k, v in tuning.items() if k != "trial_list"}
            write_json(Path(tmp) / "tuning.json", tuning)
        metrics = built.metrics
        client.runs.log_metrics(spec.project, run_id, metrics, step=trained.best_iteration)
        gates = check_gates(spec, metrics)
        passed = all(g.passed for g in gates)
        built.evaluation["gates"] = [asdict(g) for g in gates]
        built.write_evaluation()
        shown.stage("uploading artifacts")
        for path in sorted(built.files):
            client.runs.upload_artifact(spec.project, run_id, path)
    client.runs.set_tags(spec.project, run_id, {"gates": "passed" if passed else "failed"})
    client.runs.finish(spec.project, run_id)
    version = client.models.register_version(
        spec.project,
        spec.model_name,
        built.flavor,
        run_id=run_id,
        from_run_artifacts=True,
        signature=signature(spec, data),
        metrics=metrics,
        evaluation=_fit_evaluation(built.evaluation, built.warnings),
        lineage=lineage(spec, data, built.flavors),
        description=spec.description,
    )
    if passed:
        client.models.set_alias(spec.project, spec.model_name, CANDIDATE, version.version)
    client.runs.set_tags(spec.project, run_id, {"model_version": f"{spec.model_name}:{version.version}"})
    return TrainResult(
        project=spec.project,
        model=spec.model_name,
        run_id=run_id,
        version=version.version,
        flavor=built.flavor,
        metrics=metrics,
        gates=gates,
        candidate=passed,
        onnx=built.onnx,
        best_iteration=trained.best_iteration,
        rounds_run=trained.rounds_run,
        warnings=built.warnings,
        tuning=tuning,
    )


def _fit_evaluation(evaluation: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The evaluation stored with the version, without the feature report when it would not fit the limit (it
    stays whole in the `feature_report.json` artifact)."""
    size = len(json.dumps(evaluation, separators=(",", ":")).encode())
    if size <= EVALUATION_MAX_BYTES:
        return evaluation
    trimmed = {k: v for k, v in evaluation.items() if k != "feature_report"}
    warnings.append("the feature report is too large to store with the version: see feature_report.json")
    trimmed["warnings"] = list(warnings)
    return trimmed


def lineage(spec: TrainingSpec, data: TrainingData, flavors: dict[str, str]) -> dict[str, Any]:
    document = json.dumps(spec.to_document(), sort_keys=True).encode()
    return {
        "dataset": {
            "labels": str(spec.labels_path()),
            "entity_keys": list(spec.dataset.entity_keys),
            **({"key_columns": dict(spec.dataset.key_columns)} if spec.dataset.key_columns else {}),
            "timestamp_column": spec.dataset.timestamp_column,
            "label_column": spec.dataset.label_column,
            "split": spec.split.model_dump(mode="json"),
            **data.summary(),
        },
        "feature_refs": list(spec.dataset.features),
        "request_features": list(spec.dataset.request_features),
        "trainer": spec.model.type,
        "seed": spec.seed,
        "spec_sha256": hashlib.sha256(document).hexdigest(),
        "flavors": flavors,
    }
