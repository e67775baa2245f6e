"""The Spark engine builds the same training set as the DuckDB engine, edge cases included (real local[2] Spark)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from bottega.feature_store.offline.pit_duckdb import point_in_time_join
from bottega.feature_store.offline.pit_spark import point_in_time_join_spark
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

T0 = datetime(2026, 11, 1, tzinfo=UTC)
STATS = GroupSchema(
    "eats",
    "restaurant_stats",
    (("restaurant_id", ValueType.int),),
    (("prep_time", ValueType.float), ("open", ValueType.bool)),
    timedelta(days=2),
)
PAIR = GroupSchema(
    "eats",
    "user_city",
    (("user_id", ValueType.string), ("city", ValueType.string)),
    (("visits", ValueType.int), ("label", ValueType.string)),
    timedelta(hours=30),
)
EMPTY = GroupSchema(
    "eats", "never_written", (("restaurant_id", ValueType.int),), (("x", ValueType.float),), timedelta(days=1)
)
SCHEMAS = {s.key: s for s in (STATS, PAIR, EMPTY)}
REFS = [
    FeatureRef.parse(r)
    for r in (
        "eats:restaurant_stats:prep_time",
        "eats:restaurant_stats:open",
        "eats:user_city:visits",
        "eats:user_city:label",
        "eats:never_written:x",
    )
]


def ts(values: list[datetime | None]) -> pa.Array:
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def fill(store: OfflineStore, rng: random.Random) -> None:
    for batch in range(4):  # out-of-order appends; ties on (key, event_time) across batches resolve to the last
        n = 150
        ids = [rng.randint(0, 25) for _ in range(n)]
        hours = [float(rng.randint(0, 240)) for _ in range(n)]
        store.append(
            STATS,
            pa.table(
                {
                    "restaurant_id": ids,
                    "prep_time": [rng.random() for _ in range(n)],
                    "open": [rng.random() < 0.5 for _ in range(n)],
                    "event_time": ts([at(h) for h in hours]),
                }
            ),
        )
        users = [f"u{rng.randint(0, 9)}" for _ in range(n)]
        cities = [rng.choice(["rome", "oslo", "lima"]) for _ in range(n)]
        store.append(
            PAIR,
            pa.table(
                {
                    "user_id": users,
                    "city": cities,
                    "visits": [rng.randint(0, 99) for _ in range(n)],
                    "label": [None if rng.random() < 0.1 else f"b{batch}" for _ in range(n)],
                    "event_time": ts([at(rng.randint(0, 240)) for _ in range(n)]),
                }
            ),
        )


def labels(rng: random.Random, n: int) -> pa.Table:
    hours = [rng.choice([float(rng.randint(-5, 250)), rng.uniform(-5, 250)]) for _ in range(n)]
    return pa.table(
        {
            "restaurant_id": [None if rng.random() < 0.02 else rng.randint(0, 30) for _ in range(n)],
            "user_id": [f"u{rng.randint(0, 12)}" for _ in range(n)],
            "city": [rng.choice(["rome", "oslo", "lima", "paris"]) for _ in range(n)],
            "timestamp": ts([at(h) for h in hours]),
            "target": [rng.randint(0, 1) for _ in range(n)],
        }
    )


def as_rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist()  # type: ignore[no-any-return]


@pytest.mark.spark
@pytest.mark.parametrize("seed", [7])
def test_spark_and_duckdb_build_identical_training_sets(spark: SparkSession, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = OfflineStore(tmp_path / "offline")
    fill(store, rng)
    label_table = labels(rng, 1500)
    duck = point_in_time_join(store, label_table, REFS, SCHEMAS)
    sparked = point_in_time_join_spark(spark, store, label_table, REFS, SCHEMAS)
    assert sparked.column_names == duck.column_names
    duck_rows, spark_rows = as_rows(duck), as_rows(sparked)
    assert len(spark_rows) == 1500
    assert spark_rows == duck_rows
    known = sum(1 for row in duck_rows if row["restaurant_stats__prep_time"] is not None)
    assert 0 < known < 1500, "the data must exercise both found and not-found values"
    assert all(row["never_written__x"] is None for row in duck_rows)
