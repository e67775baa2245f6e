"""Feature plans built from a real Resolution (embedded API, SQLite catalog) and the join on the SQLite store:
values, statuses, policies, on-demand transforms (the training code path) and the plan's errors."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from serving_catalog import REFS, SIGNATURE, catalog_resolution

from bottega.feature_store.on_demand import OnDemandTransform
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.serving.features.decode import RequestError
from bottega.serving.features.join import FeatureJoiner
from bottega.serving.features.plan import FeaturePlan
from bottega.serving.features.policy import FeaturePolicy, parse_policies

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def resolution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with catalog_resolution(tmp_path_factory.mktemp("catalog")) as resolved:
        yield resolved


@pytest.fixture
def store(tmp_path: Path, resolution: Any) -> Iterator[SqliteOnlineStore]:
    online = SqliteOnlineStore(tmp_path / "online.db")
    plan = FeaturePlan.build(SIGNATURE, resolution, {})
    for schema in plan.schemas:
        online.create_group(schema)
    daily, users = sorted(plan.schemas, key=lambda s: s.name)
    online.write_batch(
        daily,
        [
            {"restaurant_id": 1, "avg_prep": 12.0, "n_orders": 30, "event_time": NOW - timedelta(minutes=5)},
            {"restaurant_id": 2, "avg_prep": 20.0, "n_orders": 7, "event_time": NOW - timedelta(minutes=90)},  # stale
            {"restaurant_id": 4, "avg_prep": None, "n_orders": 1, "event_time": NOW - timedelta(minutes=1)},
        ],
    )
    online.write_batch(users, [{"user_id": "u1", "visits": 5, "nick": "a", "event_time": NOW - timedelta(hours=30)}])
    yield online
    online.close()


def test_plan_from_a_resolution(resolution: Any, tmp_path: Path) -> None:
    policies = parse_policies({"features": {"eats:daily_prep:n_orders": {"on_missing": "reject"}}})
    plan = FeaturePlan.build(SIGNATURE, resolution, policies)
    assert plan.input_names == ("distance_km", "hour", *REFS)
    assert plan.entity_keys == ("restaurant_id", "user_id")
    assert [(f.name, f.vtype.value, f.nullable) for f in plan.fields] == [
        ("restaurant_id", "int", False),
        ("user_id", "string", False),
        ("distance_km", "float", True),
        ("hour", "int", True),
    ]
    # one multi-get: the stored features, and the on-demand input (already among them) once
    assert [str(r) for r in plan.read_refs] == REFS[:3]
    assert [(c.name, c.column) for c in plan.stored] == [(r, 2 + i) for i, r in enumerate(REFS[:3])]
    assert plan.stored[1].policy == FeaturePolicy(on_missing="reject")
    (step,) = plan.on_demand
    assert step.transform == OnDemandTransform.from_resolved(next(g for g in resolution.groups if g.on_demand))
    assert [(name, col.column) for name, col in step.outputs] == [("ratio", 5), ("far", 6)]
    store = SqliteOnlineStore(tmp_path / "o.db")
    plan.register(store)
    assert sorted(store.schemas) == [("eats", "daily_prep"), ("eats", "user_stats")]
    assert store.schemas[("eats", "daily_prep")].max_age == timedelta(hours=1)
    store.close()


def test_a_plan_without_store_features() -> None:
    plan = FeaturePlan.build({"inputs": [{"name": "x", "type": "float32"}, {"name": "b", "type": "bool"}]}, None, {})
    assert plan.input_names == ("x", "b")
    assert plan.entity_keys == ()
    assert plan.read_refs == ()


@pytest.mark.parametrize(
    ("signature", "policies", "message"),
    [
        ({"inputs": [{"name": "s", "type": "string"}]}, {}, "inputs.s: type 'string' cannot be served"),
        ({"store_features": ["eats:daily_prep:avg_prep"]}, {"eats:x:y": FeaturePolicy()}, "features.eats:x:y"),
        ({"store_features": ["eats:user_stats:nick"]}, {}, "eats:user_stats:nick is a string"),
        ({"store_features": ["eats:daily_prep:nope"]}, {}, "eats:daily_prep:nope is not in the resolution"),
        ({"store_features": ["bad ref"]}, {}, "store_features: "),
        (
            {"inputs": [{"name": "user_id", "type": "int64"}], "store_features": ["eats:user_stats:visits"]},
            {},
            "'user_id' is int here but string elsewhere",
        ),
    ],
)
def test_plan_errors_name_what_to_fix(
    resolution: Any, signature: dict[str, Any], policies: dict[str, FeaturePolicy], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FeaturePlan.build(signature, resolution, policies)
    if signature.get("store_features"):
        with pytest.raises(ValueError, match="Resolution"):
            FeaturePlan.build({"store_features": ["eats:daily_prep:avg_prep"]}, None, {})


def rows() -> list[dict[str, Any]]:
    return [
        {"restaurant_id": 1, "user_id": "u1", "distance_km": 3.0, "hour": 9},  # fresh, user stale
        {"restaurant_id": 2, "user_id": "u9", "distance_km": 9.0, "hour": None},  # stale prep, missing user
        {"restaurant_id": 3, "user_id": "u1", "distance_km": 1.0, "hour": 1},  # missing restaurant
        {"restaurant_id": 4, "user_id": "u1", "distance_km": 0.0, "hour": 2},  # stored null
    ]


def test_join_values_statuses_and_on_demand(store: SqliteOnlineStore, resolution: Any) -> None:
    plan = FeaturePlan.build(SIGNATURE, resolution, {})
    plan.register(store)
    assembled = asyncio.run(FeatureJoiner(store, timeout_s=1.0).assemble(plan, rows()))
    nan = None
    assert assembled.vectors == [
        [3.0, 9.0, 12.0, 30.0, nan, 3.0, 0.0],  # visits is 30 hours old: null, as a training set has it
        [9.0, nan, nan, nan, nan, nan, 1.0],  # stale prep and orders are null; the transform sees None too
        [1.0, 1.0, nan, nan, nan, nan, 0.0],
        [0.0, 2.0, nan, 1.0, nan, nan, 0.0],
    ]
    assert assembled.matrix.shape == (4, 7)
    assert assembled.matrix.dtype == "float64"
    assert math.isnan(assembled.matrix[1, 1])
    assert assembled.matrix[0].tolist()[:4] == assembled.vectors[0][:4]
    s = [[row[r] for r in REFS] for row in assembled.status]
    assert s == [
        ["FRESH", "FRESH", "STALE", "FRESH", "FRESH"],
        ["STALE", "STALE", "MISSING", "MISSING", "STALE"],
        ["MISSING", "MISSING", "STALE", "MISSING", "STALE"],
        ["FRESH", "FRESH", "STALE", "MISSING", "FRESH"],
    ]
    assert assembled.store_ms > 0
    transform = plan.on_demand[0]
    offline = transform.transform.compute(
        transform.transform.load(), [{"prep": p, "distance_km": d} for p, d in ((12.0, 3.0), (None, 9.0))]
    )
    assert [assembled.vectors[0][5], assembled.vectors[0][6]] == [offline[0]["ratio"], float(offline[0]["far"])]
    assert assembled.vectors[1][5] is None
    assert offline[1]["ratio"] is None


def test_policies_default_and_reject(store: SqliteOnlineStore, resolution: Any) -> None:
    spec = {
        "features": {
            "eats:daily_prep:avg_prep": {"on_stale": "default", "default": -1},
            "eats:user_stats:visits": {"on_missing": "default", "on_stale": "default"},  # no value: NaN, flag kept
            "eats:prep_ratio:ratio": {"default": 0.5},
        }
    }
    plan = FeaturePlan.build(SIGNATURE, resolution, parse_policies(spec))
    plan.register(store)
    joiner = FeatureJoiner(store, timeout_s=1.0)
    assembled = asyncio.run(joiner.assemble(plan, rows()[:3]))
    assert [v[2] for v in assembled.vectors] == [12.0, -1.0, -1.0]
    assert [s["eats:daily_prep:avg_prep"] for s in assembled.status] == ["FRESH", "DEFAULT", "DEFAULT"]
    assert [v[4] for v in assembled.vectors] == [None, None, None]
    assert [s["eats:user_stats:visits"] for s in assembled.status] == ["STALE", "MISSING", "STALE"]
    assert [v[5] for v in assembled.vectors] == [3.0, 0.5, 0.5]
    assert [s["eats:prep_ratio:ratio"] for s in assembled.status] == ["FRESH", "DEFAULT", "DEFAULT"]

    reject = {"features": {"eats:daily_prep:n_orders": {"on_missing": "reject"}}}
    plan = FeaturePlan.build(SIGNATURE, resolution, parse_policies(reject))
    assert asyncio.run(joiner.assemble(plan, rows()[:2])).vectors[1][3] is None  # stale is null, not rejected
    with pytest.raises(RequestError) as caught:
        asyncio.run(joiner.assemble(plan, rows()))
    assert caught.value.status == 422
    assert caught.value.field == "instances[2]"
    assert "feature eats:daily_prep:n_orders is missing for restaurant_id=3" in caught.value.detail
    stale = {"features": {"eats:daily_prep:avg_prep": {"on_stale": "reject"}}}
    plan = FeaturePlan.build(SIGNATURE, resolution, parse_policies(stale))
    with pytest.raises(RequestError, match=r"instances\[1\]: feature eats:daily_prep:avg_prep is stale"):
        asyncio.run(joiner.assemble(plan, rows()))


def test_on_stale_serve_hands_the_model_the_stored_value(store: SqliteOnlineStore, resolution: Any) -> None:
    spec = {"features": {ref: {"on_stale": "serve"} for ref in REFS[:3]}}
    plan = FeaturePlan.build(SIGNATURE, resolution, parse_policies(spec))
    plan.register(store)
    assembled = asyncio.run(FeatureJoiner(store, timeout_s=1.0).assemble(plan, rows()[:2]))
    assert [v[2:5] for v in assembled.vectors] == [[12.0, 30.0, 5.0], [20.0, 7.0, None]]
    assert [assembled.status[1][r] for r in REFS[:3]] == ["STALE", "STALE", "MISSING"]
    assert assembled.vectors[1][5] is None  # the transform still gets None for a stale input, as in training


def test_on_demand_outputs_from_request_fields_only_are_fresh(store: SqliteOnlineStore, resolution: Any) -> None:
    signature = {"inputs": [{"name": "distance_km", "type": "float32"}], "store_features": ["eats:trip:far"]}
    plan = FeaturePlan.build(signature, resolution, {})
    assert plan.read_refs == ()
    row = {"restaurant_id": 2, "distance_km": 9.0}  # restaurant 2's stored values are stale: not this one's inputs
    assembled = asyncio.run(FeatureJoiner(store, timeout_s=1.0).assemble(plan, [row]))
    assert assembled.vectors == [[9.0, 1.0]]
    assert assembled.status == [{"eats:trip:far": "FRESH"}]


def test_without_a_store_everything_is_missing(resolution: Any) -> None:
    plan = FeaturePlan.build(SIGNATURE, resolution, {})
    assembled = asyncio.run(FeatureJoiner(None, timeout_s=0.05).assemble(plan, rows()[:1]))
    assert assembled.vectors == [[3.0, 9.0, None, None, None, None, 0.0]]
    assert [assembled.status[0][r] for r in REFS] == ["MISSING"] * 4 + ["STALE"]  # `far` from an absent input


def test_assemble_cost_one_row_ten_features(tmp_path: Path, resolution: Any) -> None:
    """Measures assemble() for 1 row x 10 store features (2 groups); the number is printed (pytest -s)."""
    sig = {"inputs": [{"name": "distance_km", "type": "float64"}], "store_features": REFS[:2] * 1}
    plan = FeaturePlan.build(sig, resolution, {})
    online = SqliteOnlineStore(tmp_path / "cost.db")
    for schema in plan.schemas:
        online.create_group(schema)
    online.write_batch(plan.schemas[0], [{"restaurant_id": 1, "avg_prep": 1.0, "n_orders": 2, "event_time": NOW}])
    joiner = FeatureJoiner(online, timeout_s=1.0)
    row = [{"restaurant_id": 1, "distance_km": 1.0}]

    async def measure() -> float:
        for _ in range(200):
            await joiner.assemble(plan, row)
        started = time.perf_counter()
        for _ in range(2000):
            await joiner.assemble(plan, row)
        return (time.perf_counter() - started) / 2000 * 1e6

    micros = asyncio.run(measure())
    print(f"assemble sqlite 1 row x 2 features: {micros:.1f} us")
    assert micros < 5000
    online.close()
