"""One contract suite for every online store: SQLite (embedded default) and the real Cassandra node."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from bottega.feature_store.online.base import OnlineStore, Status
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

# Reads are judged at NOW; writes must sit near the real clock, because Cassandra's TTL (2 x max age from the event
# time) is counted by the server: a fixed date here would start dropping every write two hours after it.
NOW = datetime.now(UTC).replace(microsecond=0)
STATS = GroupSchema(
    project="eats",
    name="restaurant_stats",
    entity_keys=(("restaurant_id", ValueType.int),),
    features=(
        ("prep_time", ValueType.float),
        ("name", ValueType.string),
        ("open", ValueType.bool),
        ("orders", ValueType.int),
    ),
    max_age=timedelta(hours=1),
)
CITY = GroupSchema(
    project="eats-prod",
    name="user_city",
    entity_keys=(("user_id", ValueType.string), ("city", ValueType.string)),
    features=(("visits", ValueType.int),),
    max_age=timedelta(days=14),
)


def ref(schema: GroupSchema, feature: str) -> FeatureRef:
    return schema.ref(feature)


@pytest.fixture(params=["sqlite", "cassandra"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        online: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    else:
        hosts = request.getfixturevalue("cassandra_hosts")
        host, port = hosts.rsplit(":", 1)
        online = CassandraOnlineStore([host], port=int(port), keyspace=f"t_{uuid.uuid4().hex[:12]}")
    try:
        online.create_group(STATS)
        online.create_group(CITY)
        yield online
    finally:
        if isinstance(online, CassandraOnlineStore):
            online.drop_keyspace()
        online.close()


def stats_row(rid: int, minutes_ago: float, prep: float, **extra: object) -> dict[str, object]:
    return {
        "restaurant_id": rid,
        "prep_time": prep,
        "name": f"r{rid}",
        "open": rid % 2 == 0,
        "orders": rid * 10,
        "event_time": NOW - timedelta(minutes=minutes_ago),
        **extra,
    }


def test_write_then_read_many_entities_and_features(store: OnlineStore) -> None:
    assert store.write_batch(STATS, [stats_row(i, 5, i / 2) for i in range(1, 4)]) == 3
    refs = [ref(STATS, f) for f in ("prep_time", "name", "open", "orders")]
    result = store.read([{"restaurant_id": 2}, {"restaurant_id": 99}, {"restaurant_id": 3}], refs, now=NOW)
    two, absent, three = result.rows
    assert {str(r): (v.value, v.status) for r, v in two.items()} == {
        "eats:restaurant_stats:prep_time": (1.0, Status.FRESH),
        "eats:restaurant_stats:name": ("r2", Status.FRESH),
        "eats:restaurant_stats:open": (True, Status.FRESH),
        "eats:restaurant_stats:orders": (20, Status.FRESH),
    }
    event_time = two[refs[0]].event_time
    assert event_time is not None
    assert abs(event_time - (NOW - timedelta(minutes=5))) < timedelta(milliseconds=1)
    assert all(v.status is Status.MISSING and v.value is None for v in absent.values())
    assert three[refs[2]].value is False


def test_an_older_event_never_replaces_a_newer_one(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(1, 1, 10.0)])
    store.write_batch(STATS, [stats_row(1, 30, 99.0)])  # late data: older event time
    store.write_batch(STATS, [stats_row(2, 30, 5.0)])
    store.write_batch(STATS, [stats_row(2, 2, 6.0)])
    result = store.read([{"restaurant_id": 1}, {"restaurant_id": 2}], [ref(STATS, "prep_time")], now=NOW)
    assert [row[ref(STATS, "prep_time")].value for row in result.rows] == [10.0, 6.0]


def test_values_older_than_max_age_are_stale(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(1, 90, 1.0), stats_row(2, 59, 2.0)])
    result = store.read([{"restaurant_id": 1}, {"restaurant_id": 2}], [ref(STATS, "prep_time")], now=NOW)
    statuses = [row[ref(STATS, "prep_time")] for row in result.rows]
    assert [(v.value, v.status) for v in statuses] == [(1.0, Status.STALE), (2.0, Status.FRESH)]


def test_values_older_than_their_ttl_read_as_missing(store: OnlineStore) -> None:
    """Every store expires a value two max ages after its event time (Cassandra by TTL, SQLite on read)."""
    now = datetime.now(UTC)
    old, older = now - timedelta(minutes=100), now - timedelta(minutes=150)
    store.write_batch(STATS, [stats_row(1, 0, 1.0, event_time=older), stats_row(2, 0, 2.0, event_time=old)])
    result = store.read([{"restaurant_id": 1}, {"restaurant_id": 2}], [ref(STATS, "prep_time")], now=now)
    statuses = [row[ref(STATS, "prep_time")] for row in result.rows]
    assert [(v.value, v.status) for v in statuses] == [(None, Status.MISSING), (2.0, Status.STALE)]
    later = store.read([{"restaurant_id": 2}], [ref(STATS, "prep_time")], now=now + timedelta(minutes=30))
    assert later.rows[0][ref(STATS, "prep_time")].status is Status.MISSING  # expiry is judged at the read's `now`


def test_two_groups_with_composite_keys_in_one_call(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(7, 1, 3.5)])
    store.write_batch(
        CITY,
        [
            {"user_id": "u1", "city": "rome", "visits": 4, "event_time": NOW - timedelta(days=1)},
            {"user_id": "u1", "city": "oslo", "visits": 9, "event_time": NOW - timedelta(days=2)},
        ],
    )
    refs = [ref(STATS, "prep_time"), ref(CITY, "visits")]
    result = store.read(
        [{"restaurant_id": 7, "user_id": "u1", "city": "oslo"}, {"restaurant_id": 7, "user_id": "u1"}], refs, now=NOW
    )
    assert result.values(0) == {"eats:restaurant_stats:prep_time": 3.5, "eats-prod:user_city:visits": 9}
    assert result.rows[1][refs[1]].status is Status.MISSING  # the entity row lacks the `city` key
    assert result.rows[1][refs[0]].value == 3.5


def test_nulls_and_many_entities(store: OnlineStore) -> None:
    rows = [stats_row(i, 1, float(i), name=None if i % 3 == 0 else f"r{i}") for i in range(1000)]
    assert store.write_batch(STATS, rows) == 1000
    entities = [{"restaurant_id": i} for i in range(0, 1000, 7)]
    result = store.read(entities, [ref(STATS, "prep_time"), ref(STATS, "name")], now=NOW)
    for entity, row in zip(entities, result.rows, strict=True):
        rid = entity["restaurant_id"]
        assert row[ref(STATS, "prep_time")].value == float(rid)
        assert row[ref(STATS, "name")].value == (None if rid % 3 == 0 else f"r{rid}")
        assert row[ref(STATS, "name")].status is Status.FRESH


def test_bad_rows_write_nothing(store: OnlineStore) -> None:
    good = stats_row(1, 1, 1.0)
    with pytest.raises(ValueError, match="event_time"):
        store.write_batch(STATS, [good, {**stats_row(2, 1, 1.0), "event_time": "yesterday"}])
    with pytest.raises(TypeError):
        store.write_batch(STATS, [good, stats_row(3, 1, "slow")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="entity key"):
        store.write_batch(STATS, [{"prep_time": 1.0, "event_time": NOW}])
    result = store.read([{"restaurant_id": 1}], [ref(STATS, "prep_time")], now=NOW)
    assert result.rows[0][ref(STATS, "prep_time")].status is Status.MISSING


def test_unknown_groups_and_features_are_refused(store: OnlineStore) -> None:
    with pytest.raises(KeyError, match="unknown feature group"):
        store.read([{"restaurant_id": 1}], [FeatureRef.parse("eats:nope:x")])
    with pytest.raises(KeyError, match="no feature 'nope'"):
        store.read([{"restaurant_id": 1}], [FeatureRef.parse("eats:restaurant_stats:nope")])


def test_create_is_idempotent_and_drop_removes(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(1, 1, 1.0)])
    store.create_group(STATS)
    assert store.read([{"restaurant_id": 1}], [ref(STATS, "prep_time")], now=NOW).values(0) == {
        "eats:restaurant_stats:prep_time": 1.0
    }
    store.drop_group(STATS)
    with pytest.raises(KeyError):
        store.read([{"restaurant_id": 1}], [ref(STATS, "prep_time")], now=NOW)
    store.create_group(STATS)
    assert (
        store.read([{"restaurant_id": 1}], [ref(STATS, "prep_time")], now=NOW).rows[0][ref(STATS, "prep_time")].status
        is Status.MISSING
    )


def test_a_read_never_blocks_past_its_timeout(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(i, 1, float(i)) for i in range(3000)])
    entities = [{"restaurant_id": i} for i in range(3000)]
    started = time.monotonic()
    result = store.read(entities, [ref(STATS, "prep_time"), ref(STATS, "orders")], timeout=0.001, now=NOW)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    values = [v for row in result.rows for v in row.values()]
    timed_out = [v for v in values if v.status is Status.MISSING]
    assert timed_out, "a 1 ms budget for 3000 entities must leave some values unread"
    assert all(v.error == "timeout" for v in timed_out)
    assert all(v.value is not None for v in values if v.status is Status.FRESH)


def test_read_async_answers_as_read_does(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(i, 5 if i % 2 else 90, i / 2) for i in range(1, 6)])
    store.write_batch(CITY, [{"user_id": "u1", "city": "rome", "visits": 4, "event_time": NOW}])
    refs = [ref(STATS, f) for f in ("prep_time", "name", "open", "orders")] + [ref(CITY, "visits")]
    entities = [{"restaurant_id": i, "user_id": "u1", "city": "rome"} for i in (1, 2, 99, 3, 1)]

    async def both() -> list[object]:
        one = await store.read_async(entities, refs, timeout=5.0, now=NOW)
        many = await asyncio.gather(
            *(store.read_async(entities[i : i + 1], refs, timeout=5.0, now=NOW) for i in range(5))
        )
        return [one, *many]

    one, *many = asyncio.run(both())
    expected = store.read(entities, refs, timeout=5.0, now=NOW)
    assert one.rows == expected.rows  # type: ignore[attr-defined]
    assert [r.rows[0] for r in many] == expected.rows  # type: ignore[attr-defined]
    assert expected.rows[1][refs[0]].status is Status.STALE
    assert expected.rows[2][refs[0]].status is Status.MISSING
    assert expected.rows[0][refs[4]].value == 4


def test_read_async_never_blocks_past_its_timeout(store: OnlineStore) -> None:
    store.write_batch(STATS, [stats_row(i, 1, float(i)) for i in range(3000)])
    entities = [{"restaurant_id": i} for i in range(3000)]
    refs = [ref(STATS, "prep_time"), ref(STATS, "orders")]

    async def timed() -> tuple[float, object, int]:
        ticks = 0

        async def ticker() -> None:  # the loop keeps running while the read is under way
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        result = await store.read_async(entities, refs, timeout=0.002, now=NOW)
        elapsed = time.monotonic() - started
        task.cancel()
        return elapsed, result, ticks

    elapsed, result, ticks = asyncio.run(timed())
    assert elapsed < 1.0
    assert ticks > 0, "the event loop must keep running during a read"
    values = [v for row in result.rows for v in row.values()]  # type: ignore[attr-defined]
    timed_out = [v for v in values if v.status is Status.MISSING]
    assert timed_out, "a 2 ms budget for 3000 entities must leave some values unread"
    assert all(v.error == "timeout" for v in timed_out)
    # and the store still answers afterwards (late answers of the abandoned queries are dropped)
    again = asyncio.run(store.read_async(entities[:5], refs, timeout=5.0, now=NOW))
    assert [row[refs[0]].value for row in again.rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [row[refs[0]].value for row in store.read(entities[:2], refs, timeout=5.0, now=NOW).rows] == [0.0, 1.0]


def test_write_table_upserts_typed_columns(store: OnlineStore) -> None:
    table = pa.table(
        {
            "restaurant_id": pa.array([1, 2, 3], pa.int32()),  # widened to the key's int
            "prep_time": [1.5, None, 3.5],
            "name": ["a", "b", None],
            "open": [True, False, None],
            "event_time": pa.array([NOW - timedelta(minutes=m) for m in (5, 90, 5)], pa.timestamp("us", tz="UTC")),
        }
    )  # `orders` is absent: it reads as null
    assert store.write_table(STATS, table) == 3
    older = (
        table.slice(0, 1)
        .set_column(1, "prep_time", pa.array([99.0]))
        .set_column(4, "event_time", pa.array([NOW - timedelta(minutes=30)], pa.timestamp("us", tz="UTC")))
    )
    store.write_table(STATS, older)  # an older event never replaces a newer one
    refs = [ref(STATS, f) for f in ("prep_time", "name", "open", "orders")]
    result = store.read([{"restaurant_id": i} for i in (1, 2, 3)], refs, now=NOW)
    assert [[(v.value, v.status) for v in row.values()] for row in result.rows] == [
        [(1.5, Status.FRESH), ("a", Status.FRESH), (True, Status.FRESH), (None, Status.FRESH)],
        [(None, Status.STALE), ("b", Status.STALE), (False, Status.STALE), (None, Status.STALE)],
        [(3.5, Status.FRESH), (None, Status.FRESH), (None, Status.FRESH), (None, Status.FRESH)],
    ]
    cities = pa.table(
        {
            "user_id": ["u1", "u1"],
            "city": ["rome", "oslo"],
            "visits": [4, 9],
            "event_time": pa.array([NOW, NOW], pa.timestamp("ms", tz="UTC")),
        }
    )
    assert store.write_table(CITY, cities) == 2
    read = store.read([{"user_id": "u1", "city": "oslo"}], [ref(CITY, "visits")], now=NOW)
    assert read.values(0) == {"eats-prod:user_city:visits": 9}
    naive = table.set_column(4, "event_time", pa.array([NOW.replace(tzinfo=None)] * 3, pa.timestamp("us")))
    with pytest.raises(ValueError, match="timezone-aware"):
        store.write_table(STATS, naive)
    with pytest.raises(TypeError, match="prep_time"):
        store.write_table(STATS, table.set_column(1, "prep_time", pa.array(["x", "y", "z"])))
    with pytest.raises(ValueError, match="entity key"):
        store.write_table(STATS, table.drop_columns(["restaurant_id"]))
