"""Entities of the feature catalog and applying whole definitions files, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from bottega.feature_store.definitions import Definitions
from bottega.sdk import Client

ENTITIES = "/api/v1/projects/eats/features/entities"
DEFINITIONS = """
project: eats
entities:
  - name: restaurant
    join_keys: {restaurant_id: int}
    description: a restaurant
  - name: courier
    join_keys: {courier_id: string, city: string}
batch_groups:
  - name: restaurant_stats
    entity: restaurant
    max_age: 2d
    source: {path: /data/orders.parquet, timestamp_column: ordered_at}
    transform_sql: SELECT restaurant_id, ordered_at AS event_time, prep_time FROM source
    schedule: "0 * * * *"
    tags: {team: ranking}
    features:
      - {name: prep_time, dtype: float, tags: {unit: minutes}}
stream_groups:
  - name: courier_live
    entity: courier
    max_age: 1h
    topic: deliveries
    event_schema: {courier_id: string, city: string, distance: float}
    aggregations:
      - {name: trips_1h, function: count, window: 1h}
      - {name: km_14d, function: sum, field: distance, window: 14d}
    features:
      - {name: trips_1h, dtype: int}
      - {name: km_14d, dtype: float}
request_features:
  - {name: basket_size, dtype: int}
"""


@pytest.fixture
def sdk(api: ApiHarness) -> Client:
    return api.sdk(api.project("eats", owner="alice"))


def group(name: str = "stats", entity: str = "restaurant") -> dict[str, Any]:
    return {
        "name": name,
        "entity": entity,
        "max_age": "1d",
        "features": [{"name": "score", "dtype": "float"}],
        "source": {"path": "/data/x.parquet"},
        "transform_sql": "SELECT * FROM source",
    }


def test_put_creates_updates_and_reads(api: ApiHarness, sdk: Client) -> None:
    response = api.call(
        "PUT", f"{ENTITIES}/restaurant", api.tokens["alice"], json={"join_keys": {"restaurant_id": "int"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "created"
    same = sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    assert same.outcome == "unchanged"
    described = sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"}, "a restaurant")
    assert (described.outcome, described.description) == ("updated", "a restaurant")
    rekeyed = sdk.features.put_entity(
        "eats", "restaurant", {"restaurant_id": "string", "city": "string"}, "a restaurant"
    )
    assert rekeyed.outcome == "updated"
    assert list(rekeyed.join_keys.items()) == [("restaurant_id", "string"), ("city", "string")]
    got = sdk.features.entity("eats", "restaurant")
    assert got.join_keys == {"restaurant_id": "string", "city": "string"}
    assert (got.created_by, got.updated_by, got.groups) == ("alice", "alice", [])
    sdk.features.put_entity("eats", "courier", {"courier_id": "string"})
    page = sdk.features.entities("eats", limit=1)
    assert ([e.name for e in page.items], page.total, page.next_offset) == (["courier"], 2, 1)
    events = sdk.audit.list(project="eats", action="feature.entity.put").items
    assert len(events) == 4  # created, described, rekeyed, courier; the unchanged put is not a mutation
    assert events[-1].details["created"] is True
    assert events[1].details["changed"] == ["join_keys"]
    assert events[1].target == "project:eats/feature-entity:restaurant"


def test_join_keys_are_frozen_while_a_group_uses_the_entity(sdk: Client) -> None:
    sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    sdk.features.register_group("eats", group())
    assert sdk.features.entity("eats", "restaurant").groups == ["stats"]
    with pytest.raises(Conflict, match="used by feature groups stats") as info:
        sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "string"})
    assert info.value.extra["groups"] == ["stats"]
    # Reordering the keys is a change of the keys as well.
    sdk.features.put_entity("eats", "pair", {"a": "int", "b": "int"})
    sdk.features.register_group("eats", group("pairs", entity="pair"))
    with pytest.raises(Conflict):
        sdk.features.put_entity("eats", "pair", {"b": "int", "a": "int"})
    # The description may change.
    assert sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"}, "new words").outcome == "updated"
    with pytest.raises(Conflict, match="used by feature groups stats"):
        sdk.features.delete_entity("eats", "restaurant")
    sdk.features.delete_group("eats", "stats")
    sdk.features.delete_entity("eats", "restaurant")
    with pytest.raises(NotFound, match="entity 'restaurant' does not exist in project 'eats'"):
        sdk.features.entity("eats", "restaurant")
    with pytest.raises(NotFound):
        sdk.features.delete_entity("eats", "restaurant")
    assert sdk.audit.list(project="eats", action="feature.entity.delete").total == 1


def test_entity_errors(api: ApiHarness, sdk: Client) -> None:
    token = api.tokens["alice"]
    cases: list[tuple[str, Any]] = [
        ("restaurant", {"join_keys": {}}),
        ("restaurant", {"join_keys": {"id": "uuid"}}),
        ("restaurant", {"join_keys": {"Bad Key": "int"}}),
        ("restaurant", {"join_keys": {"id": "int"}, "colour": "red"}),
        ("restaurant", {"join_keys": {f"k{i}": "int" for i in range(17)}}),
        ("restaurant", {}),
        ("Restaurant", {"join_keys": {"id": "int"}}),
        ("9lives", {"join_keys": {"id": "int"}}),
    ]
    for name, body in cases:
        response = api.call("PUT", f"{ENTITIES}/{name}", token, json=body)
        assert response.status_code == 422, (name, body, response.text)
    assert api.call("PUT", f"{ENTITIES}/restaurant", None, json={"join_keys": {"id": "int"}}).status_code == 401
    with pytest.raises(NotFound, match="project 'ghost'"):
        sdk.features.put_entity("ghost", "restaurant", {"id": "int"})
    viewer = api.sdk(api.user("val", "eats", "viewer"))
    with pytest.raises(Forbidden, match="editor"):
        viewer.features.put_entity("eats", "restaurant", {"id": "int"})
    assert sdk.features.entities("eats").total == 0


def test_apply_a_definitions_file(sdk: Client) -> None:
    definitions = Definitions.model_validate(yaml.safe_load(DEFINITIONS))
    applied = sdk.features.register(definitions)
    assert applied.project == "eats"
    assert [(e.name, e.outcome) for e in applied.entities] == [("restaurant", "created"), ("courier", "created")]
    assert [(g.name, g.kind, g.outcome, g.version) for g in applied.groups] == [
        ("restaurant_stats", "batch", "created", 1),
        ("courier_live", "stream", "created", 1),
    ]
    live = sdk.features.group("eats", "courier_live")
    assert live.entity.join_keys == {"courier_id": "string", "city": "string"}
    assert live.definition.model_dump(mode="json")["aggregations"][1]["window"] == "2w"
    # The same file again changes nothing; the Python dict form works too.
    again = sdk.features.register(yaml.safe_load(DEFINITIONS))
    assert {e.outcome for e in again.entities} | {g.outcome for g in again.groups} == {"unchanged"}
    # An edit: one group gains a feature, the other is untouched.
    data = yaml.safe_load(DEFINITIONS)
    data["batch_groups"][0]["features"].append({"name": "n_orders", "dtype": "int"})
    edited = sdk.features.register(data)
    assert [(g.name, g.outcome, g.version, g.changes) for g in edited.groups] == [
        ("restaurant_stats", "updated", 2, ["feature n_orders added (int)"]),
        ("courier_live", "unchanged", 1, []),
    ]


def test_apply_is_all_or_nothing(sdk: Client) -> None:
    sdk.features.register(yaml.safe_load(DEFINITIONS))
    data = yaml.safe_load(DEFINITIONS)
    data["entities"][0]["description"] = "changed"
    data["stream_groups"][0]["features"] = [{"name": "trips_1h", "dtype": "int"}]
    data["stream_groups"][0]["aggregations"].pop()
    with pytest.raises(Conflict, match="feature km_14d removed"):
        sdk.features.register(data)
    assert sdk.features.entity("eats", "restaurant").description == "a restaurant"  # rolled back
    applied = sdk.features.register(data, new_version=True)
    assert [(g.name, g.version, g.breaking) for g in applied.groups] == [
        ("restaurant_stats", 1, False),
        ("courier_live", 2, True),
    ]
    assert applied.entities[0].outcome == "updated"


def test_apply_errors(api: ApiHarness, sdk: Client) -> None:
    token = api.tokens["alice"]
    url = "/api/v1/projects/eats/features/apply"
    data = yaml.safe_load(DEFINITIONS)
    response = api.call("POST", url, token, json={**data, "project": "ads"})
    assert response.status_code == 422
    assert "for project 'ads', not 'eats'" in response.json()["detail"]
    with pytest.raises(NotFound, match="project 'ads' does not exist"):
        sdk.features.register(data, project="ads")  # project= overrides the file's
    with pytest.raises(InvalidInput, match="no project"):
        sdk.features.register({"entities": []})
    twice = {**data, "entities": [*data["entities"], data["entities"][0]]}
    assert api.call("POST", url, token, json=twice).status_code == 422
    groups_twice = {**data, "stream_groups": [{**data["stream_groups"][0], "name": "restaurant_stats"}]}
    assert "share a name" in api.call("POST", url, token, json=groups_twice).text
    no_entity = {"batch_groups": data["batch_groups"]}
    response = api.call("POST", url, token, json=no_entity)
    assert response.status_code == 422
    assert "entity 'restaurant' does not exist" in response.json()["detail"]
    assert api.call("POST", url, token, json={"colour": 1}).status_code == 422
    assert api.call("POST", url, token, json={}).json() == {"project": "eats", "entities": [], "groups": []}
