"""The embedded batch pipeline: compute a range, upsert offline, materialize online; incremental and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bottega.feature_store.batch.duckdb_pipeline import PipelineError, run_batch
from bottega.feature_store.definitions import BatchFeatureGroup, Entity, Feature, Source
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import Status
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import ValueType

DAY = datetime(2026, 11, 1, tzinfo=UTC)
RESTAURANT = Entity(name="restaurant", join_keys={"restaurant_id": ValueType.int})


def orders(path: Path) -> None:
    times, ids, prep = [], [], []
    for day in range(4):
        for hour in range(0, 24, 6):
            for rid in (1, 2):
                times.append(DAY + timedelta(days=day, hours=hour))
                ids.append(rid)
                prep.append(10.0 * rid + day + hour / 100)
    pq.write_table(
        pa.table(
            {"ordered_at": pa.array(times, pa.timestamp("us", tz="UTC")), "restaurant_id": ids, "prep_time": prep}
        ),
        path,
    )


def group(path: Path, sql: str | None = None) -> BatchFeatureGroup:
    return BatchFeatureGroup(
        name="daily_prep",
        entity="restaurant",
        max_age=timedelta(days=2),
        features=[Feature(name="avg_prep", dtype=ValueType.float), Feature(name="n_orders", dtype=ValueType.int)],
        source=Source(path=str(path), timestamp_column="ordered_at"),
        transform_sql=sql
        or (
            "SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time, "
            "avg(prep_time) AS avg_prep, count(*) AS n_orders FROM source GROUP BY ALL"
        ),
    )


def test_incremental_idempotent_and_materialized(tmp_path: Path) -> None:
    orders(tmp_path / "orders.parquet")
    fg = group(tmp_path / "orders.parquet")
    schema = fg.schema_for("eats", RESTAURANT)
    offline, online = OfflineStore(tmp_path / "offline"), SqliteOnlineStore(tmp_path / "online.db")
    stages: list[tuple[str, int]] = []
    first = run_batch(
        fg, schema, offline, online, DAY, DAY + timedelta(days=3), progress=lambda s, n: stages.append((s, n))
    )
    assert (first.rows_offline, first.rows_online) == (4, 2)  # days 2 and 3 (event_time = next midnight) x 2
    assert stages == [("computed", 4), ("offline", 4), ("online", 2)]
    snapshot = offline.read(schema).sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")])
    again = run_batch(fg, schema, offline, online, DAY, DAY + timedelta(days=3))
    assert again.rows_offline == 4
    assert offline.read(schema).sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")]) == snapshot

    run_batch(fg, schema, offline, online, DAY + timedelta(days=3), DAY + timedelta(days=5))
    assert offline.read(schema).num_rows == 8
    now = DAY + timedelta(days=4, hours=1)
    result = online.read([{"restaurant_id": 2}], [schema.ref("avg_prep"), schema.ref("n_orders")], now=now)
    avg, count = result.rows[0].values()
    assert avg.status is Status.FRESH
    assert avg.value == pytest.approx(20.0 + 3 + (0 + 6 + 12 + 18) / 400)
    assert count.value == 4

    run_batch(fg, schema, offline, online, DAY, DAY + timedelta(days=2))  # an older range again: online stays newest
    assert online.read([{"restaurant_id": 2}], [schema.ref("n_orders")], now=now).rows[0][
        schema.ref("n_orders")
    ].event_time == DAY + timedelta(days=4)


def test_pipeline_errors_are_clear(tmp_path: Path) -> None:
    orders(tmp_path / "orders.parquet")
    schema_group = group(tmp_path / "orders.parquet", "SELECT restaurant_id, ordered_at AS event_time FROM source")
    schema = schema_group.schema_for("eats", RESTAURANT)
    offline = OfflineStore(tmp_path / "offline")
    with pytest.raises(PipelineError, match=r"does not return \['avg_prep', 'n_orders'\]"):
        run_batch(schema_group, schema, offline, None, DAY, DAY + timedelta(days=1))
    broken = group(tmp_path / "orders.parquet", "SELECT nope FROM source")
    with pytest.raises(PipelineError, match="transform failed"):
        run_batch(broken, schema, offline, None, DAY, DAY + timedelta(days=1))
    with pytest.raises(PipelineError, match="empty time range"):
        run_batch(group(tmp_path / "orders.parquet"), schema, offline, None, DAY, DAY)
    assert not offline.has_data(schema)


def test_a_value_that_does_not_fit_the_dtype_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    orders(tmp_path / "orders.parquet")
    good = group(tmp_path / "orders.parquet")
    schema = good.schema_for("eats", RESTAURANT)
    offline = OfflineStore(tmp_path / "offline")
    run_batch(good, schema, offline, None, DAY, DAY + timedelta(days=5))
    before = offline.read(schema).sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")])
    fractional = group(
        tmp_path / "orders.parquet",
        "SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time, "
        "avg(prep_time) AS avg_prep, count(*) / 8 AS n_orders FROM source GROUP BY ALL",
    )
    with pytest.raises(PipelineError) as refused:
        run_batch(fractional, schema, offline, None, DAY, DAY + timedelta(days=5))
    message = str(refused.value)
    for part in ("'daily_prep'", "'n_orders'", "declared int", "double", "0.5", "CAST(n_orders AS BIGINT)", "float"):
        assert part in message
    assert "ArrowInvalid" not in message
    after = offline.read(schema).sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")])
    assert after == before


def test_the_result_carries_the_newest_event_time(tmp_path: Path) -> None:
    orders(tmp_path / "orders.parquet")
    fg = group(tmp_path / "orders.parquet")
    schema = fg.schema_for("eats", RESTAURANT)
    offline = OfflineStore(tmp_path / "offline")
    result = run_batch(fg, schema, offline, None, DAY, DAY + timedelta(days=3))
    assert result.last_event_time == DAY + timedelta(days=2)
    empty = run_batch(fg, schema, offline, None, DAY + timedelta(days=30), DAY + timedelta(days=31))
    assert (empty.rows_offline, empty.last_event_time) == (0, None)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Rome", "+05:30", None])
def test_pandas_written_sources_in_every_unit_and_zone(tmp_path: Path, unit: str, zone: str | None) -> None:
    """pandas writes datetime64[ns, UTC] by default: such a source (and s/ms/us units, other zones, naive times
    read as UTC) gives the same rows as the UTC-microsecond source, filtered on the same instants."""
    import warnings

    from bottega.core.timestamps import NaiveTimestampWarning

    orders(tmp_path / "reference.parquet")
    frame = pq.read_table(tmp_path / "reference.parquet").to_pandas()
    at = frame["ordered_at"].dt.tz_convert(zone) if zone else frame["ordered_at"].dt.tz_localize(None)
    frame["ordered_at"] = at.astype(f"datetime64[{unit}, {zone}]" if zone else f"datetime64[{unit}]")
    frame.to_parquet(tmp_path / "pandas.parquet")  # pandas' own writer, as a user's notebook would
    sql = "SELECT restaurant_id, ordered_at AS event_time, prep_time AS avg_prep, 1 AS n_orders FROM source"
    start, end = DAY + timedelta(days=1, hours=3), DAY + timedelta(days=3)
    results = {}
    for name in ("reference", "pandas"):
        fg = group(tmp_path / f"{name}.parquet", sql)
        schema = fg.schema_for("eats", RESTAURANT)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_batch(fg, schema, OfflineStore(tmp_path / name), None, start, end)
        naive = [w for w in caught if issubclass(w.category, NaiveTimestampWarning)]
        assert bool(naive) == (name == "pandas" and zone is None)
        results[name] = OfflineStore(tmp_path / name).read(schema).sort_by([("event_time", "ascending")])
    assert results["pandas"].num_rows == 2 * 7  # 06:00 on day 1 .. 18:00 on day 2, two restaurants
    assert results["pandas"].equals(results["reference"])


@pytest.mark.parametrize("zone", ["UTC", "Europe/Rome", None])
def test_nanosecond_sources_reach_the_sql_as_timestamps_duckdb_functions_take(tmp_path: Path, zone: str | None) -> None:
    """DuckDB reads pandas' default `datetime64[ns, UTC]` as TIMESTAMPTZ_NS, which `date_trunc` refuses: the source
    view reads nanoseconds as microseconds, so the docs' daily SQL binds at apply time and runs, equal to a
    microsecond source."""
    import warnings

    from bottega.feature_store.batch.checks import check_transform

    orders(tmp_path / "reference.parquet")
    frame = pq.read_table(tmp_path / "reference.parquet").to_pandas()
    at = frame["ordered_at"].dt.tz_convert(zone) if zone else frame["ordered_at"].dt.tz_localize(None)
    frame["ordered_at"] = at.astype(f"datetime64[ns, {zone}]" if zone else "datetime64[ns]")
    frame.to_parquet(tmp_path / "pandas.parquet")
    results = {}
    for name in ("reference", "pandas"):
        fg = group(tmp_path / f"{name}.parquet")  # date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time
        schema = fg.schema_for("eats", RESTAURANT)
        assert check_transform(fg, schema) is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_batch(fg, schema, OfflineStore(tmp_path / name), None, DAY, DAY + timedelta(days=5))
        results[name] = (
            OfflineStore(tmp_path / name)
            .read(schema)
            .sort_by([("restaurant_id", "ascending"), ("event_time", "ascending")])
        )
    assert results["pandas"].num_rows == 8
    assert results["pandas"].equals(results["reference"])  # the same instants, cut into the same UTC days
