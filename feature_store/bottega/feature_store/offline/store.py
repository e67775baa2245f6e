"""Parquet per feature group, in buckets by event time: `<root>/<group table>/<bucket>/part-<time>-<uuid>.parquet`.

A bucket is a day (`event_date=YYYY-MM-DD`), a month (`event_month=YYYY-MM`) or a past year (`event_year=YYYY`),
sized by the density of the rows that create it (`offline.buckets`), so a backfill of years of thin history writes
a few files and costs what its rows cost, not what its days cost; dense data, streamed rows and data written before
months and years existed stay in day buckets.

`append` adds files (cheap: what the streaming pipeline does per batch); `upsert` merges the touched buckets with
the new rows in one DuckDB query and one partitioned write, so that each (entity keys, event_time) appears once, the
new row winning: running the same upsert twice changes nothing (what batch pipelines do). Within one batch,
duplicates keep their last occurrence. Files are named with a time-sortable prefix and readers (`read`, the
point-in-time joins) take the latest-written row of each (entity keys, event_time), so appending a correction or
re-appending a batch never changes what is read. `compact` folds a bucket's files into one with those same rows,
keeping the file count of appended buckets small; it is safe beside appends (see there) and beside another
compaction (a lock file per group: the second one skips).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottega.core.extras import require
from bottega.feature_store import duck
from bottega.feature_store.offline import buckets
from bottega.feature_store.types import GroupSchema, ValueType

ARROW_TYPES = {"int": "int64", "float": "float64", "string": "string", "bool": "bool"}


class OfflineStore:
    def __init__(
        self,
        root: str | Path,
        *,
        dense_rows_per_day: int = buckets.DENSE_ROWS_PER_DAY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        require("pyarrow", "spark")
        self.root = Path(root).expanduser()  # "~/.bottega/offline" as the docs write it
        self.dense_rows_per_day = dense_rows_per_day
        self.clock = clock  # which years are past (only those become year buckets)

    def group_dir(self, schema: GroupSchema) -> Path:
        return self.root / schema.table_name(limit=200)

    def files_glob(self, schema: GroupSchema) -> str:
        return str(self.group_dir(schema) / "event_*=*" / "*.parquet")

    def has_data(self, schema: GroupSchema) -> bool:
        return any(self.group_dir(schema).glob("event_*=*/*.parquet"))

    def files(self, schema: GroupSchema) -> list[Path]:
        """The group's data files now, sorted (by bucket, then write order)."""
        return sorted(self.group_dir(schema).glob("event_*=*/*.parquet"))

    def bucket_dirs(self, schema: GroupSchema) -> list[Path]:
        return sorted(self.group_dir(schema).glob("event_*=*"))

    @staticmethod
    def unique_files(files: list[Path]) -> bool:
        """Whether these files hold each (entity keys, event_time) at most once: true when no bucket has more than
        one of them and no period has buckets of two sizes, since every file is written without such duplicates
        (`append` de-duplicates its batch, `upsert` and `compact` their bucket) and a key's rows at one time share
        a bucket."""
        parents = [f.parent for f in files]
        return len(set(parents)) == len(parents) and not buckets.overlapping(p.name for p in parents)

    def plan(self, schema: GroupSchema, days: dict[str, int], *, new_periods: bool = True) -> buckets.Plan:
        """The buckets of rows touching `days` (`YYYY-MM-DD` -> rows): see `offline.buckets`. `new_periods=False`
        puts rows of periods without a bucket in day buckets (streamed rows)."""
        return buckets.plan(
            (p.name for p in self.bucket_dirs(schema)),
            days,
            dense_rows_per_day=self.dense_rows_per_day,
            current_year=f"{self.clock():%Y}",
            new_periods=new_periods,
        )

    def swap_in(self, written: Path, directory: Path) -> None:
        """Replace the bucket `directory` by the files of `written` (renamed the store's way), in one rename."""
        staged = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}")
        staged.mkdir(parents=True)
        for part in sorted(written.glob("*.parquet")):
            part.rename(staged / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet")
        retired = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
        if directory.exists():
            directory.rename(retired)
        staged.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)

    def conform(self, schema: GroupSchema, table: Any) -> Any:
        """The rows as a pyarrow Table with the group's columns and types, event_time in UTC microseconds."""
        import pyarrow as pa

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        required = [*schema.key_names, "event_time"]
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise ValueError(f"rows for {schema.name!r} lack columns {missing}")
        event_time = table.column("event_time")
        if not pa.types.is_timestamp(event_time.type) or event_time.type.tz is None:
            raise ValueError(f"`event_time` of {schema.name!r} must be a timezone-aware timestamp column")
        fields = [(n, t) for n, t in (*schema.entity_keys, *schema.features)]
        columns = []
        for name, vtype in fields:
            arrow_type = pa.type_for_alias(ARROW_TYPES[ValueType(vtype).value])
            if name in table.column_names:
                columns.append(table.column(name).cast(arrow_type))
            else:
                columns.append(pa.nulls(table.num_rows, arrow_type))
        columns.append(event_time.cast(pa.timestamp("us", tz="UTC")))
        return pa.table(columns, names=[n for n, _ in fields] + ["event_time"])

    def _write_partition(self, table: Any, directory: Path, name: str | None = None) -> None:
        import pyarrow.parquet as pq

        directory.mkdir(parents=True, exist_ok=True)
        name = name or f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = directory / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(directory / name)

    def _by_bucket(self, schema: GroupSchema, table: Any) -> dict[str, Any]:
        """The rows by bucket folder name: the year's or month's bucket where one exists, else the day's."""
        import pyarrow as pa
        import pyarrow.compute as pc

        days = pc.strftime(table.column("event_time"), format="%Y-%m-%d")
        distinct = sorted(days.unique().to_pylist())
        plan = self.plan(schema, dict.fromkeys(distinct, 0), new_periods=False)
        by_name: dict[str, list[str]] = {}
        for day in distinct:
            by_name.setdefault(buckets.dir_name(plan.label(day)), []).append(day)
        return {name: table.filter(pc.is_in(days, pa.array(group))) for name, group in by_name.items()}

    def dedupe(self, schema: GroupSchema, table: Any) -> Any:
        """One row per (entity keys, event_time) within a batch: the last occurrence wins."""
        import duckdb
        import pyarrow as pa

        keys = ", ".join(f'"{k}"' for k in [*schema.key_names, "event_time"])
        con = duckdb.connect()
        try:
            con.register("batch", table.append_column("__i", pa.array(range(table.num_rows), type=pa.int64())))
            return con.sql(
                f"SELECT * EXCLUDE (__i) FROM batch "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __i DESC) = 1 ORDER BY __i"
            ).to_arrow_table()
        finally:
            con.close()

    def append(self, schema: GroupSchema, rows: Any, *, unique: bool = False) -> int:
        """Add rows (a batch's duplicates on (entity keys, event_time) keep their last occurrence). `unique=True`
        says the caller guarantees no such duplicates (the stream processor's batches): no de-duplication pass."""
        table = self.conform(schema, rows)
        if not unique:
            table = self.dedupe(schema, table)
        for name, part in self._by_bucket(schema, table).items():
            self._write_partition(part, self.group_dir(schema) / name)
        return int(table.num_rows)

    def upsert(self, schema: GroupSchema, rows: Any, *, new_periods: bool = True, con: Any = None) -> int:
        """Write rows so that (entity keys, event_time) stays unique; new rows replace old ones (within the rows,
        the last occurrence wins). One DuckDB query merges the new rows with the stored rows of the buckets they
        touch and one partitioned COPY writes the result, each bucket then swapped into place: a backfill of years
        costs its rows, not its days. `new_periods=False` keeps new periods in day buckets (streamed rows); `con`:
        a UTC DuckDB session to run in (`feature_store.duck`). Returns the number of rows given."""
        import numpy as np
        import pyarrow as pa

        table = self.conform(schema, rows)
        if not table.num_rows:
            return 0
        with duck.session(con) as db:
            db.register("new_rows", table.append_column("__i", pa.array(np.arange(table.num_rows))))
            try:
                counted = db.sql(f"SELECT {buckets.DAY_NUMBER_SQL}, count(*) FROM new_rows GROUP BY ALL").fetchall()
                days = {buckets.day_name(int(day)): int(n) for day, n in counted}
                plan = self.plan(schema, days, new_periods=new_periods)
                labels = sorted({plan.label(d) for d in days})
                numbers, names = buckets.label_days(labels)
                db.register("__labels", pa.table({"__day": pa.array(numbers, pa.int64()), "__bucket": names}))
                group = self.group_dir(schema)
                self._merge_and_write(db, schema, [group / buckets.dir_name(b) for b in labels])
            finally:
                db.unregister("__labels")
                db.unregister("new_rows")
        return int(table.num_rows)

    def _merge_and_write(self, con: Any, schema: GroupSchema, touched: list[Path]) -> None:
        """Merge `new_rows` with the stored rows of the `touched` buckets (the new row winning, the last of equal
        new rows, then the latest-written stored one), label each row with its bucket (a join with `__labels` on
        the day number), write every bucket in one partitioned COPY and swap each into place. New buckets from
        rows without duplicates (a backfill's usual case) skip the de-duplication pass."""
        columns = ", ".join(f'"{c}"' for c in [*schema.key_names, *(n for n, _ in schema.features), "event_time"])
        keys = ", ".join(f'"{k}"' for k in [*schema.key_names, "event_time"])
        old = [f for b in touched if b.is_dir() for f in sorted(b.glob("*.parquet"))]
        rows = "new_rows"
        if old or con.sql(f"SELECT count(*) <> count(DISTINCT ({keys})) FROM new_rows").fetchall()[0][0]:
            sources = [f"SELECT {columns}, 1 AS __src, __i, NULL::VARCHAR AS __file FROM new_rows"]
            if old:
                listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in old)
                sources.append(
                    f"SELECT {columns}, 0 AS __src, 0 AS __i, filename AS __file "
                    f"FROM read_parquet([{listed}], filename = true, hive_partitioning = false)"
                )
            rows = (
                f"(SELECT * FROM ({' UNION ALL BY NAME '.join(sources)}) QUALIFY "
                f"row_number() OVER (PARTITION BY {keys} ORDER BY __src DESC, __i DESC, __file DESC) = 1)"
            )
        merged = f"SELECT {columns}, __bucket FROM {rows} AS t JOIN __labels ON __day = {buckets.DAY_NUMBER_SQL}"
        group = touched[0].parent
        staging = group.parent / f".{group.name}.upsert-{uuid.uuid4().hex[:8]}"
        group.parent.mkdir(parents=True, exist_ok=True)
        try:
            target = str(staging).replace("'", "''")
            con.execute(f"COPY ({merged}) TO '{target}' (FORMAT parquet, PARTITION_BY (__bucket))")
            for written in sorted(staging.glob("__bucket=*")):
                self.swap_in(written, group / buckets.dir_name(written.name.split("=", 1)[1]))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def read(self, schema: GroupSchema) -> Any:
        """The rows of a group, one per (entity keys, event_time), the latest-written winning, as a pyarrow Table
        (empty with the right columns when there is none)."""
        import duckdb

        files = self.files(schema)
        if not files:
            return self.conform(schema, _empty(schema))
        keys = ", ".join(f'"{k}"' for k in [*schema.key_names, "event_time"])
        listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        source = f"read_parquet([{listed}], hive_partitioning = false, filename = true)"
        latest = f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY filename DESC) = 1"
        con = duckdb.connect()
        try:  # one file per partition: (keys, event_time) is unique already, no de-duplication pass
            sql = f"SELECT * EXCLUDE (filename) FROM {source} {'' if self.unique_files(files) else latest}"
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def compact(self, schema: GroupSchema, *, min_files: int = 2) -> int:
        """Fold each date partition holding at least `min_files` files into one file; returns how many were folded.

        The folded file keeps the latest-written row of each (entity keys, event_time) and is named right after the
        newest file it replaces, so a file appended meanwhile (named later) still wins over it, and a reader that
        sees both the old files and the folded one reads the same rows. The old files are removed last."""
        with self._compaction_lock(schema) as locked:
            return self._compact(schema, min_files) if locked else 0

    @contextmanager
    def _compaction_lock(self, schema: GroupSchema) -> Iterator[bool]:
        """An exclusive, non-blocking lock on the group's compaction (several stream workers of one group share
        its files; two compactions of a partition at once would delete each other's inputs): False when another
        process holds it, and that one compacts."""
        directory = self.group_dir(schema)
        if not directory.exists():
            yield True
            return
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, run one compacting worker per group
            yield True
            return
        with open(directory / ".compact.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _compact(self, schema: GroupSchema, min_files: int) -> int:
        import duckdb

        keys = ", ".join(f'"{k}"' for k in [*schema.key_names, "event_time"])
        folded = 0
        for directory in self.bucket_dirs(schema):
            files = sorted(directory.glob("*.parquet"))
            if len(files) < max(min_files, 2):
                continue
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            con = duckdb.connect()
            try:
                merged = con.sql(
                    f"SELECT * EXCLUDE (filename) FROM read_parquet([{listed}], filename = true, "
                    f"hive_partitioning = false) QUALIFY row_number() OVER (PARTITION BY {keys} "
                    f"ORDER BY filename DESC) = 1 ORDER BY {keys}"
                ).to_arrow_table()
            finally:
                con.close()
            self._write_partition(self.conform(schema, merged), directory, name=f"{files[-1].stem}~c.parquet")
            for path in files:
                path.unlink(missing_ok=True)
            folded += len(files)
        return folded


def _empty(schema: GroupSchema) -> Any:
    import pyarrow as pa

    fields = [
        pa.field(n, pa.type_for_alias(ARROW_TYPES[ValueType(t).value]))
        for n, t in (*schema.entity_keys, *schema.features)
    ]
    fields.append(pa.field("event_time", pa.timestamp("us", tz="UTC")))
    return pa.schema(fields).empty_table()
