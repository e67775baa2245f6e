"""Parquet per feature group under `<root>/<group table>/event_date=YYYY-MM-DD/part-<time>-<uuid>.parquet`.

`append` adds files (cheap: what the streaming pipeline does per batch); `upsert` rewrites the touched date
partitions so that each (entity keys, event_time) appears once, the new row winning: running the same upsert twice
changes nothing (what batch pipelines do). Within one batch, duplicates keep their last occurrence. Files are named
with a time-sortable prefix and readers (`read`, the point-in-time joins) take the latest-written row of each
(entity keys, event_time), so appending a correction or re-appending a batch never changes what is read.
`compact` folds a partition's files into one with those same rows, keeping the file count of appended partitions
small; it is safe beside appends (see there) and beside another compaction (a lock file per group: the second one
skips).
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bottega.core.extras import require
from bottega.feature_store.types import GroupSchema, ValueType

ARROW_TYPES = {"int": "int64", "float": "float64", "string": "string", "bool": "bool"}


class OfflineStore:
    def __init__(self, root: str | Path) -> None:
        require("pyarrow", "spark")
        self.root = Path(root).expanduser()  # "~/.bottega/offline" as the docs write it

    def group_dir(self, schema: GroupSchema) -> Path:
        return self.root / schema.table_name(limit=200)

    def files_glob(self, schema: GroupSchema) -> str:
        return str(self.group_dir(schema) / "event_date=*" / "*.parquet")

    def has_data(self, schema: GroupSchema) -> bool:
        return any(self.group_dir(schema).glob("event_date=*/*.parquet"))

    def files(self, schema: GroupSchema) -> list[Path]:
        """The group's data files now, sorted (by partition, then write order)."""
        return sorted(self.group_dir(schema).glob("event_date=*/*.parquet"))

    @staticmethod
    def unique_files(files: list[Path]) -> bool:
        """Whether these files hold each (entity keys, event_time) at most once: true when no date partition has
        more than one of them, since every file is written without such duplicates (`append` de-duplicates its
        batch, `upsert` and `compact` their partition) and a key's rows at one time share a partition."""
        parents = [f.parent for f in files]
        return len(set(parents)) == len(parents)

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

    def _by_date(self, table: Any) -> dict[str, Any]:
        import pyarrow.compute as pc

        dates = pc.strftime(table.column("event_time"), format="%Y-%m-%d")
        out = {}
        for day in sorted(set(dates.to_pylist())):
            out[day] = table.filter(pc.equal(dates, day))
        return out

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
        for day, part in self._by_date(table).items():
            self._write_partition(part, self.group_dir(schema) / f"event_date={day}")
        return int(table.num_rows)

    def upsert(self, schema: GroupSchema, rows: Any) -> int:
        """Write rows so that (entity keys, event_time) stays unique; new rows replace old ones."""
        import duckdb
        import pyarrow.parquet as pq

        table = self.dedupe(schema, self.conform(schema, rows))
        keys = ", ".join(f'"{k}"' for k in [*schema.key_names, "event_time"])
        for day, new in self._by_date(table).items():
            directory = self.group_dir(schema) / f"event_date={day}"
            old_files = sorted(directory.glob("*.parquet"))
            con = duckdb.connect()
            try:
                con.register("new_rows", new)
                sources = ["SELECT *, 1 AS __src, 0 AS __ord FROM new_rows"]
                for i, path in enumerate(old_files):
                    con.register(f"old_{i}", pq.read_table(path))
                    sources.append(f"SELECT *, 0 AS __src, {i + 1} AS __ord FROM old_{i}")
                merged = con.sql(
                    f"SELECT * EXCLUDE (__src, __ord) FROM ({' UNION ALL BY NAME '.join(sources)}) "
                    f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __src DESC, __ord DESC) = 1 "
                    f"ORDER BY {keys}"
                ).to_arrow_table()
            finally:
                con.close()
            self._replace_partition(directory, self.conform(schema, merged))
        return int(table.num_rows)

    def _replace_partition(self, directory: Path, table: Any) -> None:
        staging = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}")
        self._write_partition(table, staging)
        retired = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
        if directory.exists():
            directory.rename(retired)
        staging.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)

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
        for directory in sorted(self.group_dir(schema).glob("event_date=*")):
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
