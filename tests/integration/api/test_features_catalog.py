"""The catalog across projects: search (filters, visibility, `used_by`) and resolution, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select

from bottega.api.db.tables import Model, ModelVersion, Project
from bottega.core.errors import Forbidden, InvalidInput, NotFound
from bottega.sdk import Client

SEARCH = "/api/v1/features/search"
RESOLVE = "/api/v1/features/resolve"


def batch(name: str, entity: str, features: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {
        "kind": "batch",
        "name": name,
        "entity": entity,
        "max_age": "2d",
        "features": features,
        "source": {"path": f"/data/{name}.parquet"},
        "transform_sql": "SELECT * FROM source",
        **over,
    }


def live(name: str, entity: str, keys: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "stream",
        "name": name,
        "entity": entity,
        "max_age": "15m",
        "online": True,
        "owner": "realtime",
        "topic": name,
        "event_schema": {**keys, "amount": "float"},
        "aggregations": [{"name": "spend_1h", "function": "sum", "field": "amount", "window": "1h"}],
        "features": [{"name": "spend_1h", "dtype": "float", "description": "money spent in the last hour"}],
    }


def add_model_version(api: ApiHarness, project: str, model: str, number: int, refs: list[str]) -> None:
    session = api.client.app.state.sessionmaker()  # type: ignore[attr-defined]
    with session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        found = session.scalar(select(Model).where(Model.project_id == project_id, Model.name == model))
        if found is None:
            found = Model(project_id=project_id, name=model, created_by="test")
            session.add(found)
            session.flush()
        signature = {"inputs": [{"name": "basket", "type": "int64"}], "store_features": refs, "outputs": []}
        session.add(
            ModelVersion(model_id=found.id, version=number, flavor="xgboost", signature=signature, created_by="test")
        )


@pytest.fixture
def world(api: ApiHarness) -> dict[str, Client]:
    """eats (alice) and ads (bob); carol is a viewer of eats only."""
    alice = api.sdk(api.project("eats", owner="alice"))
    bob = api.sdk(api.project("ads", owner="bob"))
    alice.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    alice.features.put_entity("eats", "user", {"user_id": "int"})
    alice.features.register_group(
        "eats",
        batch(
            "restaurant_stats",
            "restaurant",
            [
                {"name": "avg_prep", "dtype": "float", "description": "Mean PREP time", "tags": {"unit": "min"}},
                {"name": "n_orders", "dtype": "int", "tags": {"team": "orders"}},
            ],
            owner="ranking",
            tags={"team": "ranking", "tier": "gold"},
        ),
    )
    alice.features.register_group("eats", live("user_live", "user", {"user_id": "int"}))
    bob.features.put_entity("ads", "user", {"user_id": "string"})
    bob.features.register_group(
        "ads", batch("ad_clicks", "user", [{"name": "ctr_7d", "dtype": "float"}], owner="ranking", tags={"team": "ads"})
    )
    carol = api.sdk(api.user("carol", "eats", "viewer"))
    return {"alice": alice, "bob": bob, "carol": carol, "admin": api.sdk()}


def refs(page: Any) -> list[str]:
    return [hit.ref for hit in page.items]


def test_search_returns_one_row_per_feature(world: dict[str, Client]) -> None:
    alice = world["alice"]
    alice.features.report_stats("eats", "restaurant_stats", rows_offline=500, freshness_seconds=60)
    page = alice.features.search()
    assert refs(page) == ["eats:restaurant_stats:avg_prep", "eats:restaurant_stats:n_orders", "eats:user_live:spend_1h"]
    hit = page.items[0]
    assert (hit.project, hit.group, hit.name, hit.dtype, hit.kind, hit.group_version) == (
        "eats",
        "restaurant_stats",
        "avg_prep",
        "float",
        "batch",
        1,
    )
    assert hit.description == "Mean PREP time"
    assert hit.tags == {"team": "ranking", "tier": "gold", "unit": "min"}  # group tags overlaid with the feature's
    assert page.items[1].tags == {"team": "orders", "tier": "gold"}
    assert hit.entity.model_dump() == {"name": "restaurant", "join_keys": {"restaurant_id": "int"}}
    assert (hit.owner, hit.max_age, hit.max_age_seconds, hit.online) == ("ranking", "2d", 172800, True)
    assert hit.stats is not None
    assert (hit.stats.rows_offline, hit.stats.freshness_seconds) == (500, 60.0)
    assert page.items[2].stats is None
    assert (hit.used_by, hit.used_by_hidden) == ([], 0)


def test_search_filters(world: dict[str, Client]) -> None:
    admin = world["admin"]
    assert refs(admin.features.search(q="prep")) == ["eats:restaurant_stats:avg_prep"]
    assert refs(admin.features.search(q="MONEY")) == ["eats:user_live:spend_1h"]  # description, any case
    assert len(admin.features.search(q="stats").items) == 2  # the group's name
    assert admin.features.search(q="%").total == 0  # wildcards are literal
    assert refs(admin.features.search(tags={"team": "ranking"})) == ["eats:restaurant_stats:avg_prep"]
    assert refs(admin.features.search(tags={"team": "orders", "tier": "gold"})) == ["eats:restaurant_stats:n_orders"]
    assert admin.features.search(tags={"team": "ranking", "unit": "kg"}).total == 0
    assert refs(admin.features.search(owner="ranking")) == [
        "ads:ad_clicks:ctr_7d",
        "eats:restaurant_stats:avg_prep",
        "eats:restaurant_stats:n_orders",
    ]
    assert refs(admin.features.search(entity="user")) == ["ads:ad_clicks:ctr_7d", "eats:user_live:spend_1h"]
    assert refs(admin.features.search(entity="user", project="ads")) == ["ads:ad_clicks:ctr_7d"]
    assert refs(admin.features.search(kind="stream")) == ["eats:user_live:spend_1h"]
    assert refs(admin.features.search(dtype="int")) == ["eats:restaurant_stats:n_orders"]
    page = admin.features.search(limit=2, offset=1)
    assert (page.total, len(page.items), page.next_offset) == (4, 2, 3)


def test_search_sees_only_the_callers_projects(api: ApiHarness, world: dict[str, Client]) -> None:
    assert {hit.project for hit in world["alice"].features.search().items} == {"eats"}
    assert refs(world["bob"].features.search()) == ["ads:ad_clicks:ctr_7d"]
    assert world["carol"].features.search(entity="user").total == 1
    assert world["admin"].features.search().total == 4
    outsider = api.sdk(api.user("dave"))
    assert outsider.features.search().total == 0
    with pytest.raises(Forbidden):
        world["carol"].features.search(project="ads")
    with pytest.raises(NotFound):
        world["carol"].features.search(project="nope")
    # A key scoped to one project sees only that project, even when its user is a member of more.
    world["bob"].projects.set_member("ads", "alice", "viewer")
    assert {hit.project for hit in world["alice"].features.search().items} == {"ads", "eats"}
    scoped = api.sdk(world["alice"].keys.create("ads only", project="ads").token)
    assert refs(scoped.features.search()) == ["ads:ad_clicks:ctr_7d"]
    with pytest.raises(Forbidden):
        scoped.features.resolve(["eats:restaurant_stats:avg_prep"])
    token = api.tokens["alice"]
    assert api.call("GET", f"{SEARCH}?tag=novalue", token).status_code == 422
    assert api.call("GET", f"{SEARCH}?kind=table", token).status_code == 422
    assert api.call("GET", f"{SEARCH}?dtype=uuid", token).status_code == 422
    assert api.call("GET", f"{SEARCH}?limit=501", token).status_code == 422
    assert api.call("GET", SEARCH, None).status_code == 401


def test_used_by_lists_visible_model_versions(api: ApiHarness, world: dict[str, Client]) -> None:
    add_model_version(api, "eats", "eta", 1, ["eats:restaurant_stats:avg_prep"])
    add_model_version(api, "eats", "eta", 2, ["eats:restaurant_stats:avg_prep", "eats:user_live:spend_1h"])
    add_model_version(api, "ads", "ctr", 4, ["eats:restaurant_stats:avg_prep", "ads:ad_clicks:ctr_7d"])
    add_model_version(api, "ads", "other", 1, ["eats:restaurant_stats_old:avg_prep"])  # another group's prefix
    page = world["alice"].features.search(project="eats")
    used = {hit.ref: (hit.used_by, hit.used_by_hidden) for hit in page.items}
    assert used == {
        "eats:restaurant_stats:avg_prep": (["eats/eta/1", "eats/eta/2"], 1),
        "eats:restaurant_stats:n_orders": ([], 0),
        "eats:user_live:spend_1h": (["eats/eta/2"], 0),
    }
    admin = {hit.ref: hit.used_by for hit in world["admin"].features.search().items}
    assert admin["eats:restaurant_stats:avg_prep"] == ["ads/ctr/4", "eats/eta/1", "eats/eta/2"]
    assert admin["ads:ad_clicks:ctr_7d"] == ["ads/ctr/4"]


def test_resolve(world: dict[str, Client]) -> None:
    resolution = world["alice"].features.resolve(["eats:user_live:spend_1h", "eats:restaurant_stats:n_orders"])
    assert [f.ref for f in resolution.features] == ["eats:user_live:spend_1h", "eats:restaurant_stats:n_orders"]
    spend = resolution.features[0]
    assert (spend.dtype, spend.kind, spend.group_version, spend.max_age, spend.max_age_seconds) == (
        "float",
        "stream",
        1,
        "15m",
        900,
    )
    assert spend.entity.model_dump() == {"name": "user", "join_keys": {"user_id": "int"}}
    groups = {g.group: g for g in resolution.groups}
    assert groups["restaurant_stats"].features == {"avg_prep": "float", "n_orders": "int"}
    assert groups["restaurant_stats"].entity.join_keys == {"restaurant_id": "int"}
    # Cross-project reads need a role in every project named.
    both = world["admin"].features.resolve("eats:restaurant_stats:avg_prep, ads:ad_clicks:ctr_7d")
    assert [g.project for g in both.groups] == ["eats", "ads"]
    with pytest.raises(Forbidden, match="'ads'"):
        world["carol"].features.resolve(["eats:restaurant_stats:avg_prep", "ads:ad_clicks:ctr_7d"])


def test_resolve_errors(api: ApiHarness, world: dict[str, Client]) -> None:
    alice = world["alice"]
    with pytest.raises(NotFound) as info:
        alice.features.resolve(
            ["eats:restaurant_stats:avg_prep", "eats:restaurant_stats:nope", "eats:ghost:x", "nowhere:g:f"]
        )
    assert info.value.extra["unknown"] == ["eats:restaurant_stats:nope", "eats:ghost:x", "nowhere:g:f"]
    assert "eats:restaurant_stats:nope" in info.value.detail
    for bad in ["", "eats:restaurant_stats", "eats:Bad:x", "a:b:c:d"]:
        with pytest.raises(InvalidInput):
            alice.features.resolve(bad)
    with pytest.raises(InvalidInput, match="at most 1000"):
        alice.features.resolve([f"eats:g:f{i}" for i in range(1001)])
    assert api.call("GET", RESOLVE, api.tokens["alice"]).status_code == 422
    assert api.call("GET", f"{RESOLVE}?refs=eats:restaurant_stats:avg_prep", None).status_code == 401
    # A breaking change is what serving reads next: resolve follows the current version.
    alice.features.register_group(
        "eats",
        batch("restaurant_stats", "restaurant", [{"name": "avg_prep", "dtype": "int"}], max_age="1d"),
        new_version=True,
    )
    resolved = alice.features.resolve(["eats:restaurant_stats:avg_prep"]).features[0]
    assert (resolved.dtype, resolved.group_version, resolved.max_age_seconds) == ("int", 2, 86400)
    with pytest.raises(NotFound):
        alice.features.resolve(["eats:restaurant_stats:n_orders"])
