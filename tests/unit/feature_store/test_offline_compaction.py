"""Appends and compaction of the offline store: readers always see the latest-written row per (entity keys,
event_time); folding a partition's files changes nothing they read, even beside later appends or after a crash."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bottega.feature_store.offline.pit_duckdb import point_in_time_join
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)
SCHEMA = GroupSchema(
    "eats", "live", (("restaurant_id", ValueType.int),), (("orders", ValueType.int),), timedelta(days=3)
)
ORDERS = FeatureRef.parse("eats:live:orders")


def batch(rows: list[tuple[int, float, int]]) -> pa.Table:
    return pa.table(
        {
            "restaurant_id": [r[0] for r in rows],
            "orders": [r[2] for r in rows],
            "event_time": pa.array([T0 + timedelta(hours=r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )


def contents(store: OfflineStore) -> dict[tuple[int, datetime], int]:
    rows = store.read(SCHEMA).to_pylist()
    out = {(r["restaurant_id"], r["event_time"]): r["orders"] for r in rows}
    assert len(out) == len(rows), "one row per (entity, event_time)"
    return out


def files(store: OfflineStore) -> dict[str, list[str]]:
    return {d.name: sorted(f.name for f in d.glob("*.parquet")) for d in store.group_dir(SCHEMA).glob("event_date=*")}


def training(store: OfflineStore) -> list[Any]:
    labels = pa.table(
        {
            "restaurant_id": [1, 2, 1],
            "timestamp": pa.array([T0 + timedelta(hours=h) for h in (1.5, 30, 40)], pa.timestamp("us", tz="UTC")),
        }
    )
    table = point_in_time_join(store, labels, [ORDERS], {SCHEMA.key: SCHEMA})
    return list(table.column("live__orders").to_pylist())


@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    s = OfflineStore(tmp_path / "offline")
    s.append(SCHEMA, batch([(1, 0, 1), (2, 0, 1), (1, 1, 2)]))
    s.append(SCHEMA, batch([(1, 1, 3), (2, 25, 4)]))  # a correction of (1, +1h), and the next day
    s.append(SCHEMA, batch([(1, 1, 3), (1, 26, 5)]))  # the same correction again (a re-processed batch)
    return s


def test_readers_take_the_latest_written_row(store: OfflineStore) -> None:
    assert contents(store) == {
        (1, T0): 1,
        (2, T0): 1,
        (1, T0 + timedelta(hours=1)): 3,
        (2, T0 + timedelta(hours=25)): 4,
        (1, T0 + timedelta(hours=26)): 5,
    }
    assert training(store) == [3, 4, 5]


def test_compaction_folds_each_day_and_changes_nothing_read(store: OfflineStore) -> None:
    before, joined = contents(store), training(store)
    assert [len(v) for v in files(store).values()] == [3, 2]
    assert store.compact(SCHEMA) == 5
    assert [len(v) for v in files(store).values()] == [1, 1]
    assert contents(store) == before
    assert training(store) == joined
    assert store.compact(SCHEMA) == 0  # nothing left to fold


def test_a_later_append_still_wins_over_the_folded_file(store: OfflineStore) -> None:
    store.compact(SCHEMA)
    store.append(SCHEMA, batch([(1, 1, 9)]))
    assert contents(store)[(1, T0 + timedelta(hours=1))] == 9
    store.compact(SCHEMA)
    assert contents(store)[(1, T0 + timedelta(hours=1))] == 9


def test_an_interrupted_compaction_reads_the_same(store: OfflineStore, tmp_path: Path) -> None:
    before = contents(store)
    saved = tmp_path / "saved"
    shutil.copytree(store.group_dir(SCHEMA), saved)
    store.compact(SCHEMA)
    # As if the process died after writing the folded files but before removing the old ones.
    for day in saved.iterdir():
        for path in day.glob("*.parquet"):
            shutil.copy(path, store.group_dir(SCHEMA) / day.name / path.name)
    assert [len(v) for v in files(store).values()] == [4, 3]
    assert contents(store) == before
    store.compact(SCHEMA)
    assert contents(store) == before


def test_min_files_leaves_small_partitions_alone(store: OfflineStore) -> None:
    assert store.compact(SCHEMA, min_files=3) == 3
    assert [len(v) for v in files(store).values()] == [1, 2]


def test_the_join_skips_de_duplication_only_when_every_partition_has_one_file(store: OfflineStore) -> None:
    assert not store.unique_files(store.files(SCHEMA))  # appended corrections: the join must de-duplicate
    joined = training(store)
    store.compact(SCHEMA)
    assert store.unique_files(store.files(SCHEMA))  # one folded file per day: read without the de-duplication pass
    assert training(store) == joined == [3, 4, 5]
    store.append(SCHEMA, batch([(1, 1, 7)]))  # a second file in a day: de-duplicate again, the latest write wins
    assert not store.unique_files(store.files(SCHEMA))
    assert training(store) == [7, 4, 5]


def test_a_unique_append_skips_the_batch_de_duplication(tmp_path: Path) -> None:
    store = OfflineStore(tmp_path / "offline")
    assert store.append(SCHEMA, batch([(1, 0, 1), (2, 0, 2), (1, 1, 3)]), unique=True) == 3
    assert store.unique_files(store.files(SCHEMA))
    assert training(store) == [3, 2, 3]


def test_a_second_compaction_at_the_same_time_skips(store: OfflineStore) -> None:
    import fcntl

    before = files(store)
    with open(store.group_dir(SCHEMA) / ".compact.lock", "a") as held:  # as another worker compacting right now
        fcntl.flock(held, fcntl.LOCK_EX)
        assert store.compact(SCHEMA) == 0
        assert files(store) == before
    assert store.compact(SCHEMA) == 5  # the lock is free again
    assert [len(v) for v in files(store).values()] == [1, 1]
