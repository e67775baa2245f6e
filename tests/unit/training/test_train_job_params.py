"""`training.train` params: one spec source, the spec's own validation at submission (the field named), spec files,
overrides, the retraining guard, and the comparison that decides whether an alias moves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bottega.api.jobs.builtin import job_types as builtin_types
from bottega.api.jobs.types import JobTypeRegistry
from bottega.core.errors import InvalidInput
from bottega.training.jobs import JOB_TYPE, BetterGuard, TrainJobParams, beats, job_types
from bottega.training.spec import SpecError


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "project": "shop",
        "model_name": "churn",
        "dataset": {
            "labels": "labels.parquet",
            "entity_keys": ["customer_id"],
            "label_column": "label",
            "request_features": ["x0", "x1"],
        },
        "split": {"kind": "random", "eval_fraction": 0.25, "seed": 3},
        "model": {"type": "xgboost", "task": "binary", "num_boost_round": 5},
        "gates": ["auc >= 0.6"],
    }
    base.update(over)
    return base


def registry() -> JobTypeRegistry:
    return JobTypeRegistry([*builtin_types(), *job_types()])


def rejected(params: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        registry().validate(JOB_TYPE, params)
    return caught.value


def field_of(error: InvalidInput) -> str:
    """The first field the 422 names (the `errors` list of the problem document)."""
    field: str = error.extra["errors"][0]["field"]
    return field


def test_the_job_type_is_listed_with_a_params_schema() -> None:
    assert [t.name for t in job_types()] == [JOB_TYPE, "training.evaluate"]
    job_type = job_types()[0]
    schema = job_type.read().params_schema
    assert {"spec", "spec_path", "run_name", "tags", "promote_alias", "only_if_better"} <= set(schema["properties"])
    assert JOB_TYPE in registry().names()


def test_evaluation_job_params_are_checked_at_submission() -> None:
    params = {"model": "churn", "version": "production", "labels": "/data/december.parquet", "name": "w-{date}"}
    assert registry().validate("training.evaluate", params)["labels"] == "/data/december.parquet"
    with pytest.raises(InvalidInput, match="labels"):
        registry().validate("training.evaluate", {"model": "churn", "version": "3"})
    with pytest.raises(InvalidInput, match="on_duplicates"):
        registry().validate("training.evaluate", {**params, "on_duplicates": "drop"})


def test_an_inline_spec_is_validated_and_kept_as_given() -> None:
    document = spec()
    params = registry().validate(JOB_TYPE, {"spec": document, "promote_alias": "candidate"})
    assert params["spec"] == document
    assert params["promote_alias"] == "candidate"
    parsed = TrainJobParams.model_validate(params)
    assert parsed.training_spec("shop", "r1").model_name == "churn"


def test_yaml_or_json_text_is_accepted_as_the_spec() -> None:
    as_yaml = registry().validate(JOB_TYPE, {"spec": yaml.safe_dump(spec())})
    as_json = registry().validate(JOB_TYPE, {"spec": json.dumps(spec())})
    assert as_yaml["spec"] == as_json["spec"] == spec()
    error = rejected({"spec": "- just\n- a list\n"})
    assert field_of(error) == "params.spec"
    assert "must hold a mapping" in error.detail


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (spec(model={"type": "xgboost", "task": "banana"}), "model.task"),
        (spec(split={"kind": "time", "cut": "not a time"}), "split.time.cut"),
        (spec(gates=["rmse <= 3"]), "gates[0]: unknown metric 'rmse'"),
        ({k: v for k, v in spec().items() if k != "dataset"}, "dataset: Field required"),
    ],
)
def test_an_invalid_spec_is_a_422_naming_the_field(document: dict[str, Any], named: str) -> None:
    error = rejected({"spec": document})
    assert error.status == 422
    assert field_of(error) == "params.spec"
    assert named in error.detail


def test_exactly_one_spec_source(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(spec()))
    for params in ({}, {"spec": spec(), "spec_path": str(path)}):
        error = rejected(params)
        assert field_of(error) == "params"
        assert "give exactly one of `spec` (the spec document) and `spec_path` (a spec file)" in error.detail


def test_unknown_params_are_refused() -> None:
    error = rejected({"spec": spec(), "alias": "production"})
    assert field_of(error) == "params.alias"


def test_a_spec_file_is_read_and_relative_paths_follow_it(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(spec()))
    params = TrainJobParams.model_validate(registry().validate(JOB_TYPE, {"spec_path": str(path)}))
    trained = params.training_spec("shop", "run-1")
    assert trained.labels_path() == folder / "labels.parquet"
    url = TrainJobParams.model_validate({"spec_path": f"file://{path}"}).training_spec("shop", "run-1")
    assert url.labels_path() == folder / "labels.parquet"


def test_a_missing_or_invalid_spec_file_names_spec_path(tmp_path: Path) -> None:
    error = rejected({"spec_path": str(tmp_path / "missing.yaml")})
    assert field_of(error) == "params.spec_path"
    assert "is not a readable file" in error.detail
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec(seed=-1)))
    error = rejected({"spec_path": str(bad)})
    assert field_of(error) == "params.spec_path"
    assert "seed: Input should be greater than or equal to 0" in error.detail
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: [unclosed\n")
    assert "neither valid JSON nor valid YAML" in rejected({"spec_path": str(broken)}).detail


def test_overrides_and_job_tags_are_applied() -> None:
    params = TrainJobParams.model_validate(
        {"spec": spec(run_name="from-spec", tags={"team": "growth"}), "run_name": "nightly", "tags": {"why": "cron"}}
    )
    trained = params.training_spec("shop", "abc123")
    assert trained.run_name == "nightly"
    assert trained.tags == {"team": "growth", "why": "cron", "job_run": "abc123", "job_type": JOB_TYPE}
    error = rejected({"spec": spec(), "tags": {"bad key": "x"}})
    assert field_of(error) == "params.tags"


def test_the_spec_must_train_in_the_jobs_project() -> None:
    params = TrainJobParams.model_validate({"spec": spec()})
    expected = "spec.project: the spec trains in project 'shop' but the job runs in 'eats'"
    with pytest.raises(SpecError, match=re.escape(expected)):
        params.training_spec("eats", "r1")


def test_the_guard_needs_a_metric_of_the_task_and_an_alias() -> None:
    error = rejected({"spec": spec(), "only_if_better": {"metric": "auc"}})
    assert "name the version to beat" in error.detail
    error = rejected({"spec": spec(), "only_if_better": {"metric": "rmse", "alias": "production"}})
    assert "only_if_better.metric: 'rmse' is not a binary metric" in error.detail
    error = rejected({"spec": spec(), "only_if_better": {"metric": "speed", "alias": "production"}})
    assert field_of(error) == "params.only_if_better.metric"
    error = rejected({"spec": spec(), "promote_alias": "Not An Alias"})
    assert field_of(error) == "params.promote_alias"


def test_which_alias_moves_and_which_is_beaten() -> None:
    def of(**over: Any) -> TrainJobParams:
        return TrainJobParams.model_validate({"spec": spec(), **over})

    assert (of().moved_alias, of().baseline_alias) == (None, None)
    plain = of(promote_alias="candidate")
    assert (plain.moved_alias, plain.baseline_alias) == ("candidate", None)
    own = of(promote_alias="candidate", only_if_better={"metric": "auc"})
    assert (own.moved_alias, own.baseline_alias) == ("candidate", "candidate")
    guarded = of(only_if_better={"metric": "log_loss", "alias": "production"})
    assert (guarded.moved_alias, guarded.baseline_alias) == ("production", "production")
    cross = of(promote_alias="candidate", only_if_better={"metric": "auc", "alias": "production"})
    assert (cross.moved_alias, cross.baseline_alias) == ("candidate", "production")


def test_metric_direction_and_the_comparison() -> None:
    assert BetterGuard(metric="auc").higher
    assert not BetterGuard(metric="log_loss").higher
    assert not BetterGuard(metric="rmse").higher
    assert not BetterGuard(metric="auc", higher_is_better=False).higher
    assert beats(0.9, 0.8, True)[0]
    assert not beats(0.8, 0.8, True)[0], "a tie does not beat"
    assert beats(0.2, 0.3, False) == (True, "0.2 beats 0.3 (lower is better)")
    assert beats(0.4, 0.3, False) == (False, "0.4 does not beat 0.3 (lower is better)")
    assert beats(None, 0.3, True)[0] is False
    assert beats(0.5, None, True)[0] is True


def test_validation_errors_are_pydantic_errors_on_the_model() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainJobParams.model_validate({"spec": spec(model={"type": "xgboost", "task": "banana"})})
    (error,) = caught.value.errors()
    assert error["loc"] == ("spec",)
    assert error["type"] == "training_spec"
    assert error["msg"].startswith("invalid training spec: model.task:")
