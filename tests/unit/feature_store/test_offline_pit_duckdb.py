"""The offline store and the DuckDB point-in-time join: edge cases and a brute-force reference on random data."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bottega.core.timestamps import NaiveTimestampWarning
from bottega.feature_store.offline.pit_duckdb import point_in_time_join
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

T0 = datetime(2026, 11, 1, tzinfo=UTC)
STATS = GroupSchema(
    "eats",
    "restaurant_stats",
    (("restaurant_id", ValueType.int),),
    (("prep_time", ValueType.float), ("orders", ValueType.int)),
    timedelta(days=2),
)
PAIR = GroupSchema(
    "eats",
    "user_city",
    (("user_id", ValueType.string), ("city", ValueType.string)),
    (("visits", ValueType.int),),
    timedelta(days=30),
)
SCHEMAS = {STATS.key: STATS, PAIR.key: PAIR}
PREP = FeatureRef.parse("eats:restaurant_stats:prep_time")
ORDERS = FeatureRef.parse("eats:restaurant_stats:orders")
VISITS = FeatureRef.parse("eats:user_city:visits")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def rows(**columns: list[Any]) -> pa.Table:
    return pa.table(columns)


def ts(values: list[datetime | None]) -> pa.Array:
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    return OfflineStore(tmp_path / "offline")


def stats(ids: list[int], hours: list[float], prep: list[float]) -> pa.Table:
    return pa.table(
        {
            "restaurant_id": ids,
            "prep_time": prep,
            "orders": [int(p) for p in prep],
            "event_time": ts([at(h) for h in hours]),
        }
    )


def test_point_in_time_edge_cases(store: OfflineStore) -> None:
    store.append(STATS, stats([1, 1, 1, 2], [0, 10, 20, 0], [1.0, 2.0, 3.0, 9.0]))
    labels = pa.table(
        {
            "restaurant_id": [1, 1, 1, 1, 2, 3, None],
            "timestamp": ts([at(-1), at(10), at(15), at(100), at(49), at(5), at(5)]),
            "label": [0, 1, 0, 1, 1, 0, 1],
        }
    )
    out = point_in_time_join(store, labels, [PREP, ORDERS], SCHEMAS).to_pydict()
    assert out["label"] == [0, 1, 0, 1, 1, 0, 1]  # every label row, in order
    assert out["restaurant_stats__prep_time"] == [
        None,  # before any value: never a future one
        2.0,  # event_time == label time is known
        2.0,  # the latest value at or before the label time
        None,  # the latest value (hour 20) is 80 h old > 2 days: expired, and no older value is used either
        None,  # hour 0 value at hour 49: 49 h > 48 h
        None,  # unknown entity
        None,  # null entity key
    ]
    assert out["restaurant_stats__orders"][1] == 2


def test_late_data_and_ties(store: OfflineStore) -> None:
    store.append(STATS, stats([1, 1], [0, 10], [1.0, 2.0]))
    store.append(STATS, stats([1], [5], [7.0]))  # late: arrives after a newer event
    store.append(STATS, stats([1], [10], [8.0]))  # a tie on (key, event_time): the latest write wins
    labels = pa.table({"restaurant_id": [1, 1, 1], "timestamp": ts([at(4), at(6), at(11)])})
    out = point_in_time_join(store, labels, [PREP], SCHEMAS).to_pydict()
    assert out["restaurant_stats__prep_time"] == [1.0, 7.0, 8.0]


@pytest.mark.parametrize(
    ("dense", "buckets"),
    [
        (None, ["event_month=2026-11"]),  # a row a day: one month bucket
        (1, ["event_date=2026-11-01", "event_date=2026-11-02", "event_date=2026-11-03"]),
    ],
)
def test_upsert_is_idempotent_and_replaces(tmp_path: Path, dense: int | None, buckets: list[str]) -> None:
    options = {"dense_rows_per_day": dense} if dense else {}
    store = OfflineStore(tmp_path / "offline", clock=lambda: datetime(2026, 12, 7, tzinfo=UTC), **options)
    batch = stats([1, 2, 3], [0, 30, 60], [1.0, 2.0, 3.0])
    store.upsert(STATS, batch)
    store.upsert(STATS, batch)
    first = store.read(STATS).sort_by([("restaurant_id", "ascending")])
    assert first.num_rows == 3
    store.upsert(STATS, stats([2], [30], [20.0]))
    second = store.read(STATS).sort_by([("restaurant_id", "ascending")])
    assert second.column("prep_time").to_pylist() == [1.0, 20.0, 3.0]
    assert sorted(p.name for p in store.group_dir(STATS).iterdir()) == buckets
    assert [f.parent.name for f in store.files(STATS)] == buckets  # one file per bucket
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_composite_keys_and_two_groups(store: OfflineStore) -> None:
    store.append(STATS, stats([1], [0], [4.0]))
    store.append(
        PAIR,
        pa.table({"user_id": ["u", "u"], "city": ["rome", "oslo"], "visits": [3, 5], "event_time": ts([at(0), at(1)])}),
    )
    labels = pa.table(
        {"restaurant_id": [1, 1], "user_id": ["u", "u"], "city": ["oslo", "paris"], "timestamp": ts([at(2), at(2)])}
    )
    out = point_in_time_join(store, labels, [VISITS, PREP], SCHEMAS).to_pydict()
    assert out["user_city__visits"] == [5, None]
    assert out["restaurant_stats__prep_time"] == [4.0, 4.0]


def test_empty_group_and_bad_input(store: OfflineStore) -> None:
    labels = pa.table({"restaurant_id": [1], "timestamp": ts([at(1)])})
    assert point_in_time_join(store, labels, [PREP], SCHEMAS).to_pydict()["restaurant_stats__prep_time"] == [None]
    with pytest.raises(ValueError, match="lacks entity keys"):
        point_in_time_join(store, labels, [VISITS], SCHEMAS)
    with pytest.warns(NaiveTimestampWarning, match="'timestamp' has no time zone"):
        point_in_time_join(
            store, pa.table({"restaurant_id": [1], "timestamp": [T0.replace(tzinfo=None)]}), [PREP], SCHEMAS
        )
    with pytest.raises(ValueError, match="'timestamp' has type int64"):
        point_in_time_join(store, pa.table({"restaurant_id": [1], "timestamp": [1]}), [PREP], SCHEMAS)
    with pytest.raises(KeyError, match="unknown feature group"):
        point_in_time_join(store, labels, [FeatureRef.parse("eats:nope:x")], SCHEMAS)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.append(
            STATS, pa.table({"restaurant_id": [1], "prep_time": [1.0], "event_time": [T0.replace(tzinfo=None)]})
        )


def brute_force(
    events: list[tuple[int, float, float]], labels: list[tuple[int, float]], max_age_h: float
) -> list[float | None]:
    out: list[float | None] = []
    for key, hour in labels:
        known = [(h, v) for k, h, v in events if k == key and h <= hour]
        if not known:
            out.append(None)
            continue
        h, v = max(known, key=lambda hv: hv[0])
        out.append(v if hour - h <= max_age_h else None)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_a_brute_force_reference(store: OfflineStore, seed: int) -> None:
    rng = random.Random(seed)
    seen: set[tuple[int, float]] = set()
    events: list[tuple[int, float, float]] = []
    while len(events) < 400:
        key, hour = rng.randint(0, 30), float(rng.randint(0, 24 * 10))
        if (key, hour) not in seen:  # unique (key, event_time): ties are tested separately
            seen.add((key, hour))
            events.append((key, hour, rng.random()))
    for start in range(0, len(events), 100):  # several appends, out of time order
        chunk = events[start : start + 100]
        store.append(STATS, stats([k for k, _, _ in chunk], [h for _, h, _ in chunk], [v for _, _, v in chunk]))
    labels = [(rng.randint(0, 35), rng.uniform(-5, 24 * 11)) for _ in range(2000)]
    table = pa.table({"restaurant_id": [k for k, _ in labels], "timestamp": ts([at(h) for _, h in labels])})
    got = point_in_time_join(store, table, [PREP], SCHEMAS).column("restaurant_stats__prep_time").to_pylist()
    assert got == brute_force(events, labels, STATS.max_age.total_seconds() / 3600)


def test_duplicates_within_one_batch_keep_the_last(store: OfflineStore) -> None:
    store.append(STATS, stats([1, 1, 2], [0, 0, 0], [1.0, 5.0, 2.0]))
    table = store.read(STATS).sort_by([("restaurant_id", "ascending")])
    assert table.column("prep_time").to_pylist() == [5.0, 2.0]
