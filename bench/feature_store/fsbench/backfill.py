"""Backfill cost: one batch group computed over its whole history, the same rows spread over few or many days.

For each span (default 100 and 4,000 days of the same N rows) it times, in this process and this run:
- `ours`: `run_batch` over the whole range into an empty offline store (what `bottega features run` does);
- `floor`: the same transform as one DuckDB query plus one partitioned COPY into the same buckets (the least any
  engine writing this layout can do);
- `daily`: the same `run_batch` into a store that keeps every day in its own bucket (the layout before months);
- `incremental`: one more day of rows on top of the backfill, as the nightly run does, in both layouts.
and reports the offline bytes against the same rows in one Parquet file. Each time is the median of `repeats`
runs, each into a fresh folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2006, 1, 1, tzinfo=UTC)
SQL = (
    "SELECT user_id, ts AS event_time, score AS last_score, CAST(score * 10 AS BIGINT) AS score_bin, "
    "score > 3.5 AS liked FROM source"
)


@dataclass(frozen=True)
class Span:
    days: int
    ours_s: float
    floor_s: float
    daily_s: float
    incremental_s: float
    incremental_daily_s: float
    ours_bytes: int
    one_file_bytes: int
    daily_bytes: int
    files: int
    daily_files: int


def write_source(path: Path, rows: int, days: int, users: int = 5_000, seed: int = 0) -> None:
    """`rows` interactions (user, time, score) at random instants over `days` days from 2006-01-01, as pandas
    writes them (nanoseconds, UTC)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    micros = np.sort(rng.integers(0, days * 86_400 * 10**6, rows))  # microseconds: (user, time) stays unique
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(1, users + 1, rows),
            "ts": pd.Timestamp(START) + pd.to_timedelta(micros, unit="us"),
            "score": rng.integers(1, 11, rows) / 2.0,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)


def group_and_schema(source: Path) -> tuple[Any, Any]:
    from bottega.feature_store.definitions import BatchFeatureGroup, Entity, Feature, Source
    from bottega.feature_store.types import ValueType

    group = BatchFeatureGroup(
        name="user_history",
        entity="user",
        max_age=timedelta(days=365),
        features=[
            Feature(name="last_score", dtype=ValueType.float),
            Feature(name="score_bin", dtype=ValueType.int),
            Feature(name="liked", dtype=ValueType.bool),
        ],
        source=Source(path=str(source), timestamp_column="ts"),
        transform_sql=SQL,
    )
    return group, group.schema_for("bench", Entity(name="user", join_keys={"user_id": ValueType.int}))


def folder_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts[-2:])]
    return sum(p.stat().st_size for p in files), len(files)


def median_time(repeats: int, prepare: Callable[[], Any], work: Callable[[Any], None]) -> float:
    times = []
    for _ in range(repeats):
        state = prepare()
        started = time.perf_counter()
        work(state)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def floor(source: Path, target: Path, end: datetime, labels: list[str]) -> None:
    """One query and one partitioned COPY of its result into the same buckets as the store's (`labels`: the
    store's bucket labels, joined on the day number as the store does)."""
    import duckdb
    import pyarrow as pa

    from bottega.feature_store.batch.duckdb_pipeline import create_source_view
    from bottega.feature_store.offline.buckets import DAY_NUMBER_SQL, label_days

    group, _schema = group_and_schema(source)
    numbers, names = label_days(labels)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_source_view(con, group)
        con.register("labels", pa.table({"day": pa.array(numbers, pa.int64()), "bucket": names}))
        con.execute(
            f"COPY (SELECT t.*, bucket FROM ({SQL}) AS t JOIN labels ON day = {DAY_NUMBER_SQL} "
            f"WHERE event_time >= $start AND event_time < $end) TO '{target}' (FORMAT parquet, PARTITION_BY (bucket))",
            {"start": START, "end": end},
        )
    finally:
        con.close()


def one_file_bytes(source: Path, work: Path, end: datetime) -> int:
    import duckdb

    from bottega.feature_store.batch.duckdb_pipeline import create_source_view

    group, _schema = group_and_schema(source)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_source_view(con, group)
        target = work / "one.parquet"
        con.execute(
            f"COPY (SELECT * FROM ({SQL}) WHERE event_time >= $start AND event_time < $end) TO '{target}' "
            "(FORMAT parquet)",
            {"start": START, "end": end},
        )
        return target.stat().st_size
    finally:
        con.close()


def measure_span(work: Path, rows: int, days: int, repeats: int) -> Span:
    import warnings

    from bottega.feature_store.batch.duckdb_pipeline import run_batch
    from bottega.feature_store.offline.store import OfflineStore

    warnings.simplefilter("ignore")
    source = work / f"source-{days}.parquet"
    write_source(source, rows, days)
    group, schema = group_and_schema(source)
    end = START + timedelta(days=days)
    runs = work / f"runs-{days}"

    def fresh(daily: bool = False) -> OfflineStore:
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir(parents=True)
        return OfflineStore(runs / "offline", **({"dense_rows_per_day": 0} if daily else {}))

    def backfill(store: OfflineStore) -> None:
        run_batch(group, schema, store, None, START, end)

    ours = median_time(repeats, fresh, backfill)
    ours_bytes, files = folder_bytes(runs / "offline")
    prefixes = {"event_year": "y", "event_month": "m", "event_date": "d"}
    written = {tuple(p.parent.name.split("=", 1)) for p in (runs / "offline").rglob("*.parquet")}
    labels = sorted(prefixes[kind] + value for kind, value in written)
    floor_s = median_time(
        repeats, lambda: fresh().root.parent / "floor", lambda target: floor(source, target, end, labels)
    )
    daily = median_time(repeats, lambda: fresh(daily=True), backfill)
    daily_bytes, daily_files = folder_bytes(runs / "offline")
    # one more day of rows, on top of each layout's backfill
    nightly = work / f"nightly-{days}.parquet"
    write_source(nightly, max(rows // days, 1), days + 1, seed=1)
    next_group, _ = group_and_schema(nightly)
    day_after = (end, end + timedelta(days=1))

    def prepared(daily_layout: bool) -> OfflineStore:
        store = fresh(daily=daily_layout)
        backfill(store)
        return store

    def incremental(store: OfflineStore) -> None:
        run_batch(next_group, schema, store, None, *day_after)

    incremental_s = median_time(repeats, lambda: prepared(False), incremental)
    incremental_daily_s = median_time(repeats, lambda: prepared(True), incremental)
    shutil.rmtree(runs, ignore_errors=True)
    return Span(
        days=days,
        ours_s=ours,
        floor_s=floor_s,
        daily_s=daily,
        incremental_s=incremental_s,
        incremental_daily_s=incremental_daily_s,
        ours_bytes=ours_bytes,
        one_file_bytes=one_file_bytes(source, work, end),
        daily_bytes=daily_bytes,
        files=files,
        daily_files=daily_files,
    )


def run(work: Path, rows: int = 100_000, spans: tuple[int, ...] = (100, 4_000), repeats: int = 3) -> dict[str, Any]:
    """Every span measured in this run, with the issue's ratios (first span against the last)."""
    results = [measure_span(work, rows, days, repeats) for days in spans]
    short, long = results[0], results[-1]
    return {
        "rows": rows,
        "spans": [vars(r) for r in results],
        "ratios": {
            f"backfill_{long.days}d_vs_{short.days}d": long.ours_s / short.ours_s,
            "backfill_vs_floor": max(r.ours_s / r.floor_s for r in results),
            "bytes_vs_one_file": max(r.ours_bytes / r.one_file_bytes for r in results),
            "daily_layout_vs_ours": long.daily_s / long.ours_s,
            "incremental_vs_daily_layout": max(r.incremental_s / r.incremental_daily_s for r in results),
        },
        "targets": {f"backfill_{long.days}d_vs_{short.days}d": 1.5, "backfill_vs_floor": 2.0, "bytes_vs_one_file": 2.0},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--spans", default="100,4000", help="comma-separated day spans of the same rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[2] / ".data" / "backfill")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    result = run(args.work, args.rows, tuple(int(s) for s in args.spans.split(",")), args.repeats)
    shutil.rmtree(args.work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
