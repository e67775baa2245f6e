"""The tuning study: Optuna trials as child runs of the training run, pruned on per-round or per-epoch values.

`tune(client, spec, data, parent_run_id, progress)` samples `spec.tuning.space` with TPE or random search, trains
each trial in this process (`compute: local`) on the data the runner built once, and reports the metric's value
after every boosting round (XGBoost) or epoch (PyTorch) to the trial, so Hyperband or successive halving can stop
an unpromising trial early. Every trial is a child run of the parent run (tags `parent_run`, `trial`, `state`
pending -> complete | pruned | failed; its params and its metric curve). The best trial's model is kept in memory
(no retraining) and handed back with its spec, for the runner to evaluate, export and register as the version.

Budget: the study stops starting trials after `n_trials` or `timeout_s`; once the wall budget is spent, a running
trial stops at its next round and counts as pruned, unless no trial has completed yet (then it runs to its end so
there is a model to register). With `n_jobs: 1` the same seed gives the same trials.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bottega.core.errors import OperationFailed
from bottega.core.extras import require
from bottega.training.tuning.spec import CategoricalParam, FloatParam, IntParam, TuningSpec, curve, with_values

if TYPE_CHECKING:
    from bottega.sdk import Client
    from bottega.training.data import TrainingData
    from bottega.training.runner import Progress
    from bottega.training.spec import TrainingSpec

STUDY_NAME = "bottega-tuning"
"""Fixed, so that Hyperband puts the same trial numbers in the same brackets on every run (reproducibility)."""
ERROR_MAX = 2000
STATUS = {"complete": "finished", "pruned": "killed", "failed": "failed"}


class TuningFailed(OperationFailed):
    """No trial completed, so there is no model to register."""


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    run_id: str
    state: str = "running"
    value: float | None = None
    rounds_run: int = 0
    best_iteration: int | None = None
    pruned_at: int | None = None
    pruned_by: str | None = None
    duration_s: float = 0.0
    error: str | None = None


@dataclass
class TuningOutcome:
    spec: TrainingSpec
    """the best trial's spec (the base spec with the best values in its model section)."""
    trained: Any
    """the best trial's TrainedModel (XGBoost) or TorchTrained (PyTorch)."""
    summary: dict[str, Any]
    records: list[TrialRecord] = field(default_factory=list)


def tuning_of(spec: TrainingSpec) -> TuningSpec:
    if spec.tuning is None:
        raise ValueError("the spec has no tuning section")
    return spec.tuning


def parent_params(spec: TrainingSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The parent run's params: the runner's params without the tuned paths (logged with the best values at the
    end), and the tuning settings."""
    tuning = tuning_of(spec)
    task = spec.model.task
    out = {k: v for k, v in params.items() if k not in tuning.space}
    out.update(
        {
            "tuning.n_trials": tuning.n_trials,
            "tuning.timeout_s": str(tuning.timeout_s),
            "tuning.sampler": tuning.sampler,
            "tuning.pruner": tuning.pruner.kind,
            "tuning.metric": tuning.metric_for(task),
            "tuning.direction": tuning.direction_for(task),
            "tuning.n_jobs": tuning.n_jobs,
            "tuning.seed": _seed(spec),
        }
    )
    space = json.dumps({k: v.model_dump(mode="json") for k, v in tuning.space.items()})
    if len(space) <= 6000:
        out["tuning.space"] = space
    return out


def _seed(spec: TrainingSpec) -> int:
    tuning = tuning_of(spec)
    return spec.seed if tuning.seed is None else tuning.seed


def _param_value(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)


def suggest(trial: Any, path: str, param: FloatParam | IntParam | CategoricalParam) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(path, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return trial.suggest_int(path, param.low, param.high, log=param.log, step=param.step)
    if param.scalar:
        return trial.suggest_categorical(path, param.choices)
    texts = [json.dumps(v) for v in param.choices]
    return json.loads(trial.suggest_categorical(path, texts))


def max_resource(spec: TrainingSpec) -> int:
    """The most rounds (XGBoost) or epochs (PyTorch) a trial can run: Hyperband's maximum resource."""
    tuning = tuning_of(spec)
    key = "model.num_boost_round" if spec.model.type == "xgboost" else "model.epochs"
    base = spec.model.num_boost_round if spec.model.type == "xgboost" else spec.torch_model.epochs
    tuned = tuning.space.get(key)
    if isinstance(tuned, IntParam):
        return max(base, tuned.high)
    if isinstance(tuned, CategoricalParam):
        return max([base, *(int(v) for v in tuned.choices)])
    return int(base)


def make_sampler_and_pruner(spec: TrainingSpec) -> tuple[Any, Any]:
    import optuna

    tuning = tuning_of(spec)
    seed = _seed(spec)
    sampler = optuna.samplers.TPESampler(seed=seed) if tuning.sampler == "tpe" else optuna.samplers.RandomSampler(seed)
    pruner_spec = tuning.pruner
    pruner: Any
    if pruner_spec.kind == "hyperband":
        top = max(max_resource(spec), pruner_spec.min_resource)
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=pruner_spec.min_resource, max_resource=top, reduction_factor=pruner_spec.reduction_factor
        )
    elif pruner_spec.kind == "successive_halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner_spec.min_resource, reduction_factor=pruner_spec.reduction_factor
        )
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


def final_metrics(spec: TrainingSpec, data: TrainingData, trained: Any) -> dict[str, float]:
    """The evaluation metrics of a trial's model on the evaluation rows (the same numbers a version records)."""
    from bottega.training.evaluate import evaluate, scalar_metrics

    if spec.model.type == "xgboost":
        from bottega.training.xgb import predict

        predicted = predict(trained.booster, data.eval.features)
    else:
        from bottega.training.torch.nets import predict as predict_net

        predicted = predict_net(trained.net, data.eval.features)
    report = evaluate(
        spec.model.task,
        data.eval.label,
        predicted,
        classes=data.classes,
        threshold=spec.evaluation.threshold,
        bins=spec.evaluation.histogram_bins,
    )
    return scalar_metrics(report)


class Study:
    """The state the trials share (guarded by a lock: trials may run in parallel threads)."""

    def __init__(
        self, client: Client, spec: TrainingSpec, data: TrainingData, parent_run_id: str, shown: Progress
    ) -> None:
        self.client, self.spec, self.data, self.parent, self.shown = client, spec, data, parent_run_id, shown
        self.tuning = tuning_of(spec)
        task = spec.model.task
        self.metric = self.tuning.metric_for(task)
        self.direction: Literal["maximize", "minimize"] = self.tuning.direction_for(task)
        self.curve = curve(spec.model.type, task, self.metric)
        self.model_document = spec.model.model_dump(mode="json")
        self.lock = threading.Lock()
        self.records: dict[int, TrialRecord] = {}
        self.best: tuple[float, int, TrainingSpec, Any] | None = None
        self.done = 0
        self.started = time.monotonic()
        budget = self.tuning.timeout_s
        self.deadline = self.started + budget if budget is not None else math.inf

    def better(self, value: float, than: float) -> bool:
        return value > than if self.direction == "maximize" else value < than

    def over_budget(self) -> bool:
        """Past the wall budget with at least one trial completed (so a model exists to register)."""
        return time.monotonic() > self.deadline and self.best is not None

    def objective(self, trial: Any) -> float:
        import optuna

        values = {path: suggest(trial, path, param) for path, param in self.tuning.space.items()}
        name = f"{self.spec.run_name or self.spec.model_name}-trial-{trial.number}"
        tags = {
            "parent_run": self.parent,
            "trial": str(trial.number),
            "state": "running",
            "trainer": self.spec.model.type,
            "model": self.spec.model_name,
        }
        run = self.client.runs.create(self.spec.project, name, tags=tags, parent_run_id=self.parent)
        record = TrialRecord(number=trial.number, params=values, run_id=run.id)
        began = time.monotonic()
        with self.lock:
            self.records[trial.number] = record
        try:
            value = self.run_trial(trial, values, record)
        except optuna.TrialPruned:
            self.end(record, "pruned", began)
            raise
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
            self.end(record, "failed", began)
            raise
        record.value = value
        self.end(record, "complete", began)
        return value

    def run_trial(self, trial: Any, values: dict[str, Any], record: TrialRecord) -> float:
        import optuna

        from bottega.training.runner import MetricBuffer, run_params

        spec = self.spec.with_model(with_values(self.model_document, values))
        project = spec.project
        params = {**run_params(spec, self.data), "tuning.trial": trial.number}
        self.client.runs.log_params(project, record.run_id, {k: _param_value(v) for k, v in params.items()})
        buffer = MetricBuffer(self.client, project, record.run_id)

        def on_step(step: int, metrics: dict[str, float]) -> bool:
            buffer.add(step, {k: v for k, v in metrics.items() if math.isfinite(v)})
            value = self.intermediate(metrics)
            if value is not None:
                trial.report(value, step + 1)  # the resource: rounds or epochs done
                if trial.should_prune():
                    record.pruned_at, record.pruned_by = step, "pruner"
                    return True
            if self.over_budget():
                record.pruned_at, record.pruned_by = step, "time budget"
                return True
            return False

        trained = self.train(spec, on_step)
        buffer.flush()
        record.rounds_run, record.best_iteration = trained.rounds_run, trained.best_iteration
        if record.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {record.pruned_at} by the {record.pruned_by}")
        metrics = final_metrics(spec, self.data, trained)
        self.client.runs.log_metrics(project, record.run_id, metrics, step=trained.best_iteration)
        value = metrics.get(self.metric)
        if value is None:
            raise ValueError(f"tuning.metric: {self.metric!r} is undefined on the evaluation rows of this trial")
        with self.lock:
            if self.best is None or self.better(value, self.best[0]):
                self.best = (value, trial.number, spec, trained)
        return value

    def intermediate(self, metrics: dict[str, float]) -> float | None:
        if self.curve is None:
            return None
        key, complement = self.curve
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            return None
        return 1.0 - value if complement else value

    def train(self, spec: TrainingSpec, on_step: Any) -> Any:
        if spec.model.type == "xgboost":
            from bottega.training.xgb import train_xgboost

            return train_xgboost(spec, self.data, on_step)
        from bottega.training.torch.trainer import train_local

        return train_local(spec, self.data, on_step)

    def end(self, record: TrialRecord, state: str, began: float) -> None:
        """Tag and finish the trial's run, and show the trial's line."""
        record.state = state
        record.duration_s = round(time.monotonic() - began, 3)
        tags = {"state": state}
        if record.pruned_at is not None:
            tags["pruned_at"] = str(record.pruned_at)
            tags["pruned_by"] = str(record.pruned_by)
        if record.error:
            tags["error"] = record.error
        self.client.runs.set_tags(self.spec.project, record.run_id, tags)
        self.client.runs.finish(self.spec.project, record.run_id, STATUS[state])
        with self.lock:
            self.done += 1
            self.show(record)

    def show(self, record: TrialRecord) -> None:
        total = self.tuning.n_trials
        best = self.best[0] if self.best is not None else None
        value = f"{self.metric}={record.value:.4f}" if record.value is not None else ""
        if record.state == "pruned":
            value = f"at round {record.pruned_at} by the {record.pruned_by}"
        elif record.state == "failed":
            value = (record.error or "")[:200]
        shown = ", ".join(f"{k.removeprefix('model.')}={_short(v)}" for k, v in record.params.items())
        best_text = f" (best {best:.4f})" if best is not None else ""
        self.shown.stage(f"trial {record.number} ({self.done}/{total}) {record.state}: {value}{best_text}  {shown}")
        best_metrics = {f"eval.best_{self.metric}": best} if best is not None else {}
        self.shown.iteration(self.done - 1, total, best_metrics, unit="trials")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def tune(client: Client, spec: TrainingSpec, data: TrainingData, parent_run_id: str, shown: Progress) -> TuningOutcome:
    """Run the study; record the summary on the parent run; return the best trial's spec and model."""
    require("optuna", "tuning")
    import optuna

    tuning = tuning_of(spec)
    study_state = Study(client, spec, data, parent_run_id, shown)
    sampler, pruner = make_sampler_and_pruner(spec)
    shown.stage(
        f"tuning: up to {tuning.n_trials} trials"
        + (f" or {tuning.timeout_s:g} s" if tuning.timeout_s is not None else "")
        + f", {tuning.sampler} sampler, {tuning.pruner.kind} pruner, {study_state.direction} {study_state.metric}"
    )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME, direction=study_state.direction, sampler=sampler, pruner=pruner
        )
        study.optimize(
            study_state.objective,
            n_trials=tuning.n_trials,
            timeout=tuning.timeout_s,
            n_jobs=tuning.n_jobs,
            catch=(Exception,),
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    wall = time.monotonic() - study_state.started
    records = sorted(study_state.records.values(), key=lambda r: r.number)
    if study_state.best is None:
        states = _counts(records)
        errors = [r.error for r in records if r.error]
        detail = f"; first error: {errors[0]}" if errors else ""
        raise TuningFailed(f"tuning: no trial completed ({states['pruned']} pruned, {states['failed']} failed){detail}")
    value, number, best_spec, trained = study_state.best
    summary = summarize(study_state, records, wall)
    record_parent(client, spec, parent_run_id, summary, records, trained)
    shown.stage(f"best trial {number}: {study_state.metric}={value:.4f}")
    return TuningOutcome(spec=best_spec, trained=trained, summary=summary, records=records)


def _counts(records: list[TrialRecord]) -> dict[str, int]:
    out = {"complete": 0, "pruned": 0, "failed": 0}
    for record in records:
        if record.state in out:
            out[record.state] += 1
    return out


def summarize(study: Study, records: list[TrialRecord], wall: float) -> dict[str, Any]:
    """The study summary stored on the parent run (`tuning.json`) and in the version's evaluation."""
    assert study.best is not None
    value, number, _, _ = study.best
    tuning = study.tuning
    best = study.records[number]
    return {
        "metric": study.metric,
        "direction": study.direction,
        "sampler": tuning.sampler,
        "pruner": tuning.pruner.model_dump(mode="json"),
        "n_trials": tuning.n_trials,
        "timeout_s": tuning.timeout_s,
        "n_jobs": tuning.n_jobs,
        "seed": _seed(study.spec),
        "wall_s": round(wall, 3),
        "stopped_by": "n_trials" if len(records) >= tuning.n_trials else "timeout",
        "trials": _counts(records),
        "best": {"trial": number, "value": value, "params": best.params, "run_id": best.run_id},
        "trial_list": [asdict(r) for r in records],
    }


def record_parent(
    client: Client,
    spec: TrainingSpec,
    run_id: str,
    summary: dict[str, Any],
    records: list[TrialRecord],
    trained: Any,
) -> None:
    """The parent run gets the best values as params, the study's counts and best value as metrics, the value of
    each completed trial (and the best so far) at step = trial number, and the best trial's per-round curve."""
    project = spec.project
    best = summary["best"]
    params = {path: _param_value(v) for path, v in best["params"].items()}
    client.runs.log_params(project, run_id, {**params, "tuning.best_trial": best["trial"]})
    points: list[dict[str, Any]] = [
        {"key": "tuning.best_value", "value": best["value"], "step": 0},
        *({"key": f"tuning.trials_{k}", "value": float(n), "step": 0} for k, n in summary["trials"].items()),
    ]
    best_so_far: float | None = None
    for record in records:
        if record.state != "complete" or record.value is None:
            continue
        if best_so_far is None or (
            record.value > best_so_far if summary["direction"] == "maximize" else record.value < best_so_far
        ):
            best_so_far = record.value
        points.append({"key": "tuning.trial_value", "value": record.value, "step": record.number})
        points.append({"key": "tuning.best_so_far", "value": best_so_far, "step": record.number})
    for key, values in trained.history.items():
        points.extend({"key": key, "value": v, "step": i} for i, v in enumerate(values) if math.isfinite(v))
    client.runs.log_metrics(project, run_id, points)
    client.runs.set_tags(
        project,
        run_id,
        {"tuning.best_trial": str(best["trial"]), "tuning.best_run": best["run_id"], "tuning.state": "done"},
    )
