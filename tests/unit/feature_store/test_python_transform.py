"""Python-function transforms of batch feature groups (`transform: package.module:function`): the definition's
contract, and the DuckDB engine running a pandas function like the equivalent SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from bottega.core.functions import FunctionError
from bottega.core.timestamps import NaiveTimestampWarning
from bottega.feature_store.batch.duckdb_pipeline import PipelineError, run_batch
from bottega.feature_store.batch.spark_pipeline import run_batch_engine
from bottega.feature_store.definitions import BatchFeatureGroup, Definitions, Entity, Feature, Source
from bottega.feature_store.jobs import BatchParams
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import GroupSchema, ValueType

DAY = datetime(2026, 11, 1, tzinfo=UTC)
RESTAURANT = Entity(name="restaurant", join_keys={"restaurant_id": ValueType.int})
SQL = (
    "SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time, "
    "avg(prep_time) AS avg_prep, count(*) AS n_orders FROM source GROUP BY ALL"
)


def daily_stats(source: pd.DataFrame) -> pd.DataFrame:
    """SQL above, in pandas: `transform: test_python_transform:daily_stats`."""
    frame = source.assign(event_time=source["ordered_at"].dt.floor("D") + pd.Timedelta(days=1))
    return frame.groupby(["restaurant_id", "event_time"], as_index=False).agg(
        avg_prep=("prep_time", "mean"), n_orders=("prep_time", "size")
    )


def daily_stats_arrow(source: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(daily_stats(source), preserve_index=False)


def returns_a_list(source: pd.DataFrame) -> list[int]:
    return [len(source)]


def explodes(source: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError("boom")


def write_orders(path: Path) -> None:
    times, ids, prep = [], [], []
    for day in range(4):
        for hour in (1, 7, 13, 19):
            for rid in (1, 2, 3):
                times.append(DAY + timedelta(days=day, hours=hour, minutes=rid))
                ids.append(rid)
                prep.append(10.0 * rid + day + hour / 7)
    pq.write_table(
        pa.table(
            {"ordered_at": pa.array(times, pa.timestamp("us", tz="UTC")), "restaurant_id": ids, "prep_time": prep}
        ),
        path,
    )


def group(path: Path, **transform: Any) -> BatchFeatureGroup:
    return BatchFeatureGroup(
        name="daily_prep",
        entity="restaurant",
        max_age=timedelta(days=2),
        features=[Feature(name="avg_prep", dtype=ValueType.float), Feature(name="n_orders", dtype=ValueType.int)],
        source=Source(path=str(path), timestamp_column="ordered_at"),
        **transform,
    )


def rows(offline: OfflineStore, schema: GroupSchema) -> list[dict[str, Any]]:
    table = offline.read(schema).sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")])
    out: list[dict[str, Any]] = table.to_pylist()
    return out


def test_exactly_one_transform_with_a_valid_reference(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of transform_sql and transform"):
        group(tmp_path)
    with pytest.raises(ValidationError, match="exactly one of transform_sql and transform"):
        group(tmp_path, transform_sql=SQL, transform="test_python_transform:daily_stats")
    with pytest.raises(ValidationError, match=r"must look like package\.module:function"):
        group(tmp_path, transform="daily_stats")
    by_sql = group(tmp_path, transform_sql=SQL)
    by_function = group(tmp_path, transform="test_python_transform:daily_stats")
    # a SQL group's JSON is what it was before Python transforms existed; each form round-trips
    assert "transform" not in by_sql.model_dump(mode="json")
    assert "transform_sql" not in by_function.model_dump(mode="json")
    assert BatchFeatureGroup.model_validate(by_function.model_dump()) == by_function
    defs = Definitions.model_validate(
        {"project": "eats", "entities": [RESTAURANT.model_dump()], "batch_groups": [by_function.model_dump()]}
    )
    assert defs.batch_groups[0].transform_function() is daily_stats
    with pytest.raises(ValueError, match="has a SQL transform"):
        by_sql.transform_function()


def test_the_function_must_import(tmp_path: Path) -> None:
    with pytest.raises(FunctionError, match="cannot import 'no_such_module_x'"):
        group(tmp_path, transform="no_such_module_x:f").transform_function()
    with pytest.raises(FunctionError, match="has no function 'nope'"):
        group(tmp_path, transform="test_python_transform:nope").transform_function()


def test_a_pandas_function_gives_what_the_sql_gives(tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet")
    by_sql = group(tmp_path / "orders.parquet", transform_sql=SQL)
    schema = by_sql.schema_for("eats", RESTAURANT)
    start, end = DAY + timedelta(days=1), DAY + timedelta(days=4)
    results = {}
    for name, transform in {
        "sql": {"transform_sql": SQL},
        "pandas": {"transform": "test_python_transform:daily_stats"},
        "arrow": {"transform": "test_python_transform:daily_stats_arrow"},
    }.items():
        offline, online = OfflineStore(tmp_path / name), SqliteOnlineStore(tmp_path / f"{name}.db")
        try:
            result = run_batch(group(tmp_path / "orders.parquet", **transform), schema, offline, online, start, end)
            read = online.read([{"restaurant_id": 2}], [schema.ref("avg_prep"), schema.ref("n_orders")], now=end)
            results[name] = (result.rows_offline, result.rows_online, rows(offline, schema), read.values(0))
        finally:
            online.close()
    assert results["sql"][:2] == (9, 3)  # days 2..4 (event_time = next midnight) x 3 restaurants
    assert results["sql"][2][0]["event_time"] == start
    for name in ("pandas", "arrow"):
        assert results[name][:2] == results["sql"][:2]
        assert results[name][2] == [{**r, "avg_prep": pytest.approx(r["avg_prep"])} for r in results["sql"][2]]
        assert results[name][3] == pytest.approx(results["sql"][3])


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ("test_python_transform:returns_a_list", "returned list; on the DuckDB engine it must return a pandas"),
        ("test_python_transform:explodes", r"test_python_transform:explodes failed: RuntimeError\('boom'\)"),
        ("no_such_module_x:f", "cannot import 'no_such_module_x'"),
    ],
)
def test_transform_errors_name_the_transform(tmp_path: Path, transform: str, message: str) -> None:
    write_orders(tmp_path / "orders.parquet")
    fg = group(tmp_path / "orders.parquet", transform=transform)
    offline = OfflineStore(tmp_path / "offline")
    with pytest.raises(PipelineError, match=message):
        run_batch(fg, fg.schema_for("eats", RESTAURANT), offline, None, DAY, DAY + timedelta(days=4))
    assert not offline.has_data(fg.schema_for("eats", RESTAURANT))


def test_engine_choice_of_the_job_and_the_dispatcher(tmp_path: Path) -> None:
    assert BatchParams(group="daily_prep").engine == "duckdb"
    with pytest.warns(NaiveTimestampWarning, match="start/end 2026-11-01T00:00:00 has no time zone"):
        naive = BatchParams.model_validate({"group": "daily_prep", "start": "2026-11-01T00:00:00"})
    assert naive.start == datetime(2026, 11, 1, tzinfo=UTC)
    rome = BatchParams.model_validate({"group": "daily_prep", "end": "2026-11-01T01:00:00+01:00"})
    assert rome.end == datetime(2026, 11, 1, tzinfo=UTC)
    assert BatchParams(group="daily_prep", engine="spark").engine == "spark"
    with pytest.raises(ValidationError, match="'duckdb' or 'spark'"):
        BatchParams.model_validate({"group": "daily_prep", "engine": "flink"})
    write_orders(tmp_path / "orders.parquet")
    fg = group(tmp_path / "orders.parquet", transform="test_python_transform:daily_stats")
    schema = fg.schema_for("eats", RESTAURANT)
    with pytest.raises(ValueError, match="unknown batch engine 'flink': choose duckdb or spark"):
        run_batch_engine("flink", fg, schema, OfflineStore(tmp_path / "o"), None, DAY, DAY + timedelta(days=1))
    result = run_batch_engine("duckdb", fg, schema, OfflineStore(tmp_path / "o"), None, DAY, DAY + timedelta(days=2))
    assert (result.rows_offline, result.rows_online) == (3, 0)
