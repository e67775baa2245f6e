"""Feature groups: registration with versioning rules, reads, versions, statistics, deletion, on both backends."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select

from bottega.api.db.tables import Model, ModelVersion, Project
from bottega.core.errors import Conflict, InvalidInput, NotFound
from bottega.sdk import Client

GROUPS = "/api/v1/projects/eats/features/groups"


def batch(name: str = "restaurant_stats", **over: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "kind": "batch",
        "name": name,
        "entity": "restaurant",
        "max_age": "2d",
        "description": "daily prep statistics",
        "owner": "ranking-team",
        "tags": {"team": "ranking"},
        "features": [
            {"name": "avg_prep", "dtype": "float", "description": "mean prep time"},
            {"name": "n_orders", "dtype": "int"},
        ],
        "source": {"path": "/data/orders.parquet", "timestamp_column": "ordered_at"},
        "transform_sql": "SELECT restaurant_id, ordered_at AS event_time, prep AS avg_prep, 1 AS n_orders FROM source",
        "schedule": "0 1 * * *",
    }
    group.update(over)
    return group


def stream(name: str = "restaurant_live", **over: Any) -> dict[str, Any]:
    group: dict[str, Any] = {
        "kind": "stream",
        "name": name,
        "entity": "restaurant",
        "max_age": "1h",
        "topic": "orders",
        "event_schema": {"restaurant_id": "int", "amount": "float"},
        "aggregations": [
            {"name": "orders_1h", "function": "count", "window": "1h"},
            {"name": "amount_1d", "function": "sum", "field": "amount", "window": "1d"},
        ],
        "features": [{"name": "orders_1h", "dtype": "int"}, {"name": "amount_1d", "dtype": "float"}],
    }
    group.update(over)
    return group


@pytest.fixture
def sdk(api: ApiHarness) -> Client:
    client = api.sdk(api.project("eats", owner="alice"))
    client.features.put_entity("eats", "restaurant", {"restaurant_id": "int"}, "a restaurant")
    return client


def test_register_creates_version_one_and_reads_it(api: ApiHarness, sdk: Client) -> None:
    response = api.call("POST", GROUPS, api.tokens["alice"], json=batch())
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["outcome"], created["version"], created["breaking"], created["changes"]) == (
        "created",
        1,
        False,
        [],
    )
    group = sdk.features.group("eats", "restaurant_stats")
    assert group.version == 1
    assert group.kind == "batch"
    assert group.entity.model_dump() == {"name": "restaurant", "join_keys": {"restaurant_id": "int"}}
    assert group.refs == ["eats:restaurant_stats:avg_prep", "eats:restaurant_stats:n_orders"]
    assert group.stats is None
    assert group.created_by == group.updated_by == "alice"
    definition = group.definition.model_dump(mode="json")
    assert definition["max_age"] == "2d"
    assert definition["source"] == {
        "path": "/data/orders.parquet",
        "format": "parquet",
        "timestamp_column": "ordered_at",
    }
    assert definition["features"][0] == {
        "name": "avg_prep",
        "dtype": "float",
        "description": "mean prep time",
        "tags": {},
    }
    live = sdk.features.register_group("eats", stream())
    assert (live.outcome, live.kind, live.version) == ("created", "stream", 1)
    assert live.definition.model_dump(mode="json")["allowed_lateness"] == "5m"


def test_same_definition_is_a_no_op(api: ApiHarness, sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    # The same definition in other spellings: ISO and numeric durations, extra spaces in the cron, default fields.
    again = batch(max_age="P2D", schedule="0  1 * * *")
    again["source"]["format"] = "parquet"
    response = api.call("POST", GROUPS, api.tokens["alice"], json=again)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["outcome"], body["version"], body["changes"]) == ("unchanged", 1, [])
    assert sdk.features.register_group("eats", batch(max_age=172800)).outcome == "unchanged"
    assert sdk.features.versions("eats", "restaurant_stats").total == 1
    events = sdk.audit.list(project="eats", action="feature.group.register").items
    assert len(events) == 1  # a no-op is not a mutation


def test_compatible_changes_make_the_next_version(sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    added = batch(features=[*batch()["features"], {"name": "max_prep", "dtype": "float", "tags": {"pii": "no"}}])
    second = sdk.features.register_group("eats", added)
    assert (second.outcome, second.version, second.breaking) == ("updated", 2, False)
    assert second.changes == ["feature max_prep added (float)"]
    assert second.refs[-1] == "eats:restaurant_stats:max_prep"
    third = sdk.features.register_group(
        "eats", {**added, "max_age": "3d", "description": "new", "owner": "eats-core", "schedule": "@daily"}
    )
    assert (third.version, third.breaking) == (3, False)
    assert set(third.changes) == {
        "max_age lengthened 2d -> 3d",
        "description changed",
        "owner changed",
        "schedule changed",
    }
    assert third.definition.model_dump()["schedule"] == "@daily"
    versions = sdk.features.versions("eats", "restaurant_stats")
    assert [v.version for v in versions.items] == [3, 2, 1]
    assert versions.items[1].changes == ["feature max_prep added (float)"]
    first = sdk.features.version("eats", "restaurant_stats", 1)
    assert [f.name for f in first.definition.features] == ["avg_prep", "n_orders"]
    assert first.refs == ["eats:restaurant_stats:avg_prep", "eats:restaurant_stats:n_orders"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda g: g["features"].pop(), "feature n_orders removed"),
        (lambda g: g["features"][1].update(dtype="float"), "feature n_orders dtype int -> float"),
        (lambda g: g.update(max_age="1d"), "max_age shortened 2d -> 1d"),
        (lambda g: g.update(online=False), "online turned off"),
        (lambda g: g.update(entity="city"), "entity restaurant -> city"),
    ],
    ids=["removed", "retyped", "shorter-max-age", "offline", "entity"],
)
def test_breaking_changes_need_new_version(api: ApiHarness, sdk: Client, change: Any, reason: str) -> None:
    sdk.features.put_entity("eats", "city", {"city_id": "string"})
    sdk.features.register_group("eats", batch())
    changed = copy.deepcopy(batch())
    change(changed)
    response = api.call("POST", GROUPS, api.tokens["alice"], json=changed)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert reason in problem["detail"]
    assert "new_version" in problem["detail"]
    assert problem["breaking"] == [reason]
    assert sdk.features.group("eats", "restaurant_stats").version == 1
    registered = sdk.features.register_group("eats", changed, new_version=True)
    assert (registered.outcome, registered.version, registered.breaking) == ("updated", 2, True)
    assert reason in registered.changes
    assert sdk.features.version("eats", "restaurant_stats", 2).breaking is True
    assert sdk.features.version("eats", "restaurant_stats", 1).breaking is False
    event = sdk.audit.list(project="eats", action="feature.group.register").items[0]
    assert event.details["version"] == 2
    assert event.details["breaking"] is True
    assert event.target == "project:eats/feature-group:restaurant_stats"


def test_changing_kind_is_breaking(sdk: Client) -> None:
    sdk.features.register_group("eats", batch(name="orders"))
    with pytest.raises(Conflict, match="kind batch -> stream"):
        sdk.features.register_group("eats", stream(name="orders"))
    became = sdk.features.register_group("eats", stream(name="orders"), new_version=True)
    assert (became.kind, became.version, became.breaking) == ("stream", 2, True)
    assert [g.kind for g in sdk.features.groups("eats", kind="stream").items] == ["stream"]
    assert sdk.features.groups("eats", kind="batch").total == 0


def test_register_errors(api: ApiHarness, sdk: Client) -> None:
    token = api.tokens["alice"]
    with pytest.raises(InvalidInput, match="entity 'user' does not exist in project 'eats'"):
        sdk.features.register_group("eats", batch(entity="user"))
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        sdk.features.register_group("ghost", batch())
    features = [{"name": "avg_prep", "dtype": "float"}, {"name": "avg_prep", "dtype": "int"}]
    cases: list[tuple[dict[str, Any], str]] = [
        (batch(schedule="every day"), "body.schedule"),
        (batch(schedule="0 0 30 2 *"), "never fires"),
        (batch(schedule="61 * * * *"), "body.schedule"),
        (batch(features=[{"name": "restaurant_id", "dtype": "int"}]), "join key"),
        (batch(features=[{"name": "event_time", "dtype": "int"}]), "reserved"),
        (batch(features=features), "twice"),
        (batch(features=[]), "body.batch.features"),
        (batch(max_age="2 days"), "must look like 90s"),
        (batch(max_age="0s"), "positive"),
        (batch(max_age="PT1.5S"), "whole number of seconds"),
        (batch(max_age=True), "body.batch.max_age"),
        (batch(name="Bad-Name"), "body.batch.name"),
        (batch(kind="table"), "does not match any of the expected tags"),
        (batch(colour="red"), "body.batch.colour"),
        (batch(tags={"bad key!": "x"}), "body.batch.tags"),
        (batch(features=[{"name": "f", "dtype": "uuid"}]), "body.batch.features.0.dtype"),
        ({k: v for k, v in batch().items() if k != "transform_sql"}, "give exactly one of transform_sql and transform"),
        (batch(transform="pkg.mod:fn"), "give exactly one of transform_sql and transform"),
        (batch(transform_sql=None, transform="not a function"), "body.batch.transform"),
        (stream(aggregations=[{"name": "orders_1h", "function": "sum", "window": "1h"}]), "sum needs a field"),
        (stream(features=[{"name": "orders_1h", "dtype": "int"}]), "must be exactly the aggregations"),
        (stream(event_schema={"restaurant_id": "int"}), "which the event schema lacks"),
        (stream(allowed_lateness="-P1D"), "cannot be negative"),
    ]
    for body, expected in cases:
        response = api.call("POST", GROUPS, token, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert expected in response.text, (expected, response.text)
    assert (
        api.call("POST", GROUPS, token, content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    assert api.call("POST", GROUPS, token, json=[1, 2]).status_code == 422
    assert sdk.features.groups("eats").total == 0


def test_kind_may_be_left_out(sdk: Client) -> None:
    live = stream()
    del live["kind"]
    assert sdk.features.register_group("eats", live).kind == "stream"
    table = batch()
    del table["kind"]
    assert sdk.features.register_group("eats", table).kind == "batch"


def test_list_get_versions_errors(api: ApiHarness, sdk: Client) -> None:
    for i in range(3):
        sdk.features.register_group("eats", batch(name=f"g{i}"))
    page = sdk.features.groups("eats", limit=2)
    assert ([g.name for g in page.items], page.total, page.next_offset) == (["g0", "g1"], 3, 2)
    assert [g.name for g in sdk.features.groups("eats", offset=2).items] == ["g2"]
    assert sdk.features.groups("eats", entity="restaurant").total == 3
    assert sdk.features.groups("eats", entity="nobody").total == 0
    with pytest.raises(NotFound, match="feature group 'nope' does not exist in project 'eats'"):
        sdk.features.group("eats", "nope")
    with pytest.raises(NotFound):
        sdk.features.versions("eats", "nope")
    with pytest.raises(NotFound, match=r"no version 7 \(its latest is 1\)"):
        sdk.features.version("eats", "g0", 7)
    token = api.tokens["alice"]
    assert api.call("GET", f"{GROUPS}/g0/versions/0", token).status_code == 422
    assert api.call("GET", f"{GROUPS}/g0/versions/x", token).status_code == 422
    assert api.call("GET", f"{GROUPS}/Bad-Name", token).status_code == 422
    assert api.call("GET", f"{GROUPS}?kind=table", token).status_code == 422
    assert api.call("GET", f"{GROUPS}?limit=0", token).status_code == 422
    assert api.call("GET", GROUPS, None).status_code == 401


def test_stats_are_stored_and_merged(api: ApiHarness, sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    event_time = datetime(2026, 11, 20, 12, tzinfo=UTC)
    first = sdk.features.report_stats(
        "eats", "restaurant_stats", rows_offline=1000, rows_online=50, last_event_time=event_time, freshness_seconds=30
    )
    assert (first.rows_offline, first.rows_online, first.last_event_time) == (1000, 50, event_time)
    assert first.reported_by == "alice"
    # A later report of some values keeps the others; naive times are UTC.
    token = api.tokens["alice"]
    response = api.call(
        "POST",
        f"{GROUPS}/restaurant_stats/stats",
        token,
        json={"rows_offline": 1200, "last_run_at": "2026-11-21T01:00:00"},
    )
    assert response.status_code == 200, response.text
    stats = sdk.features.group("eats", "restaurant_stats").stats
    assert stats is not None
    assert (stats.rows_offline, stats.rows_online, stats.freshness_seconds) == (1200, 50, 30.0)
    assert stats.last_run_at == datetime(2026, 11, 21, 1, tzinfo=UTC)
    assert stats.last_event_time == event_time
    assert sdk.audit.list(project="eats", action="feature.group.stats").total == 0
    for bad in ({}, {"rows_offline": -1}, {"freshness_seconds": "NaN"}, {"rows": 3}, {"last_run_at": "yesterday"}):
        response = api.call("POST", f"{GROUPS}/restaurant_stats/stats", token, json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert api.call("POST", f"{GROUPS}/nope/stats", token, json={"rows_offline": 1}).status_code == 404


def _model_version(api: ApiHarness, project: str, model: str, number: int, refs: list[str]) -> None:
    session = api.client.app.state.sessionmaker()  # type: ignore[attr-defined]
    with session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        found = session.scalar(select(Model).where(Model.project_id == project_id, Model.name == model))
        if found is None:
            found = Model(project_id=project_id, name=model, created_by="test")
            session.add(found)
            session.flush()
        session.add(
            ModelVersion(
                model_id=found.id,
                version=number,
                flavor="onnx",
                signature={"inputs": [], "store_features": refs, "outputs": []},
                created_by="test",
            )
        )


def test_delete_is_refused_while_a_model_version_uses_the_group(api: ApiHarness, sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    sdk.features.register_group("eats", batch(name="restaurant_stats2"))  # a prefix of no other group's refs
    api.project("ads", owner="bob")
    _model_version(api, "eats", "eta", 3, ["eats:restaurant_stats:avg_prep"])
    _model_version(api, "ads", "ctr", 1, ["eats:restaurant_stats:n_orders", "ads:x:y"])
    with pytest.raises(Conflict, match="used by eats/eta/3 and 1 model versions in projects you cannot read") as info:
        sdk.features.delete_group("eats", "restaurant_stats")
    assert info.value.extra["used_by"] == ["eats/eta/3"]
    assert info.value.extra["used_by_hidden"] == 1
    sdk.features.delete_group("eats", "restaurant_stats2")  # no model uses it
    session = api.client.app.state.sessionmaker()  # type: ignore[attr-defined]
    with session, session.begin():
        for version in session.scalars(select(ModelVersion)):
            session.delete(version)
    sdk.features.delete_group("eats", "restaurant_stats")
    with pytest.raises(NotFound):
        sdk.features.group("eats", "restaurant_stats")
    with pytest.raises(NotFound):
        sdk.features.delete_group("eats", "restaurant_stats")
    events = sdk.audit.list(project="eats", action="feature.group.delete").items
    assert [e.target for e in events] == [
        "project:eats/feature-group:restaurant_stats",
        "project:eats/feature-group:restaurant_stats2",
    ]
    # The name can be registered again, from version 1.
    assert sdk.features.register_group("eats", batch()).version == 1


def test_archived_projects_are_read_only(sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    sdk.projects.archive("eats")
    assert sdk.features.group("eats", "restaurant_stats").version == 1
    with pytest.raises(Conflict, match="archived"):
        sdk.features.register_group("eats", batch(description="x"))
    with pytest.raises(Conflict, match="archived"):
        sdk.features.report_stats("eats", "restaurant_stats", rows_offline=1)


def test_deleting_the_project_removes_its_catalog(api: ApiHarness, sdk: Client) -> None:
    sdk.features.register_group("eats", batch())
    sdk.features.report_stats("eats", "restaurant_stats", rows_online=3)
    sdk.projects.delete("eats")
    sdk.projects.create("eats")
    assert sdk.features.groups("eats").total == 0
    assert sdk.features.entities("eats").total == 0


def test_group_durations_round_trip(sdk: Client) -> None:
    group = sdk.features.register_group("eats", stream(max_age=timedelta(hours=36).total_seconds()))
    definition = group.definition.model_dump(mode="json")
    assert definition["max_age"] == "36h"
    assert [a["window"] for a in definition["aggregations"]] == ["1h", "1d"]
    again = sdk.features.register_group("eats", definition)
    assert again.outcome == "unchanged"


def test_a_python_transform_registers_and_versions(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    python = {k: v for k, v in batch().items() if k != "transform_sql"}
    created = sdk.features.register_group("eats", {**python, "transform": "eats_jobs.prep:daily"})
    assert created.definition.model_dump()["transform"] == "eats_jobs.prep:daily"
    assert created.definition.model_dump()["transform_sql"] is None
    moved = sdk.features.register_group("eats", batch())  # back to SQL: a compatible new version
    assert (moved.version, moved.breaking) == (2, False)
    assert sorted(moved.changes) == ["transform changed", "transform_sql changed"]
