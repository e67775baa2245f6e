"""Named evaluations of a version: stored beside the immutable version, listed with its own `training` evaluation
first, compared across versions by name, guarded by roles, audited; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound

REPORT = {"task": "binary", "eval": {"metrics": {"auc": 0.81}, "roc": {"fpr": [0, 1], "tpr": [0, 1]}}}


@pytest.fixture
def owner(api: ApiHarness, tmp_path: Path) -> str:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.models.create("eats", "eta")
    weights = tmp_path / "model.bin"
    for text in ("one", "two"):
        weights.write_text(text)
        sdk.models.register_version(
            "eats",
            "eta",
            "xgboost",
            {"model.bin": weights},
            metrics={"auc": 0.9},
            evaluation={"task": "binary", "eval": {"metrics": {"auc": 0.9}}},
            lineage={"dataset": {"labels": "/data/train.parquet", "eval_rows": 300}},
        )
    return token


def test_a_named_evaluation_sits_beside_the_versions_own(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    stored = sdk.models.add_evaluation(
        "eats", "eta", 1, "holdout-dec", metrics={"auc": 0.81}, evaluation=REPORT, dataset={"rows": 120}
    )
    assert (stored.version, stored.name, stored.metrics) == (1, "holdout-dec", {"auc": 0.81})
    assert stored.created_by == "alice"
    listed = sdk.models.list_evaluations("eats", "eta", 1)
    assert [(e.name, e.metrics["auc"]) for e in listed] == [("training", 0.9), ("holdout-dec", 0.81)]
    assert listed[0].dataset == {"labels": "/data/train.parquet", "eval_rows": 300}
    assert sdk.models.get_evaluation("eats", "eta", "latest", "training").evaluation["eval"]["metrics"]["auc"] == 0.9
    assert sdk.models.get_evaluation("eats", "eta", 1, "holdout-dec").evaluation == REPORT
    assert sdk.models.get_version("eats", "eta", 1).evaluation == {"task": "binary", "eval": {"metrics": {"auc": 0.9}}}
    event = sdk.audit.list(project="eats", action="model.evaluation.create").items[-1]
    assert event.target == "project:eats/model:eta/version:1/evaluation:holdout-dec"

    with pytest.raises(Conflict, match="already has an evaluation 'holdout-dec'"):
        sdk.models.add_evaluation("eats", "eta", 1, "holdout-dec", metrics={}, evaluation={})
    with pytest.raises(InvalidInput, match="`training` is the version's own evaluation"):
        sdk.models.add_evaluation("eats", "eta", 1, "training", metrics={}, evaluation={})
    with pytest.raises(InvalidInput, match="name"):
        sdk.models.add_evaluation("eats", "eta", 1, "Holdout Dec", metrics={}, evaluation={})
    with pytest.raises(NotFound, match="no evaluation 'nope'"):
        sdk.models.get_evaluation("eats", "eta", 1, "nope")

    sdk.models.delete_evaluation("eats", "eta", 1, "holdout-dec")
    assert [e.name for e in sdk.models.list_evaluations("eats", "eta", 1)] == ["training"]
    with pytest.raises(NotFound):
        sdk.models.delete_evaluation("eats", "eta", 1, "holdout-dec")


def test_one_name_across_versions_compares_them_on_the_same_labels(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    for version, auc in ((1, 0.78), (2, 0.83)):
        sdk.models.add_evaluation("eats", "eta", version, "dec", metrics={"auc": auc}, evaluation=REPORT)
    sdk.models.add_evaluation("eats", "eta", 1, "nov", metrics={"auc": 0.7}, evaluation=REPORT)
    same = sdk.models.compare_evaluations("eats", "eta", name="dec")
    assert [(e.version, e.metrics["auc"]) for e in same.items] == [(2, 0.83), (1, 0.78)]
    assert same.total == 2
    every = sdk.models.compare_evaluations("eats", "eta")
    assert [(e.version, e.name) for e in every.items] == [(2, "dec"), (1, "dec"), (1, "nov")]
    own = sdk.models.compare_evaluations("eats", "eta", name="training", limit=1)
    assert ([(e.version, e.name) for e in own.items], own.total) == ([(2, "training")], 2)


def test_viewers_read_and_editors_write(api: ApiHarness, owner: str) -> None:
    viewer = api.user("victor", "eats", "viewer")
    with pytest.raises(Forbidden):
        api.sdk(viewer).models.add_evaluation("eats", "eta", 1, "dec", metrics={}, evaluation={})
    api.sdk(owner).models.add_evaluation("eats", "eta", 1, "dec", metrics={"auc": 0.8}, evaluation=REPORT)
    assert [e.name for e in api.sdk(viewer).models.list_evaluations("eats", "eta", 1)] == ["training", "dec"]
    with pytest.raises(Forbidden):
        api.sdk(viewer).models.delete_evaluation("eats", "eta", 1, "dec")
