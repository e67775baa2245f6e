"""Training as a platform job (`training.train`), so that it can be queued, run by a worker and put on a cron
schedule for retraining. Registered under the entry-point group `bottega.job_types` (name `training`).

Params: the spec, either inline (`spec`: the same document `bottega train` reads, as a JSON object or as YAML/JSON
text) or as a file (`spec_path`: a path, `file://` URL or any fsspec URL readable by the API server and the
workers), plus optional overrides (`run_name`, `tags`), an alias to move to the new version when every gate holds
(`promote_alias`) and a retraining guard (`only_if_better: {metric, alias}`) that moves the alias only when the new
version beats the aliased one on the metric. The spec is validated when the run is submitted or scheduled (422
naming the field); a `spec_path` is read again by every run, so a schedule trains on the file as it is then.

Light on purpose: the API imports this module to list and validate job types (pydantic and the spec only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bottega.api.jobs.types import JobContext, JobType
from bottega.core.names import ALIAS_PATTERN, TAG_KEY_PATTERN, TRAIN_JOB
from bottega.training.spec import TASK_METRICS, SpecError, TrainingSpec, parse_spec

if TYPE_CHECKING:
    from bottega.sdk import Client
    from bottega.training.runner import TrainResult

JOB_TYPE = TRAIN_JOB
CANDIDATE = "candidate"
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae", "mape"})
"""Metrics where a smaller value is better; every other metric of TASK_METRICS is better when larger."""
ALL_METRICS = sorted({m for metrics in TASK_METRICS.values() for m in metrics})
SPEC_TEXT_MAX = 1_000_000
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _spec_error(message: str, kind: str = "training_spec") -> PydanticCustomError:
    """A validation error whose message is `message` as it is (no "Value error, " prefix)."""
    return PydanticCustomError(kind, "{detail}", {"detail": message})


def parse_document(text: str, source: str) -> dict[str, Any]:
    """A spec document from JSON or YAML text; SpecError when it is neither or not a mapping."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SpecError(f"{source} is not JSON, and reading YAML needs PyYAML: pip install pyyaml") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{source} is neither valid JSON nor valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{source} must hold a mapping of spec fields, not {type(data).__name__}")
    return data


def read_spec_file(location: str) -> TrainingSpec:
    """The spec in a local file (relative dataset paths read from its folder) or at an fsspec URL."""
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    if _URL.match(location):
        try:
            import fsspec
        except ImportError as exc:
            raise SpecError(f"reading {location} needs fsspec (pip install fsspec), or give a local path") from exc
        try:
            with fsspec.open(location, "r") as handle:
                text = handle.read(SPEC_TEXT_MAX + 1)
        except Exception as exc:
            raise SpecError(f"cannot read {location}: {exc}") from exc
        base_dir = None
    else:
        path = Path(location).expanduser()
        if not path.is_file():
            raise SpecError(f"{path} is not a readable file (give a path both the API server and the workers read)")
        text = path.read_text()[: SPEC_TEXT_MAX + 1]
        base_dir = path.resolve().parent
    if len(text) > SPEC_TEXT_MAX:
        raise SpecError(f"{location} is larger than {SPEC_TEXT_MAX} characters")
    return parse_spec(parse_document(text, location), source=location, base_dir=base_dir)


class BetterGuard(BaseModel):
    """Move the alias only when the new version beats the aliased one on `metric`."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description=f"an evaluation metric of the spec's task: {', '.join(ALL_METRICS)}")
    alias: str | None = Field(
        default=None, pattern=ALIAS_PATTERN, description="the version to beat (default: promote_alias)"
    )
    higher_is_better: bool | None = Field(
        default=None, description="default: false for log_loss, rmse, mae and mape, true for the others"
    )

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ALL_METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(ALL_METRICS)}")
        return value

    @property
    def higher(self) -> bool:
        return self.higher_is_better if self.higher_is_better is not None else self.metric not in LOWER_IS_BETTER


class TrainJobParams(BaseModel):
    """Params of `training.train`. Give exactly one of `spec` and `spec_path`."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] | None = Field(
        default=None, description="the training spec document (a JSON object, or YAML/JSON text)"
    )
    spec_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="path or URL of a spec file, read by the API at submission and by the worker at each run",
    )
    run_name: str | None = Field(default=None, max_length=255, description="replaces the spec's run_name")
    tags: dict[str, str] = Field(default_factory=dict, max_length=50, description="added to the spec's run tags")
    promote_alias: str | None = Field(
        default=None, pattern=ALIAS_PATTERN, description="alias moved to the new version when every gate holds"
    )
    only_if_better: BetterGuard | None = Field(
        default=None, description="move the alias only when the new version beats the aliased one on a metric"
    )
    _spec: TrainingSpec | None = PrivateAttr(default=None)

    @field_validator("spec", mode="before")
    @classmethod
    def _document(cls, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) > SPEC_TEXT_MAX:
                raise _spec_error(f"the spec text is larger than {SPEC_TEXT_MAX} characters")
            try:
                return parse_document(value, "the spec text")
            except SpecError as exc:
                raise _spec_error(exc.detail) from exc
        return value

    @field_validator("spec")
    @classmethod
    def _valid_spec(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                parse_spec(value)
            except SpecError as exc:
                raise _spec_error(exc.detail) from exc
        return value

    @field_validator("spec_path")
    @classmethod
    def _valid_file(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                read_spec_file(value)
            except SpecError as exc:
                raise _spec_error(exc.detail) from exc
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.match(TAG_KEY_PATTERN, key):
                raise ValueError(f"tag key {key!r} must match {TAG_KEY_PATTERN}")
            if len(text) > 1024:
                raise ValueError(f"tag {key!r}: a value has at most 1024 characters")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TrainJobParams:
        if (self.spec is None) == (self.spec_path is None):
            raise _spec_error("give exactly one of `spec` (the spec document) and `spec_path` (a spec file)", "params")
        self._spec = parse_spec(self.spec) if self.spec is not None else read_spec_file(str(self.spec_path))
        guard = self.only_if_better
        if guard is not None:
            if guard.alias is None and self.promote_alias is None:
                raise _spec_error(
                    "only_if_better: name the version to beat with `alias` (or set promote_alias)", "params"
                )
            task = self._spec.model.task
            if guard.metric not in TASK_METRICS[task]:
                known = ", ".join(TASK_METRICS[task])
                message = f"only_if_better.metric: {guard.metric!r} is not a {task} metric; use one of {known}"
                raise _spec_error(message, "params")
        return self

    @property
    def moved_alias(self) -> str | None:
        """The alias this job moves to the new version: promote_alias, else the guard's alias."""
        if self.promote_alias is not None:
            return self.promote_alias
        return self.only_if_better.alias if self.only_if_better is not None else None

    @property
    def baseline_alias(self) -> str | None:
        """The alias whose version the new one must beat (only with only_if_better)."""
        if self.only_if_better is None:
            return None
        return self.only_if_better.alias or self.promote_alias

    def training_spec(self, project: str, job_run: str) -> TrainingSpec:
        """The validated spec with the overrides applied; SpecError when it belongs to another project."""
        spec = self._spec or (parse_spec(self.spec) if self.spec is not None else read_spec_file(str(self.spec_path)))
        if spec.project != project:
            raise SpecError(
                f"spec.project: the spec trains in project {spec.project!r} but the job runs in {project!r}; "
                f"submit the job in {spec.project!r} or change the spec's project"
            )
        update: dict[str, Any] = {"tags": {**spec.tags, **self.tags, "job_run": job_run, "job_type": JOB_TYPE}}
        if self.run_name is not None:
            update["run_name"] = self.run_name
        return spec.model_copy(update=update)


class JobProgress:
    """The trainer's progress into the job log; stops the training (JobCancelled) when the run is cancelled."""

    def __init__(self, ctx: JobContext[TrainJobParams], lines: int = 10) -> None:
        self.ctx = ctx
        self.lines = lines

    def stage(self, message: str) -> None:
        self.ctx.check_cancelled()
        self.ctx.log.info("%s", message)

    def iteration(self, step: int, total: int, metrics: Mapping[str, float], unit: str = "rounds") -> None:
        self.ctx.check_cancelled()
        every = max(1, total // self.lines)
        if step == 0 or (step + 1) % every == 0 or step + 1 == total:
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("eval."))
            self.ctx.log.info("round %d/%d %s", step + 1, total, shown)


def beats(new: float | None, old: float | None, higher: bool) -> tuple[bool, str]:
    """Whether the new value beats the old one (strictly), with the reason in words."""
    if new is None:
        return False, "the new version has no value for the metric"
    if old is None:
        return True, "the version to beat has no value for the metric"
    better = new > old if higher else new < old
    relation = "beats" if better else "does not beat"
    goal = "higher" if higher else "lower"
    return better, f"{new:.6g} {relation} {old:.6g} ({goal} is better)"


def _aliases(client: Client, project: str, model: str) -> dict[str, int]:
    from bottega.core.errors import NotFound

    try:
        return {a.alias: a.version for a in client.models.list_aliases(project, model)}
    except NotFound:  # the model does not exist yet
        return {}


def _decide(
    client: Client, params: TrainJobParams, result: TrainResult, before: Mapping[str, int]
) -> tuple[bool, dict[str, Any]]:
    """Whether the moved alias goes to the new version, and what the decision was based on."""
    decision: dict[str, Any] = {}
    if not result.candidate:
        return False, {"reason": f"gates failed: {', '.join(result.failed_gates)}"}
    guard, baseline_alias = params.only_if_better, params.baseline_alias
    if guard is None or baseline_alias is None:
        return True, {"reason": "every gate holds"}
    now = _aliases(client, result.project, result.model)
    baseline = now.get(baseline_alias)
    if baseline == result.version:  # the trainer itself moved it (the `candidate` alias): compare with the old one
        baseline = before.get(baseline_alias)
    decision.update(metric=guard.metric, baseline_alias=baseline_alias, baseline_version=baseline)
    decision["new_value"] = new = result.metrics.get(guard.metric)
    if baseline is None:
        return True, {**decision, "reason": f"alias {baseline_alias!r} points at no version yet"}
    old = client.models.get_version(result.project, result.model, baseline).metrics.get(guard.metric)
    better, why = beats(new, old, guard.higher)
    return better, {**decision, "baseline_value": old, "reason": f"{guard.metric}: {why}"}


def promote(
    client: Client, params: TrainJobParams, result: TrainResult, before: Mapping[str, int]
) -> dict[str, Any] | None:
    """Move (or keep) the alias the job manages; None when the job manages none. `before` is the model's aliases
    before training: an alias the trainer moved (`candidate`) is put back when the guard says no."""
    alias = params.moved_alias
    if alias is None:
        return None
    project, model = result.project, result.model
    moved, decision = _decide(client, params, result, before)
    if moved:
        client.models.set_alias(project, model, alias, result.version)
    elif _aliases(client, project, model).get(alias) == result.version:
        previous = before.get(alias)
        if previous is None:
            client.models.delete_alias(project, model, alias)
        else:
            client.models.set_alias(project, model, alias, previous)
        decision["restored"] = previous
    current = _aliases(client, project, model).get(alias)
    return {"alias": alias, "moved": moved, "version": current, **decision}


def run_train_job(ctx: JobContext[TrainJobParams]) -> dict[str, Any]:
    """Train the spec in the job's project; the result is the trainer's plus the alias decision."""
    from bottega.training.runner import train

    params = ctx.params
    spec = params.training_spec(ctx.project, ctx.run_id)
    source = params.spec_path or "inline spec"
    ctx.log.info("training %s:%s from %s", spec.project, spec.model_name, source)
    ctx.check_cancelled()
    with ctx.client() as client:
        before = _aliases(client, spec.project, spec.model_name) if params.moved_alias else {}
        result = train(client, spec, JobProgress(ctx))
        ctx.log.info(
            "registered %s v%d from run %s; gates %s",
            result.model,
            result.version,
            result.run_id,
            "passed" if result.candidate else f"failed ({', '.join(result.failed_gates)})",
        )
        promotion = promote(client, params, result, before)
    if promotion is not None:
        verb = "moved to" if promotion["moved"] else "kept on"
        ctx.log.info("alias %s %s v%s: %s", promotion["alias"], verb, promotion["version"], promotion["reason"])
    return {**result.to_dict(), "spec_source": source, "promotion": promotion}


def job_types() -> list[JobType[Any]]:
    """The entry point `bottega.job_types:training` (training, and evaluation on new labels)."""
    from bottega.training.evaluate_job import job_types as evaluation_types

    return [
        JobType(
            JOB_TYPE,
            "Train a model from a spec (inline or a file), register a version and optionally move an alias.",
            run_train_job,
            TrainJobParams,
        ),
        *evaluation_types(),
    ]
