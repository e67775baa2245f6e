"""Runs: lifecycle, params (immutable), metric series, tags, compare; with their error cases, on both backends."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from bottega.sdk import Client

RUNS = "/api/v1/projects/eats/runs"


@pytest.fixture
def sdk(api: ApiHarness) -> Client:
    return api.sdk(api.project("eats", owner="alice"))


def test_create_and_get(sdk: Client) -> None:
    before = datetime.now(UTC)
    run = sdk.runs.create(
        "eats",
        "xgb-depth-8",
        description="first try",
        tags={"team": "ranking"},
        params={"max_depth": 8, "eta": 0.1, "booster": "gbtree", "early_stop": True},
    )
    assert len(run.id) == 32
    assert run.project == "eats"
    assert run.status == "running"
    assert run.created_by == "alice"
    assert before - timedelta(seconds=5) <= run.start_time <= datetime.now(UTC) + timedelta(seconds=5)
    assert run.end_time is None
    assert run.params == {"booster": "gbtree", "early_stop": "True", "eta": "0.1", "max_depth": "8"}
    assert run.tags == {"team": "ranking"}
    assert run.metrics == {}
    assert run.artifacts.count == 0
    again = sdk.runs.get("eats", run.id)
    assert again.model_dump() == run.model_dump()


def test_create_errors(api: ApiHarness, sdk: Client) -> None:
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        sdk.runs.create("ghost", "x")
    with pytest.raises(InvalidInput, match="parent run"):
        sdk.runs.create("eats", "child", parent_run_id=uuid.uuid4().hex)
    token = api.tokens["alice"]
    cases = [
        ({"name": "x" * 256}, "body.name"),
        ({"params": {"bad key!": "1"}}, "body.params.bad key!.[key]"),
        ({"params": {"k": None}}, "body.params.k"),
        ({"params": {"k": "v" * 6001}}, "body.params"),
        ({"tags": {"k": "v" * 8001}}, "body.tags"),
        ({"parent_run_id": "not-a-run"}, "body.parent_run_id"),
        ({"colour": "red"}, "body.colour"),
    ]
    for body, field in cases:
        response = api.call("POST", RUNS, token, json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f.startswith(field) for f in fields), (body, fields)
    assert api.call("POST", RUNS, None, json={}).status_code == 401


def test_nested_runs(sdk: Client) -> None:
    parent = sdk.runs.create("eats", "sweep")
    child = sdk.runs.create("eats", "trial-1", parent_run_id=parent.id)
    assert child.parent_run_id == parent.id
    sdk.runs.create("eats", "unrelated")
    assert [r.id for r in sdk.runs.list("eats", parent_run_id=parent.id).items] == [child.id]
    sdk.runs.delete("eats", parent.id)
    assert sdk.runs.get("eats", child.id).parent_run_id is None


def test_runs_of_another_project_are_not_found(api: ApiHarness, sdk: Client) -> None:
    api.project("rides", owner="alice")
    run = sdk.runs.create("rides", "elsewhere")
    with pytest.raises(NotFound, match="does not exist in project 'eats'"):
        sdk.runs.get("eats", run.id)
    with pytest.raises(NotFound):
        sdk.runs.log_params("eats", run.id, {"a": 1})
    with pytest.raises(InvalidInput):
        sdk.runs.get("eats", "NOT-A-RUN-ID")


def test_status_lifecycle(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    renamed = sdk.runs.update("eats", run.id, name="renamed", description="better")
    assert (renamed.name, renamed.description, renamed.status) == ("renamed", "better", "running")
    failed = sdk.runs.set_status("eats", run.id, "failed")
    assert failed.status == "failed"
    assert failed.end_time is not None
    resumed = sdk.runs.set_status("eats", run.id, "running")
    assert resumed.status == "running"
    assert resumed.end_time is None
    finished = sdk.runs.finish("eats", run.id)
    assert finished.status == "finished"
    assert finished.end_time is not None
    assert finished.end_time >= finished.start_time
    with pytest.raises(Conflict, match="cannot go back to running"):
        sdk.runs.set_status("eats", run.id, "running")
    assert sdk.runs.finish("eats", run.id).end_time == finished.end_time  # same status: no change
    audited = [e.details for e in sdk.audit.list(project="eats", action="run.update").items]
    assert len(audited) == 4  # rename, failed, running, finished; the no-op is not a mutation
    assert audited[0]["status"] == {"from": "running", "to": "finished"}
    with pytest.raises(InvalidInput):
        sdk.runs.set_status("eats", run.id, "paused")
    with pytest.raises(NotFound):
        sdk.runs.finish("eats", uuid.uuid4().hex)


def test_delete_needs_owner_and_removes_everything(api: ApiHarness, sdk: Client) -> None:
    run = sdk.runs.create("eats", "r", params={"a": 1}, tags={"t": "v"})
    sdk.runs.log_metric("eats", run.id, "loss", 0.5)
    editor = api.sdk(api.user("bob", "eats", "editor"))
    with pytest.raises(Forbidden, match="owner"):
        editor.runs.delete("eats", run.id)
    sdk.runs.delete("eats", run.id)
    with pytest.raises(NotFound):
        sdk.runs.get("eats", run.id)
    with pytest.raises(NotFound):
        sdk.runs.delete("eats", run.id)
    assert sdk.runs.list("eats").total == 0


def test_params_are_immutable(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r", params={"lr": 0.1})
    assert sdk.runs.log_params("eats", run.id, {"lr": 0.1, "depth": 6}).params == {"depth": "6", "lr": "0.1"}
    assert sdk.runs.log_param("eats", run.id, "depth", "6").params["depth"] == "6"  # same value again is fine
    with pytest.raises(Conflict, match=r"'lr' is '0\.1', not '0\.2'") as caught:
        sdk.runs.log_params("eats", run.id, {"lr": 0.2, "new": "x"})
    assert caught.value.extra["keys"] == ["lr"]
    assert "new" not in sdk.runs.get("eats", run.id).params  # the whole call was refused


def test_param_validation(api: ApiHarness, sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    path = f"{RUNS}/{run.id}/params"
    token = api.tokens["alice"]
    for body in (
        {"params": {"k" * 256: "v"}},
        {"params": {"k": "v" * 6001}},
        {"params": {"k": [1, 2]}},
        {"params": {f"k{i}": "v" for i in range(1001)}},
        {},
    ):
        response = api.call("POST", path, token, json=body)
        assert response.status_code == 422, response.text
    assert sdk.runs.log_params("eats", run.id, {"k": "v" * 6000}).params["k"] == "v" * 6000


def test_metrics_series_and_latest(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    points = [
        {"key": "loss", "value": 0.9, "step": 0, "timestamp": t0},
        {"key": "loss", "value": 0.5, "step": 2, "timestamp": t0 + timedelta(seconds=2)},
        {"key": "loss", "value": 0.7, "step": 1, "timestamp": t0 + timedelta(seconds=1)},
        {"key": "train/acc", "value": 0.8, "step": 5},
    ]
    assert sdk.runs.log_metrics("eats", run.id, points) == 4
    history = sdk.runs.metric_history("eats", run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.9), (1, 0.7), (2, 0.5)]
    assert history[0].timestamp == t0
    latest = sdk.runs.get("eats", run.id).metrics
    assert (latest["loss"].value, latest["loss"].step) == (0.5, 2)
    assert [p.value for p in sdk.runs.metric_history("eats", run.id, "train/acc")] == [0.8]
    # An older step logged later does not move the latest value; a higher step does, a same step with a later
    # time does too.
    sdk.runs.log_metric("eats", run.id, "loss", 0.1, step=1)
    assert sdk.runs.get("eats", run.id).metrics["loss"].value == 0.5
    sdk.runs.log_metric("eats", run.id, "loss", 0.4, step=2, timestamp=t0 + timedelta(hours=1))
    assert sdk.runs.get("eats", run.id).metrics["loss"].value == 0.4
    sdk.runs.log_metric("eats", run.id, "loss", 0.3, step=2, timestamp=t0)
    assert sdk.runs.get("eats", run.id).metrics["loss"].value == 0.4
    sdk.runs.log_metrics("eats", run.id, {"loss": 0.2, "auc": 0.91}, step=3)
    metrics = sdk.runs.get("eats", run.id).metrics
    assert (metrics["loss"].value, metrics["auc"].value) == (0.2, 0.91)
    assert [p.step for p in sdk.runs.metric_history("eats", run.id, "loss")] == [0, 1, 1, 2, 2, 2, 3]
    assert sdk.runs.metric_history("eats", run.id, "never") == []


def test_large_metric_batches(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    points = [{"key": f"m{i % 3}", "value": float(i), "step": i} for i in range(25_000)]
    assert sdk.runs.log_metrics("eats", run.id, points) == 25_000  # three calls of at most 10,000
    history = sdk.runs.metric_history("eats", run.id, "m0")
    assert len(history) == 8334
    assert [p.step for p in history] == sorted(p.step for p in history)
    assert sdk.runs.get("eats", run.id).metrics["m2"].value == 24_998.0


def test_metric_validation(api: ApiHarness, sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    path = f"{RUNS}/{run.id}/metrics"
    headers = {"Authorization": f"Bearer {api.tokens['alice']}", "Content-Type": "application/json"}
    for raw in ("NaN", "Infinity", "-Infinity", "1e999"):
        text = '{"metrics": [{"key": "loss", "value": ' + raw + "}]}"
        response = api.client.post(path, content=text, headers=headers)
        assert response.status_code == 422, raw
        assert response.json()["errors"][0]["field"] == "body.metrics.0.value"
    token = api.tokens["alice"]
    too_many: dict[str, object] = {"metrics": [{"key": "k", "value": 1.0}] * 10_001}
    bodies: list[dict[str, object]] = [
        {"metrics": []},
        {"metrics": [{"key": "bad!", "value": 1}]},
        {"metrics": [{"key": "k", "value": "high"}]},
        {"metrics": [{"key": "k", "value": 1, "step": 2**63}]},
        too_many,
    ]
    for body in bodies:
        assert api.call("POST", path, token, json=body).status_code == 422
    with pytest.raises(InvalidInput, match="NaN"):
        sdk.runs.log_metric("eats", run.id, "loss", float("nan"))
    assert sdk.runs.get("eats", run.id).metrics == {}
    response = api.call("GET", f"{RUNS}/{run.id}/metrics/bad!key", token)
    assert response.status_code == 422


def test_tags_merge_and_delete(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r", tags={"a": "1", "b": "2"})
    assert sdk.runs.set_tags("eats", run.id, {"b": "20", "c": "3"}).tags == {"a": "1", "b": "20", "c": "3"}
    assert sdk.runs.set_tag("eats", run.id, "dir/x y", "v").tags["dir/x y"] == "v"
    sdk.runs.delete_tag("eats", run.id, "a")
    sdk.runs.delete_tag("eats", run.id, "dir/x y")
    assert sdk.runs.get("eats", run.id).tags == {"b": "20", "c": "3"}
    with pytest.raises(NotFound, match="no tag 'a'"):
        sdk.runs.delete_tag("eats", run.id, "a")
    with pytest.raises(InvalidInput):
        sdk.runs.set_tags("eats", run.id, {"x": "v" * 8001})


def test_compare(api: ApiHarness, sdk: Client) -> None:
    a = sdk.runs.create("eats", "a", params={"lr": 0.1, "depth": 6})
    b = sdk.runs.create("eats", "b", params={"lr": 0.2, "depth": 6})
    c = sdk.runs.create("eats", "c", params={"seed": 1})
    sdk.runs.log_metrics("eats", a.id, {"auc": 0.9}, step=1)
    sdk.runs.log_metrics("eats", b.id, {"auc": 0.8, "loss": 0.3}, step=1)
    result = sdk.runs.compare("eats", [a.id, b.id, c.id])
    assert [r.name for r in result.runs] == ["a", "b", "c"]
    params = {row.key: (row.values, row.differs) for row in result.params}
    assert params == {
        "depth": (["6", "6", None], True),
        "lr": (["0.1", "0.2", None], True),
        "seed": ([None, None, "1"], True),
    }
    assert sdk.runs.compare("eats", [a.id, a.id, b.id]).params[0].values == ["6", "6"]  # duplicates collapse
    same = sdk.runs.compare("eats", [a.id, b.id])
    assert {row.key: row.differs for row in same.params} == {"depth": False, "lr": True}
    metrics = {row.key: row.values for row in result.metrics}
    assert metrics == {"auc": [0.9, 0.8, None], "loss": [None, 0.3, None]}
    with pytest.raises(InvalidInput, match="2 to 20"):
        sdk.runs.compare("eats", [a.id])
    with pytest.raises(InvalidInput, match="2 to 20"):
        sdk.runs.compare("eats", [uuid.uuid4().hex for _ in range(21)])
    with pytest.raises(InvalidInput, match="not a run id"):
        sdk.runs.compare("eats", [a.id, "zzz"])
    ghost = uuid.uuid4().hex
    with pytest.raises(NotFound, match=ghost):
        sdk.runs.compare("eats", [a.id, ghost])
    response = api.call("GET", f"{RUNS}/compare", api.tokens["alice"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.ids"


def test_every_mutation_is_audited(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    sdk.runs.log_params("eats", run.id, {"a": 1})
    sdk.runs.log_metric("eats", run.id, "m", 1.0)
    sdk.runs.set_tags("eats", run.id, {"t": "v"})
    sdk.runs.delete_tag("eats", run.id, "t")
    sdk.runs.update("eats", run.id, status="finished")
    sdk.runs.delete("eats", run.id)
    events = sdk.audit.list(project="eats", action="run.").items
    actions = [e.action for e in reversed(events)]
    assert actions == [
        "run.create",
        "run.params",
        "run.metrics",
        "run.tags.put",
        "run.tag.delete",
        "run.update",
        "run.delete",
    ]
    assert {e.target for e in events} == {f"project:eats/run:{run.id}"}
    assert {e.actor for e in events} == {"alice"}


def test_archived_project_runs_are_read_only(sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    sdk.projects.archive("eats")
    assert sdk.runs.get("eats", run.id).name == "r"
    with pytest.raises(Conflict, match="archived"):
        sdk.runs.log_metric("eats", run.id, "m", 1.0)
    with pytest.raises(Conflict, match="archived"):
        sdk.runs.create("eats", "new")


def test_bad_token_is_401(api: ApiHarness, sdk: Client) -> None:
    run = sdk.runs.create("eats", "r")
    with pytest.raises(Unauthenticated):
        Client(token="btg_ffffffffffff_" + "b" * 40, http=api.client).runs.get("eats", run.id)
    assert json.loads(api.call("GET", f"{RUNS}/{run.id}", None).text)["status"] == 401
