"""Offline buckets: very sparse past years are one bucket, sparse months one bucket, dense days a bucket each; data
written in day buckets before months existed keeps reading and keeps its layout; appends and upserts put a row
where its period already lives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bottega.feature_store.offline.pit_duckdb import point_in_time_join
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATS = GroupSchema("eats", "stats", (("rid", ValueType.int),), (("prep", ValueType.float),), timedelta(days=400))
PREP = FeatureRef.parse("eats:stats:prep")
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def store_at(root: Path, **options: Any) -> OfflineStore:
    return OfflineStore(root, clock=lambda: NOW, **options)


def rows(days: list[int], rid: int = 1, value: float = 1.0, per_day: int = 1) -> pa.Table:
    times = [T0 + timedelta(days=d, minutes=m) for d in days for m in range(per_day)]
    return pa.table(
        {
            "rid": [rid] * len(times),
            "prep": [value + i for i in range(len(times))],
            "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def buckets(store: OfflineStore) -> list[str]:
    return [f.parent.name for f in store.files(STATS)]


def test_a_sparse_backfill_of_a_year_writes_a_bucket_per_month(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert store.upsert(STATS, rows(list(range(365)))) == 365
    assert buckets(store) == [f"event_month=2026-{m:02d}" for m in range(1, 13)]
    assert store.read(STATS).num_rows == 365
    assert store.unique_files(store.files(STATS))


def test_dense_days_keep_a_bucket_each(tmp_path: Path) -> None:
    store = store_at(tmp_path, dense_rows_per_day=5)
    store.upsert(STATS, rows([0, 1, 40], per_day=5))
    assert buckets(store) == ["event_date=2026-01-01", "event_date=2026-01-02", "event_date=2026-02-10"]


def test_a_month_keeps_the_buckets_it_has_whatever_comes_next(tmp_path: Path) -> None:
    sparse = store_at(tmp_path)
    sparse.upsert(STATS, rows([0, 1]))  # January: a month bucket
    dense = store_at(tmp_path, dense_rows_per_day=1)
    dense.upsert(STATS, rows([2, 40], per_day=3, value=10.0))  # dense, but January has a month bucket already
    assert buckets(dense) == ["event_date=2026-02-10", "event_month=2026-01"]
    assert dense.read(STATS).num_rows == 2 + 6
    # and a sparse nightly run into February's day buckets stays in day buckets
    sparse.upsert(STATS, rows([41]))
    assert buckets(sparse) == ["event_date=2026-02-10", "event_date=2026-02-11", "event_month=2026-01"]


def test_legacy_day_buckets_keep_reading_and_take_upserts(tmp_path: Path) -> None:
    legacy = store_at(tmp_path, dense_rows_per_day=0)  # every day its own bucket, as before months
    legacy.upsert(STATS, rows([0, 1, 2], value=1.0))
    store = store_at(tmp_path)
    store.upsert(STATS, rows([1, 60], value=5.0))  # January is in day buckets: day 1 is merged there
    assert buckets(store) == [
        "event_date=2026-01-01",
        "event_date=2026-01-02",
        "event_date=2026-01-03",
        "event_month=2026-03",
    ]
    read = store.read(STATS).sort_by("event_time")
    assert read.column("prep").to_pylist() == [1.0, 5.0, 3.0, 6.0]
    labels = pa.table(
        {
            "rid": [1, 1, 1],
            "timestamp": pa.array([T0 + timedelta(days=d, hours=1) for d in (0, 1, 61)], pa.timestamp("us", tz="UTC")),
        }
    )
    joined = point_in_time_join(store, labels, [PREP], {STATS.key: STATS})
    assert joined.column("stats__prep").to_pylist() == [1.0, 5.0, 6.0]


def test_appends_go_to_the_month_bucket_when_there_is_one(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.upsert(STATS, rows([0]))
    store.append(STATS, rows([0, 3], value=9.0))  # a correction of day 0 and a new day in the same month
    store.append(STATS, rows([45], value=7.0))  # February has no bucket: a day bucket, as streams write
    assert sorted(set(buckets(store))) == ["event_date=2026-02-15", "event_month=2026-01"]
    assert not store.unique_files(store.files(STATS))  # two files in January until compacted
    assert store.read(STATS).sort_by("event_time").column("prep").to_pylist() == [9.0, 10.0, 7.0]
    assert store.compact(STATS) == 2
    assert store.unique_files(store.files(STATS))
    assert store.read(STATS).sort_by("event_time").column("prep").to_pylist() == [9.0, 10.0, 7.0]


def test_a_month_with_both_kinds_of_bucket_is_read_with_de_duplication(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.upsert(STATS, rows([0]))
    (tmp_path / STATS.table_name(limit=200) / "event_date=2026-01-01").mkdir()
    stray = store.files(STATS)[0]
    copy = stray.parent.with_name("event_date=2026-01-01") / stray.name
    copy.write_bytes(stray.read_bytes())
    assert not store.unique_files(store.files(STATS))
    assert store.read(STATS).num_rows == 1


@pytest.mark.parametrize(("rows", "kind"), [(1, "y"), (10, "m"), (60, "d")])
def test_the_bucket_follows_the_rows_per_day_touched(tmp_path: Path, rows: int, kind: str) -> None:
    # dense at 60 rows a day: a year bucket under 60/30 a day, a month bucket under 60
    store = store_at(tmp_path, dense_rows_per_day=60)
    plan = store.plan(STATS, {"2010-03-04": rows, "2010-03-05": rows})
    assert plan.label("2010-03-04") == {"y": "y2010", "m": "m2010-03", "d": "d2010-03-04"}[kind]
    assert store.plan(STATS, {"2010-03-04": rows}, new_periods=False).label("2010-03-04") == "d2010-03-04"


def test_only_past_years_become_year_buckets(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    history = pa.concat_tables([rows(list(range(-3 * 365, 0, 3))), rows(list(range(0, 300, 3)))])
    store.upsert(STATS, history)  # 2023-2025 and 2026, a row every third day
    names = sorted(set(buckets(store)))
    assert names == [f"event_month=2026-{m:02d}" for m in range(1, 11)] + [
        f"event_year={y}" for y in (2023, 2024, 2025)
    ]
    assert store.read(STATS).num_rows == history.num_rows
    store.upsert(STATS, rows([-3], value=99.0))  # a correction on 2025-12-29 goes into the year's bucket
    assert sorted(set(buckets(store))) == names
    assert len(buckets(store)) == len(names)
    read = store.read(STATS).sort_by("event_time")
    assert read.num_rows == history.num_rows
    assert read.column("prep").to_pylist()[364] == 99.0
