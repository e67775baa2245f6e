"""`bottega features ...` against the in-process API (the CLI's SDK client is pointed at the test app)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import ApiHarness
from cli_harness import cli_invoker

DEFINITIONS = """
project: eats
entities:
  - name: restaurant
    join_keys: {restaurant_id: int}
batch_groups:
  - name: daily_prep
    entity: restaurant
    max_age: 2d
    owner: ranking
    tags: {team: ranking}
    source: {path: data/orders.parquet, timestamp_column: ordered_at}
    transform_sql: SELECT restaurant_id, ordered_at AS event_time, prep AS avg_prep FROM source
    schedule: "0 1 * * *"
    features:
      - {name: avg_prep, dtype: float, description: mean preparation time}
stream_groups:
  - name: restaurant_live
    entity: restaurant
    max_age: 1h
    topic: orders
    event_schema: {restaurant_id: int, amount: float}
    aggregations:
      - {name: orders_1h, function: count, window: 1h}
    features:
      - {name: orders_1h, dtype: int}
"""


@pytest.fixture
def cli(api: ApiHarness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    # the source the definitions name (data/orders.parquet next to the file): apply checks the SQL against it
    (tmp_path / "data").mkdir()
    times = pa.array([datetime(2026, 11, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table({"restaurant_id": [1], "ordered_at": times, "prep": [4.5]}), tmp_path / "data/orders.parquet"
    )
    return cli_invoker(api, monkeypatch, "features", api.project("eats", owner="alice"))


def test_apply_then_edit_a_definitions_file(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(DEFINITIONS)
    applied = cli("apply", str(path))
    assert [(g["name"], g["outcome"], g["version"]) for g in applied["groups"]] == [
        ("daily_prep", "created", 1),
        ("restaurant_live", "created", 1),
    ]
    assert applied["entities"] == [{"name": "restaurant", "outcome": "created"}]
    human = cli("apply", str(path), as_json=False)
    assert "unchanged" in human
    assert "0 created, 0 updated, 2 unchanged groups" in human
    path.write_text(DEFINITIONS.replace("max_age: 2d", "max_age: 3d"))
    assert "max_age lengthened 2d -> 3d" in cli("apply", str(path), as_json=False)
    path.write_text(DEFINITIONS.replace("dtype: float, description", "dtype: int, description"))
    refused = cli("apply", str(path), as_json=False, code=2)
    assert "breaking change" in refused
    assert "feature avg_prep dtype float -> int" in refused
    forced = cli("apply", str(path), "--new-version")
    assert (forced["groups"][0]["version"], forced["groups"][0]["breaking"]) == (3, True)


def test_list_get_versions_search_resolve_delete(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(DEFINITIONS)
    cli("apply", str(path))
    listed = cli("list", "eats")
    assert [g["name"] for g in listed["items"]] == ["daily_prep", "restaurant_live"]
    assert "restaurant (restaurant_id)" in cli("list", "eats", as_json=False)
    got = cli("get", "eats", "daily_prep")
    assert got["refs"] == ["eats:daily_prep:avg_prep"]
    shown = cli("get", "eats", "daily_prep", as_json=False)
    assert "eats:daily_prep:avg_prep" in shown
    assert "mean preparation time" in shown
    assert cli("get", "eats", "daily_prep", "--version", "1")["version"] == 1
    assert cli("versions", "eats", "daily_prep")["total"] == 1
    assert "restaurant_id" in cli("entities", "eats", as_json=False)
    found = cli("search", "prep", "--tag", "team:ranking", "--owner", "ranking", "--kind", "batch")
    assert [hit["ref"] for hit in found["items"]] == ["eats:daily_prep:avg_prep"]
    assert "eats:restaurant_live:orders_1h" in cli("search", "--entity", "restaurant", as_json=False)
    assert "is not KEY:VALUE" in cli("search", "--tag", "oops", as_json=False, code=2)
    resolved = cli("resolve", "eats:daily_prep:avg_prep", "eats:restaurant_live:orders_1h")
    assert [f["dtype"] for f in resolved["features"]] == ["float", "int"]
    assert "unknown feature references: eats:daily_prep:nope" in cli(
        "resolve", "eats:daily_prep:nope", as_json=False, code=2
    )
    assert "deleted feature group eats/daily_prep" in cli("delete", "eats", "daily_prep", "--yes", as_json=False)
    assert "does not exist" in cli("get", "eats", "daily_prep", as_json=False, code=2)


def test_apply_file_errors(cli: Any, tmp_path: Path) -> None:
    assert "cannot read" in cli("apply", str(tmp_path / "missing.yaml"), as_json=False, code=2)
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: [unclosed")
    assert "not valid YAML" in cli("apply", str(broken), as_json=False, code=2)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    assert "must hold a mapping" in cli("apply", str(listed), as_json=False, code=2)
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"entities": [{"name": "user", "join_keys": {"user_id": "int"}}]}))
    assert "names no project" in cli("apply", str(nameless), as_json=False, code=2)
    applied = cli("apply", str(nameless), "--project", "eats")
    assert applied["entities"] == [{"name": "user", "outcome": "created"}]
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(DEFINITIONS.replace("max_age: 2d", "max_age: two days"))
    assert "must look like 90s" in cli("apply", str(invalid), as_json=False, code=2)
