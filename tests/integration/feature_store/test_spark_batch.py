"""The Spark batch engine (real local[2] Spark, real Cassandra) gives what the DuckDB engine gives on the same
definitions and data: the same offline rows in the same store layout, the same online values; it is incremental and
idempotent, shares the offline files with the DuckDB engine, and runs a PySpark function transform."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import migrated_sqlite

from bottega.feature_store.batch import spark_pipeline
from bottega.feature_store.batch.duckdb_pipeline import PipelineError, run_batch
from bottega.feature_store.batch.spark_pipeline import run_batch_spark
from bottega.feature_store.definitions import BatchFeatureGroup, Entity, Feature, Source
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore
from bottega.feature_store.online.cassandra import CassandraOnlineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import GroupSchema, ValueType

pytestmark = pytest.mark.spark

# Recent days: the Cassandra store drops values older than twice the max age.
DAY = (datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
RESTAURANT = Entity(name="restaurant", join_keys={"restaurant_id": ValueType.int})
# Runs unchanged on DuckDB and on Spark SQL.
PORTABLE_SQL = (
    "SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time, "
    "avg(prep_time) AS avg_prep, count(*) AS n_orders, max(cuisine) AS cuisine, bool_or(late) AS any_late "
    "FROM source WHERE restaurant_id IS NOT NULL GROUP BY ALL"
)
FEATURES = [
    Feature(name="avg_prep", dtype=ValueType.float),
    Feature(name="n_orders", dtype=ValueType.int),
    Feature(name="cuisine", dtype=ValueType.string),
    Feature(name="any_late", dtype=ValueType.bool),
]


def daily_stats(source: Any) -> Any:
    """The PySpark version of PORTABLE_SQL (used as `transform: test_spark_batch:daily_stats`)."""
    from pyspark.sql import functions as F

    day = F.date_trunc("day", "ordered_at") + F.expr("INTERVAL 1 DAY")
    return (
        source.where(F.col("restaurant_id").isNotNull())
        .groupBy("restaurant_id", day.alias("event_time"))
        .agg(
            F.avg("prep_time").alias("avg_prep"),
            F.count("*").alias("n_orders"),
            F.max("cuisine").alias("cuisine"),
            F.bool_or("late").alias("any_late"),
        )
    )


def not_a_frame(source: Any) -> Any:
    return [1, 2, 3]


def write_orders(path: Path, *, seed: int, days: int = 6, restaurants: int = 7) -> None:
    rng = random.Random(seed)
    rows = []
    for _ in range(days * restaurants * 6):
        at = DAY + timedelta(seconds=rng.randrange(days * 86_400))
        rid = rng.choice([*range(1, restaurants + 1), None])
        rows.append((at, rid, rng.choice([None, round(rng.uniform(5, 40), 3)]), rng.choice(["pizza", "sushi"])))
    pq.write_table(
        pa.table(
            {
                "ordered_at": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
                "restaurant_id": pa.array([r[1] for r in rows], pa.int32()),
                "prep_time": [r[2] for r in rows],
                "cuisine": [r[3] for r in rows],
                "late": [rng.random() < 0.2 for _ in rows],
            }
        ),
        path,
    )


def make_group(source: Path, *, sql: str | None = PORTABLE_SQL, transform: str | None = None) -> BatchFeatureGroup:
    return BatchFeatureGroup(
        name="daily_prep",
        entity="restaurant",
        max_age=timedelta(days=2),
        features=FEATURES,
        source=Source(path=str(source), timestamp_column="ordered_at"),
        transform_sql=sql,
        transform=transform,
    )


def offline_rows(offline: OfflineStore, schema: GroupSchema) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = offline.read(schema).to_pylist()
    rows.sort(key=lambda r: (r["restaurant_id"], r["event_time"]))
    assert len({(r["restaurant_id"], r["event_time"]) for r in rows}) == len(rows), "one row per (entity, time)"
    return rows


def online_values(online: OnlineStore, schema: GroupSchema, ids: list[int]) -> list[dict[str, Any]]:
    refs = [schema.ref(f.name) for f in FEATURES]
    result = online.read([{"restaurant_id": i} for i in ids], refs, timeout=10, now=DAY + timedelta(days=7))
    return [
        {"event_time": next(iter(row.values())).event_time, **{r.feature: fv.value for r, fv in row.items()}}
        for row in result.rows
    ]


def close(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its float average compared within 1e-12 (the engines sum in different orders)."""
    avg = row["avg_prep"]
    return {**row, "avg_prep": None if avg is None else pytest.approx(avg, rel=1e-12)}


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(r["restaurant_id"], r["event_time"]) for r in got] == [(r["restaurant_id"], r["event_time"]) for r in want]
    assert any(r["avg_prep"] is None for r in want)  # nulls made it through
    for mine, theirs in zip(got, want, strict=True):
        assert mine == close(theirs)


@pytest.fixture
def cassandra(cassandra_hosts: str) -> Iterator[CassandraOnlineStore]:
    host, port = cassandra_hosts.rsplit(":", 1)
    store = CassandraOnlineStore([host], port=int(port), keyspace=f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.drop_keyspace()
        store.close()


def test_spark_equals_duckdb_offline_and_online(spark: Any, cassandra: CassandraOnlineStore, tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet", seed=11)
    group = make_group(tmp_path / "orders.parquet")
    schema = group.schema_for("eats", RESTAURANT)
    start, end = DAY + timedelta(days=1), DAY + timedelta(days=6)
    duck_offline, duck_online = OfflineStore(tmp_path / "duck"), SqliteOnlineStore(tmp_path / "duck.db")
    spark_offline = OfflineStore(tmp_path / "spark")
    stages: list[tuple[str, int]] = []
    try:
        duck = run_batch(group, schema, duck_offline, duck_online, start, end)
        mine = run_batch_spark(
            spark, group, schema, spark_offline, cassandra, start, end, progress=lambda s, n: stages.append((s, n))
        )
        assert (mine.rows_offline, mine.rows_online) == (duck.rows_offline, duck.rows_online)
        assert duck.rows_offline > 25
        assert stages == [("computed", duck.rows_offline), ("offline", duck.rows_offline), ("online", 7)]
        want = offline_rows(duck_offline, schema)
        assert_same_rows(offline_rows(spark_offline, schema), want)
        assert {r["event_time"] for r in want} == {DAY + timedelta(days=d) for d in range(1, 6)}
        # the same store layout: the same buckets (sparse rows: a month each), files named part-<time>-<id>.parquet
        layout = sorted(p.relative_to(spark_offline.group_dir(schema)).parent for p in _files(spark_offline, schema))
        assert layout == sorted(
            p.relative_to(duck_offline.group_dir(schema)).parent for p in _files(duck_offline, schema)
        )
        assert all(
            p.name.startswith("part-") and len(p.name.split("-")[1]) == 20 for p in _files(spark_offline, schema)
        )
        ids = list(range(1, 8))
        got, expected = online_values(cassandra, schema, ids), online_values(duck_online, schema, ids)
        assert [g["event_time"] for g in got] == [DAY + timedelta(days=5)] * 7
        for mine_row, duck_row in zip(got, expected, strict=True):
            assert mine_row == close(duck_row)
    finally:
        duck_online.close()


def _files(offline: OfflineStore, schema: GroupSchema) -> list[Path]:
    return offline.files(schema)


def test_incremental_idempotent_and_shared_with_duckdb(spark: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet", seed=12)
    group = make_group(tmp_path / "orders.parquet")
    schema = group.schema_for("eats", RESTAURANT)
    offline, online = OfflineStore(tmp_path / "offline"), SqliteOnlineStore(tmp_path / "online.db")
    whole = OfflineStore(tmp_path / "whole")
    try:
        run_batch(group, schema, whole, None, DAY, DAY + timedelta(days=7))  # one range, on DuckDB
        # two ranges, the second overlapping the first, one of them computed by DuckDB in the same store
        run_batch(group, schema, offline, online, DAY, DAY + timedelta(days=4))
        run_batch_spark(spark, group, schema, offline, online, DAY + timedelta(days=3), DAY + timedelta(days=7))
        assert_same_rows(offline_rows(offline, schema), offline_rows(whole, schema))
        snapshot, values = offline_rows(offline, schema), online_values(online, schema, [1, 2, 3])
        again = run_batch_spark(spark, group, schema, offline, online, DAY + timedelta(days=3), DAY + timedelta(days=7))
        assert again.rows_offline > 0
        assert offline_rows(offline, schema) == snapshot  # re-running a range changes nothing
        assert not [p for p in offline.root.rglob("*") if p.name.startswith(".")]  # no staging left behind
        # an older range run again never replaces newer online values
        run_batch_spark(spark, group, schema, offline, online, DAY, DAY + timedelta(days=3))
        assert offline_rows(offline, schema) == snapshot
        assert online_values(online, schema, [1, 2, 3]) == values
        assert {v["event_time"] for v in values} == {DAY + timedelta(days=6)}
    finally:
        online.close()


def test_pyspark_function_transform_and_clear_errors(spark: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet", seed=13)
    by_sql = make_group(tmp_path / "orders.parquet")
    by_function = make_group(tmp_path / "orders.parquet", sql=None, transform="test_spark_batch:daily_stats")
    schema = by_sql.schema_for("eats", RESTAURANT)
    start, end = DAY, DAY + timedelta(days=7)
    run_batch_spark(spark, by_sql, schema, OfflineStore(tmp_path / "sql"), None, start, end)
    result = run_batch_spark(spark, by_function, schema, OfflineStore(tmp_path / "fn"), None, start, end)
    assert result.rows_offline > 25
    assert offline_rows(OfflineStore(tmp_path / "fn"), schema) == offline_rows(OfflineStore(tmp_path / "sql"), schema)

    bad = make_group(tmp_path / "orders.parquet", sql=None, transform="test_spark_batch:not_a_frame")
    with pytest.raises(PipelineError, match="must return a PySpark DataFrame"):
        run_batch_spark(spark, bad, schema, OfflineStore(tmp_path / "bad"), None, start, end)
    missing = make_group(tmp_path / "orders.parquet", sql="SELECT restaurant_id, ordered_at AS event_time FROM source")
    with pytest.raises(PipelineError, match=r"does not return \['avg_prep', 'n_orders', 'cuisine', 'any_late'\]"):
        run_batch_spark(spark, missing, schema, OfflineStore(tmp_path / "bad"), None, start, end)
    broken = make_group(tmp_path / "orders.parquet", sql="SELECT nope FROM source")
    with pytest.raises(PipelineError, match="source or transform failed"):
        run_batch_spark(spark, broken, schema, OfflineStore(tmp_path / "bad"), None, start, end)
    naive = make_group(
        tmp_path / "orders.parquet",
        sql="SELECT *, to_timestamp_ntz(ordered_at) AS event_time, "
        "1.0 AS avg_prep, 1 AS n_orders, 'x' AS cuisine, true AS any_late FROM source",
    )
    with pytest.raises(PipelineError, match="timezone-aware"):
        run_batch_spark(spark, naive, schema, OfflineStore(tmp_path / "bad"), None, start, end)
    assert not OfflineStore(tmp_path / "bad").has_data(schema)


def test_key_columns_rename_the_transforms_key_on_spark_as_on_duckdb(spark: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet", seed=14)
    plain = make_group(tmp_path / "orders.parquet")
    camel = make_group(
        tmp_path / "orders.parquet",
        sql=f"SELECT * EXCEPT (restaurant_id), restaurant_id AS restaurantId FROM ({PORTABLE_SQL})",
    ).model_copy(update={"key_columns": {"restaurant_id": "restaurantId"}})
    schema = plain.schema_for("eats", RESTAURANT)
    start, end = DAY, DAY + timedelta(days=7)
    run_batch_spark(spark, plain, schema, OfflineStore(tmp_path / "plain"), None, start, end)
    run_batch_spark(spark, camel, schema, OfflineStore(tmp_path / "spark"), None, start, end)
    want = offline_rows(OfflineStore(tmp_path / "plain"), schema)
    assert offline_rows(OfflineStore(tmp_path / "spark"), schema) == want
    run_batch(camel, schema, OfflineStore(tmp_path / "duck"), None, start, end)
    assert_same_rows(offline_rows(OfflineStore(tmp_path / "duck"), schema), want)
    wrong = camel.model_copy(update={"key_columns": {"restaurant_id": "restId"}})
    with pytest.raises(PipelineError, match="no column 'restId'"):
        run_batch_spark(spark, wrong, schema, OfflineStore(tmp_path / "bad"), None, start, end)


def job_worker(api: Any) -> Any:
    from bottega.api.jobs.background import LocalBackend
    from bottega.api.jobs.runtime import JobsRuntime, JobsSettings
    from bottega.api.jobs.types import JobTypeRegistry
    from bottega.api.jobs.worker import Worker
    from bottega.sdk import Client

    registry = JobTypeRegistry.discover()
    backend = LocalBackend(api.client.app.state.sessionmaker, JobsRuntime(registry, JobsSettings()))
    return Worker(
        backend, registry, name="spark-test", client_factory=lambda: Client(token=api.admin_token, http=api.client)
    )


def test_the_cli_runs_a_registered_group_on_spark(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api_harness import harness
    from cli_harness import cli_invoker

    write_orders(tmp_path / "orders.parquet", seed=14)
    definitions = {
        "project": "eats",
        "entities": [RESTAURANT.model_dump(mode="json")],
        "batch_groups": [make_group(tmp_path / "orders.parquet").model_dump(mode="json")],
    }
    (tmp_path / "features.json").write_text(json.dumps(definitions))
    url = migrated_sqlite(tmp_path)
    monkeypatch.setenv("BOTTEGA_OFFLINE_URL", str(tmp_path / "offline"))
    monkeypatch.setenv("BOTTEGA_ONLINE_STORE", "sqlite")
    monkeypatch.setenv("BOTTEGA_ONLINE_SQLITE_PATH", str(tmp_path / "online.db"))
    with harness(url, tmp_path / "home") as api:
        token = api.project("eats", owner="alice")
        cli = cli_invoker(api, monkeypatch, "features", token)
        cli("apply", str(tmp_path / "features.json"))
        window = ["--start", DAY.isoformat(), "--end", (DAY + timedelta(days=7)).isoformat()]
        ran = cli("run", "eats", "daily_prep", *window, "--engine", "spark")
        assert ran["rows_offline"] > 25
        assert ran["rows_online"] == 7
        wrong = cli("run", "eats", "daily_prep", *window, "--engine", "flink", as_json=False, code=2)
        assert "choose duckdb or spark" in wrong
        # the features.batch job on Spark, run by a worker in another thread (it reuses the running session)
        params = {"group": "daily_prep", "start": window[1], "end": window[3], "engine": "spark"}
        job = api.sdk(token).jobs.submit("eats", "features.batch", params)
        thread = threading.Thread(target=job_worker(api).run, kwargs={"once": True})
        thread.start()
        thread.join(120)
        done = api.sdk(token).jobs.get("eats", job.id)
        assert done.status == "succeeded", done.error
        assert done.result == {**done.result, "engine": "spark", "rows_offline": ran["rows_offline"]}
    assert spark.range(3).count() == 3  # the shared session still runs
    schema = make_group(tmp_path / "orders.parquet").schema_for("eats", RESTAURANT)
    duck = OfflineStore(tmp_path / "duck")
    run_batch(make_group(tmp_path / "orders.parquet"), schema, duck, None, DAY, DAY + timedelta(days=7))
    assert_same_rows(offline_rows(OfflineStore(tmp_path / "offline"), schema), offline_rows(duck, schema))


@pytest.mark.parametrize("zone", ["UTC", None])
def test_pandas_nanosecond_sources_read_as_duckdb_reads_them(spark: Any, tmp_path: Path, zone: str | None) -> None:
    """pandas writes `datetime64[ns, UTC]` by default, a Parquet type Spark refuses (PARQUET_TYPE_ILLEGAL): the
    engine reads it as microseconds, so the docs' daily SQL gives DuckDB's rows. A naive column stays naive."""
    write_orders(tmp_path / "reference.parquet", seed=5)
    frame = pq.read_table(tmp_path / "reference.parquet").to_pandas()
    at = frame["ordered_at"] if zone else frame["ordered_at"].dt.tz_localize(None)
    frame["ordered_at"] = at.astype("datetime64[ns, UTC]" if zone else "datetime64[ns]")
    frame.to_parquet(tmp_path / "pandas.parquet")
    source = spark_pipeline.read_source(spark_pipeline.pipeline_session(spark), make_group(tmp_path / "pandas.parquet"))
    assert source.schema["ordered_at"].dataType.simpleString() == ("timestamp" if zone else "timestamp_ntz")
    assert source.count() == len(frame)
    if zone is None:
        return  # naive: Spark's event_time would be TIMESTAMP_NTZ, which the engine refuses, as documented
    group = make_group(tmp_path / "pandas.parquet")
    schema = group.schema_for("eats", RESTAURANT)
    end = DAY + timedelta(days=7)
    run_batch_spark(spark, group, schema, OfflineStore(tmp_path / "spark"), None, DAY, end)
    run_batch(make_group(tmp_path / "reference.parquet"), schema, OfflineStore(tmp_path / "duckdb"), None, DAY, end)
    assert_same_rows(
        offline_rows(OfflineStore(tmp_path / "spark"), schema), offline_rows(OfflineStore(tmp_path / "duckdb"), schema)
    )


@pytest.mark.parametrize("dense", [None, 3])
def test_both_engines_choose_the_same_buckets(spark: Any, tmp_path: Path, dense: int | None) -> None:
    """Sparse months become one month bucket, dense ones day buckets, on both engines; a later run of another
    density keeps the buckets a month already has; the rows stay equal."""
    write_orders(tmp_path / "orders.parquet", seed=3, days=6, restaurants=7)
    group = make_group(tmp_path / "orders.parquet")
    schema = group.schema_for("eats", RESTAURANT)
    options: dict[str, Any] = {"dense_rows_per_day": dense} if dense else {}
    stores = {name: OfflineStore(tmp_path / name, **options) for name in ("duckdb", "spark")}
    end = DAY + timedelta(days=7)
    run_batch(group, schema, stores["duckdb"], None, DAY, DAY + timedelta(days=3))
    run_batch_spark(spark, group, schema, stores["spark"], None, DAY, DAY + timedelta(days=3))
    run_batch(group, schema, stores["duckdb"], None, DAY + timedelta(days=2), end)
    run_batch_spark(spark, group, schema, stores["spark"], None, DAY + timedelta(days=2), end)
    buckets = {n: sorted(f.parent.name for f in s.files(schema)) for n, s in stores.items()}
    assert buckets["duckdb"] == buckets["spark"]
    kinds = {b.split("=")[0] for b in buckets["duckdb"]}
    assert kinds == {"event_date"} if dense else kinds <= {"event_month", "event_year"}  # ~7 rows a day
    assert len(set(buckets["duckdb"])) == len(buckets["duckdb"])  # one file per bucket
    assert_same_rows(offline_rows(stores["spark"], schema), offline_rows(stores["duckdb"], schema))
