"""Authorization matrix for the feature catalog: every endpoint x every kind of caller (viewers read, editors
register and report statistics, owners delete)."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import ApiHarness
from authz import CALLERS, PROJECT, Case, check

BASE = "/api/v1/projects/{project}/features"
GROUP = BASE + "/groups/stats"


def definition(**over: Any) -> dict[str, Any]:
    return {
        "kind": "batch",
        "name": "stats",
        "entity": "restaurant",
        "max_age": "1d",
        "features": [{"name": "score", "dtype": "float"}],
        "source": {"path": "/data/x.parquet"},
        "transform_sql": "SELECT * FROM source",
        **over,
    }


def entity(api: ApiHarness, owner: str) -> dict[str, str]:
    api.sdk(owner).features.put_entity(PROJECT, "restaurant", {"restaurant_id": "int"})
    return {}


def group(api: ApiHarness, owner: str) -> dict[str, str]:
    entity(api, owner)
    api.sdk(owner).features.register_group(PROJECT, definition())
    return {}


FILE = {
    "entities": [{"name": "courier", "join_keys": {"courier_id": "string"}}],
    "batch_groups": [definition(name="couriers", entity="courier")],
}
CASES = [
    Case("entity.put", "PUT", BASE + "/entities/restaurant", "editor", json={"join_keys": {"restaurant_id": "int"}}),
    Case("entity.list", "GET", BASE + "/entities", "viewer", setup=entity),
    Case("entity.get", "GET", BASE + "/entities/restaurant", "viewer", setup=entity),
    Case("entity.delete", "DELETE", BASE + "/entities/restaurant", "owner", success=204, setup=entity),
    Case("apply", "POST", BASE + "/apply", "editor", json=FILE),
    Case("group.register", "POST", BASE + "/groups", "editor", json=definition(), success=201, setup=entity),
    Case("group.list", "GET", BASE + "/groups", "viewer", setup=group),
    Case("group.get", "GET", GROUP, "viewer", setup=group),
    Case("group.versions", "GET", GROUP + "/versions", "viewer", setup=group),
    Case("group.version", "GET", GROUP + "/versions/1", "viewer", setup=group),
    Case("group.delete", "DELETE", GROUP, "owner", success=204, setup=group),
    Case("group.stats", "POST", GROUP + "/stats", "editor", json={"rows_offline": 10}, setup=group),
    Case("search.project", "GET", "/api/v1/features/search?project={project}", "viewer", setup=group),
    Case("resolve", "GET", "/api/v1/features/resolve?refs={project}:stats:score", "viewer", setup=group),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


def test_search_without_a_project_shows_nothing_of_others(api: ApiHarness) -> None:
    owner = api.project(PROJECT, owner="owner")
    group(api, owner)
    stranger = api.project("beta", owner="stranger")
    page = api.call("GET", "/api/v1/features/search", stranger).json()
    assert page["total"] == 0
    assert api.call("GET", "/api/v1/features/search", owner).json()["total"] == 1
