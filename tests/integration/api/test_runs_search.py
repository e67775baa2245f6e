"""Run search: filters on status, tags, params, latest metrics, name and parent; sorting; pagination; bad filters."""

from __future__ import annotations

import time

import pytest
from api_harness import ApiHarness

from bottega.api.runs.schemas import RunRead
from bottega.core.errors import InvalidInput
from bottega.sdk import Client

RUNS = "/api/v1/projects/eats/runs"


@pytest.fixture
def sdk(api: ApiHarness) -> Client:
    return api.sdk(api.project("eats", owner="alice"))


@pytest.fixture
def runs(sdk: Client) -> dict[str, RunRead]:
    """Four runs started in order a, b, c, d; d has no `auc`."""
    specs = [
        ("a-xgb", {"model": "xgb", "depth": "6"}, {"team": "ranking"}, {"auc": 0.91, "loss": 0.30}, "finished"),
        ("b-xgb", {"model": "xgb", "depth": "8"}, {"team": "ranking", "gpu": "yes"}, {"auc": 0.85}, "failed"),
        ("c-torch", {"model": "torch"}, {"team": "eta"}, {"auc": 0.95, "loss": 0.10}, "finished"),
        ("d-Baseline", {"model": "mean"}, {}, {"loss": 0.50}, None),
    ]
    out = {}
    for name, params, tags, metrics, status in specs:
        run = sdk.runs.create("eats", name, params=params, tags=tags)
        sdk.runs.log_metrics("eats", run.id, metrics, step=1)
        sdk.runs.log_metrics("eats", run.id, dict.fromkeys(metrics, 0.0), step=0)  # older step: not the latest
        if status:
            sdk.runs.finish("eats", run.id, status)
        out[name[0]] = run
        time.sleep(0.01)  # distinct start times
    return out


def names(page: object) -> list[str]:
    return [r.name[0] for r in page.items]  # type: ignore[attr-defined]


def test_default_order_is_newest_first_with_pagination(sdk: Client, runs: dict[str, RunRead]) -> None:
    page = sdk.runs.list("eats")
    assert names(page) == ["d", "c", "b", "a"]
    assert page.total == 4
    first = sdk.runs.list("eats", limit=3)
    assert (names(first), first.next_offset) == (["d", "c", "b"], 3)
    rest = sdk.runs.list("eats", limit=3, offset=3)
    assert (names(rest), rest.next_offset, rest.total) == (["a"], None, 4)
    assert names(sdk.runs.list("eats", order_by="start_time")) == ["a", "b", "c", "d"]
    listed = sdk.runs.list("eats").items[1]
    assert listed.params == {"model": "torch"}
    assert listed.metrics["auc"].value == 0.95
    assert listed.artifacts.count == 0


def test_filters(sdk: Client, runs: dict[str, RunRead]) -> None:
    assert names(sdk.runs.list("eats", status="finished")) == ["c", "a"]
    assert names(sdk.runs.list("eats", status="running")) == ["d"]
    assert names(sdk.runs.list("eats", tags={"team": "ranking"})) == ["b", "a"]
    assert names(sdk.runs.list("eats", tags={"team": "ranking", "gpu": "yes"})) == ["b"]
    assert names(sdk.runs.list("eats", params={"model": "xgb"})) == ["b", "a"]
    assert names(sdk.runs.list("eats", params={"model": "xgb", "depth": "8"})) == ["b"]
    assert names(sdk.runs.list("eats", name="XGB")) == ["b", "a"]
    assert names(sdk.runs.list("eats", name="baseline")) == ["d"]
    assert names(sdk.runs.list("eats", name="%")) == []  # LIKE wildcards are escaped
    assert names(sdk.runs.list("eats", status="finished", params={"model": "xgb"})) == ["a"]
    assert sdk.runs.list("eats", tags={"team": "nobody"}).total == 0


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("auc>0.9", ["c", "a"]),
        ("auc>=0.91", ["c", "a"]),
        ("auc<0.91", ["b"]),
        ("auc<=0.91", ["b", "a"]),
        ("auc=0.85", ["b"]),
        ("auc!=0.85", ["c", "a"]),
        (" loss < 0.4 ", ["c", "a"]),
        ("loss>1e-1", ["d", "a"]),
    ],
)
def test_metric_filters_use_the_latest_value(
    sdk: Client, runs: dict[str, RunRead], condition: str, expected: list[str]
) -> None:
    assert names(sdk.runs.list("eats", metrics=[condition])) == expected


def test_metric_filters_combine(sdk: Client, runs: dict[str, RunRead]) -> None:
    assert names(sdk.runs.list("eats", metrics=["auc>0.8", "loss<0.2"])) == ["c"]
    assert names(sdk.runs.list("eats", metrics=["auc>0.8"], tags={"team": "ranking"})) == ["b", "a"]


def test_sorting(sdk: Client, runs: dict[str, RunRead]) -> None:
    assert names(sdk.runs.list("eats", order_by="name")) == ["a", "b", "c", "d"]
    assert names(sdk.runs.list("eats", order_by="-name")) == ["d", "c", "b", "a"]
    # Runs without the metric come last in both directions.
    assert names(sdk.runs.list("eats", order_by="metrics.auc")) == ["b", "a", "c", "d"]
    assert names(sdk.runs.list("eats", order_by="-metrics.auc")) == ["c", "a", "b", "d"]
    assert names(sdk.runs.list("eats", order_by="-metrics.loss")) == ["d", "a", "c", "b"]
    assert names(sdk.runs.list("eats", order_by="metrics.auc", limit=2, offset=2)) == ["c", "d"]
    assert names(sdk.runs.list("eats", order_by="-metrics.auc", params={"model": "xgb"})) == ["a", "b"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"metric": "auc"}, "query.metric"),
        ({"metric": "auc>>0.9"}, "query.metric"),
        ({"metric": "auc>high"}, "query.metric"),
        ({"metric": "auc>nan"}, "query.metric"),
        ({"metric": ">0.9"}, "query.metric"),
        ({"metric": "bad!key>1"}, "query.metric"),
        ({"tag": "team"}, "query.tag"),
        ({"tag": ":value"}, "query.tag"),
        ({"param": "model"}, "query.param"),
        ({"order_by": "created"}, "query.order_by"),
        ({"order_by": "metrics."}, "query.order_by"),
        ({"order_by": "-metrics.bad!"}, "query.order_by"),
        ({"status": "paused"}, "query.status"),
        ({"parent_run_id": "nope"}, "query.parent_run_id"),
        ({"limit": "0"}, "query.limit"),
    ],
)
def test_malformed_filters_are_422_naming_the_parameter(
    api: ApiHarness, sdk: Client, query: dict[str, str], parameter: str
) -> None:
    response = api.call("GET", RUNS, api.tokens["alice"], params=query)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["errors"][0]["field"] == parameter
    assert parameter in body["detail"]


def test_sdk_raises_invalid_input_for_bad_filters(sdk: Client) -> None:
    with pytest.raises(InvalidInput, match=r"query\.metric"):
        sdk.runs.list("eats", metrics=["auc ~ 3"])
