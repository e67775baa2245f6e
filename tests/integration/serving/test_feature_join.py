"""The feature join on the real Cassandra node: values equal what was written, FRESH/STALE/MISSING, on-demand outputs
equal `OnDemandTransform.compute` offline, reject policies, and a store timeout read as MISSING within its bound."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from serving_catalog import REFS, SIGNATURE, catalog_resolution

from bottega.feature_store.online.base import Status
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.serving.features.decode import RequestError
from bottega.serving.features.join import FeatureJoiner
from bottega.serving.features.plan import FeaturePlan
from bottega.serving.features.policy import parse_policies

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def resolution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with catalog_resolution(tmp_path_factory.mktemp("catalog")) as resolved:
        yield resolved


@pytest.fixture
def store(cassandra_hosts: str, resolution: Any) -> Iterator[CassandraOnlineStore]:
    host, port = cassandra_hosts.rsplit(":", 1)
    online = CassandraOnlineStore([host], port=int(port), keyspace=f"t_{uuid.uuid4().hex[:12]}")
    try:
        plan = FeaturePlan.build(SIGNATURE, resolution, {})
        for schema in plan.schemas:
            online.create_group(schema)
        daily, users = sorted(plan.schemas, key=lambda s: s.name)
        online.write_batch(
            daily,
            [
                {"restaurant_id": i, "avg_prep": i * 1.5, "n_orders": i, "event_time": NOW - timedelta(minutes=5)}
                for i in range(1, 2000)
                if i not in (2, 3)
            ]
            + [
                {"restaurant_id": 2, "avg_prep": 20.0, "n_orders": 7, "event_time": NOW - timedelta(hours=1, minutes=5)}
            ],
        )
        online.write_batch(users, [{"user_id": "u1", "visits": 5, "nick": "a", "event_time": NOW - timedelta(hours=2)}])
        yield online
    finally:
        online.drop_keyspace()
        online.close()


def rows() -> list[dict[str, Any]]:
    return [
        {"restaurant_id": 1, "user_id": "u1", "distance_km": 3.0, "hour": 9},
        {"restaurant_id": 2, "user_id": "u9", "distance_km": 9.0, "hour": None},  # stale prep, missing user
        {"restaurant_id": 3, "user_id": "u1", "distance_km": 1.0, "hour": 1},  # missing restaurant
    ]


def test_join_on_cassandra(store: CassandraOnlineStore, resolution: Any) -> None:
    plan = FeaturePlan.build(SIGNATURE, resolution, {})
    plan.register(store)
    assembled = asyncio.run(FeatureJoiner(store, timeout_s=5.0).assemble(plan, rows()))
    assert assembled.vectors == [
        [3.0, 9.0, 1.5, 1.0, 5.0, 1.5 / 4.0, 0.0],
        [9.0, None, None, None, None, None, 1.0],  # stale prep and orders are null, as a training set has them
        [1.0, 1.0, None, None, 5.0, None, 0.0],
    ]
    assert [[row[r] for r in REFS] for row in assembled.status] == [
        ["FRESH", "FRESH", "FRESH", "FRESH", "FRESH"],
        ["STALE", "STALE", "MISSING", "MISSING", "STALE"],
        ["MISSING", "MISSING", "FRESH", "MISSING", "STALE"],
    ]
    step = plan.on_demand[0]
    offline = step.transform.compute(
        step.transform.load(), [{"prep": p, "distance_km": d} for p, d in ((1.5, 3.0), (None, 9.0), (None, 1.0))]
    )
    served = [{"ratio": v[5], "far": v[6]} for v in assembled.vectors]
    assert served == [{"ratio": o["ratio"], "far": float(o["far"])} for o in offline]


def test_reject_policy_on_cassandra(store: CassandraOnlineStore, resolution: Any) -> None:
    spec = {"features": {"eats:user_stats:visits": {"on_missing": "reject"}}}
    plan = FeaturePlan.build(SIGNATURE, resolution, parse_policies(spec))
    plan.register(store)
    joiner = FeatureJoiner(store, timeout_s=5.0)
    assert asyncio.run(joiner.assemble(plan, rows()[:1])).vectors[0][4] == 5.0
    with pytest.raises(RequestError) as caught:
        asyncio.run(joiner.assemble(plan, rows()))
    assert caught.value.status == 422
    assert 'instances[1]: feature eats:user_stats:visits is missing for user_id="u9"' in caught.value.detail


def test_a_store_timeout_reads_as_missing_within_the_bound(store: CassandraOnlineStore, resolution: Any) -> None:
    plan = FeaturePlan.build(SIGNATURE, resolution, {})
    plan.register(store)
    many = [{"restaurant_id": i, "user_id": f"u{i}", "distance_km": 1.0, "hour": 1} for i in range(1, 2000)]

    async def run() -> tuple[float, Any, Any]:
        joiner = FeatureJoiner(store, timeout_s=0.002)
        await joiner.assemble(plan, many[:1])  # connected and prepared
        started = time.monotonic()
        assembled = await joiner.assemble(plan, many)
        elapsed = time.monotonic() - started
        read = await store.read_async(many, plan.read_refs, timeout=0.002)
        return elapsed, assembled, read

    elapsed, assembled, read = asyncio.run(run())
    assert elapsed < 0.5  # 2 ms budget, plus the join's own work on ~2000 rows
    flags = [row["eats:daily_prep:avg_prep"] for row in assembled.status]
    assert "MISSING" in flags, "2 ms cannot read ~4000 partitions"
    missing = [v for row in read.rows for v in row.values() if v.status is Status.MISSING]
    assert missing
    assert {v.error for v in missing} <= {"timeout", None}  # None: never written (users u2..)
    assert "timeout" in {v.error for v in missing}
    later = asyncio.run(FeatureJoiner(store, timeout_s=5.0).assemble(plan, many[:2]))
    assert [v[2] for v in later.vectors] == [1.5, None]  # the connection recovers after the abandoned answers
    assert [s["eats:daily_prep:avg_prep"] for s in later.status] == ["FRESH", "STALE"]
