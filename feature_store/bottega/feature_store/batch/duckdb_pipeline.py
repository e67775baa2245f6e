"""The embedded batch pipeline (DuckDB).

`run_batch` computes a batch feature group for `[start, end)`:
1. the source table is exposed to the transform as the view `source` (all of it, so lookback windows work); a
   Python transform (`transform: package.module:function`) gets it as a pandas DataFrame and returns a pandas
   DataFrame or a pyarrow Table;
2. the transform's rows with `start <= event_time < end` are checked against the declared schema;
3. they are upserted into the offline store (idempotent: a re-run of a range changes nothing);
4. when the group is online, the latest row per entity is written to the online store (an older event never
   replaces a newer one there, so re-runs and out-of-order ranges are safe too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bottega.core.keys import rename_to_keys
from bottega.feature_store import duck
from bottega.feature_store.batch.checks import DtypeMismatch, check_dtypes
from bottega.feature_store.definitions import BatchFeatureGroup
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore, as_utc
from bottega.feature_store.types import GroupSchema

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class BatchResult:
    group: str
    start: datetime
    end: datetime
    rows_offline: int
    rows_online: int
    last_event_time: datetime | None = None
    """the latest event_time of the rows written (None when none were)."""


class PipelineError(ValueError):
    """The source or the transform does not produce what the group declares."""


def _source_sql(group: BatchFeatureGroup) -> str:
    path = group.source.path.replace("'", "''")
    if group.source.format == "csv":
        return f"SELECT * FROM read_csv_auto('{path}')"
    return f"SELECT * FROM read_parquet('{path}')"


NANOSECOND_TIMESTAMPS = {"TIMESTAMPTZ_NS": "TIMESTAMPTZ", "TIMESTAMP_NS": "TIMESTAMP"}


def create_source_view(con: Any, group: BatchFeatureGroup, *, empty: bool = False) -> None:
    """The view `source` the transform reads: the group's file, with nanosecond timestamps (pandas writes
    `datetime64[ns, UTC]` by default) read as microseconds, the stores' unit, so the SQL gets types DuckDB's time
    functions take (`date_trunc` has no TIMESTAMPTZ_NS form). `empty`: no rows (to bind SQL at apply time)."""
    raw = _source_sql(group)
    described = con.execute(f"DESCRIBE {raw}").fetchall()
    casts = [
        f'CAST("{quoted}" AS {NANOSECOND_TIMESTAMPS[kind]}) AS "{quoted}"'
        for quoted, kind in ((str(row[0]).replace('"', '""'), str(row[1])) for row in described)
        if kind in NANOSECOND_TIMESTAMPS
    ]
    select = f"SELECT * REPLACE ({', '.join(casts)}) FROM ({raw})" if casts else raw
    con.execute(f"CREATE VIEW source AS {select}{' LIMIT 0' if empty else ''}")


def _python_transform(con: Any, group: BatchFeatureGroup) -> str:
    """Run the group's Python transform on the whole source (a pandas DataFrame); its result becomes the view
    `transformed` (a pandas DataFrame or a pyarrow Table is accepted) and the query that reads it is returned."""
    import pandas as pd
    import pyarrow as pa

    from bottega.core.functions import FunctionError

    try:
        function = group.transform_function()
    except FunctionError as exc:
        raise PipelineError(f"feature group {group.name!r}: {exc}") from exc
    try:
        output = function(con.sql("SELECT * FROM source").df())
    except Exception as exc:
        raise PipelineError(f"feature group {group.name!r}: the transform {group.transform} failed: {exc!r}") from exc
    if not isinstance(output, pd.DataFrame | pa.Table):
        raise PipelineError(
            f"feature group {group.name!r}: the transform {group.transform} returned {type(output).__name__}; on the "
            "DuckDB engine it must return a pandas DataFrame or a pyarrow Table"
        )
    try:
        table = pa.Table.from_pandas(output, preserve_index=False) if isinstance(output, pd.DataFrame) else output
        micros = pa.schema(  # pandas times are nanoseconds: the stores (and the range filter) use microseconds
            f.with_type(pa.timestamp("us", tz=f.type.tz)) if pa.types.is_timestamp(f.type) else f for f in table.schema
        )
        con.register("transformed", table.cast(micros, safe=False))
    except pa.ArrowException as exc:
        raise PipelineError(
            f"feature group {group.name!r}: the output of {group.transform} is unusable: {exc}"
        ) from exc
    return "SELECT * FROM transformed"


def _in_range(table: Any, group: BatchFeatureGroup, start: datetime, end: datetime) -> Any:
    """Rows with `start <= event_time < end`, event_time normalized by the one timestamp rule (core.timestamps)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bottega.core.timestamps import normalize_table

    if "event_time" not in table.column_names:
        return table
    try:
        table = normalize_table(table, "event_time")
    except ValueError as exc:
        raise PipelineError(f"feature group {group.name!r}: {exc}") from exc
    ts = table.column("event_time")
    kind = pa.timestamp("us", tz="UTC")
    keep = pc.and_(pc.greater_equal(ts, pa.scalar(start, kind)), pc.less(ts, pa.scalar(end, kind)))
    return table.filter(keep)


def _prefiltered(con: Any, query: str, start: datetime, end: datetime) -> Any:
    """The transform's rows, already cut to `[start, end)` by DuckDB when `event_time` is a timestamp of any unit
    or zone (cast to TIMESTAMPTZ: naive values read as UTC in this UTC session, as the rule says), so a short run
    over a long source fetches only its rows; other types come whole and `_in_range` applies the rule to them."""
    relation = con.sql(f"SELECT * FROM ({query}) AS t")
    types = dict(zip(relation.columns, (str(t) for t in relation.types), strict=True))
    if not types.get("event_time", "").startswith("TIMESTAMP"):
        return relation
    return con.sql(
        f"SELECT * FROM ({query}) AS t WHERE CAST(event_time AS TIMESTAMPTZ) >= $start "
        "AND CAST(event_time AS TIMESTAMPTZ) < $end",
        params={"start": start, "end": end},
    )


def compute(group: BatchFeatureGroup, schema: GroupSchema, start: datetime, end: datetime, *, con: Any = None) -> Any:
    """The transform's rows for `[start, end)` as a pyarrow Table, checked against the group's schema (`con`: a
    UTC DuckDB session to run in, see `feature_store.duck`; one of its own otherwise)."""
    import duckdb

    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise PipelineError(f"empty time range: start {start} is not before end {end}")
    with duck.session(con) as db:
        try:
            create_source_view(db, group)
            query = group.transform_sql if group.transform is None else _python_transform(db, group)
            result: Any = _in_range(_prefiltered(db, str(query), start, end).to_arrow_table(), group, start, end)
        except duckdb.Error as exc:
            raise PipelineError(f"feature group {group.name!r}: the source or transform failed: {exc}") from exc
    try:
        result = rename_to_keys(result, group.key_columns, f"feature group {group.name!r}: the transform")
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    needed = [*schema.key_names, "event_time", *(n for n, _ in schema.features)]
    missing = [c for c in needed if c not in result.column_names]
    if missing:
        raise PipelineError(f"feature group {group.name!r}: the transform does not return {missing}")
    return result.select(needed)


def latest_per_entity(schema: GroupSchema, table: Any) -> Any:
    import duckdb

    keys = ", ".join(f'"{k}"' for k in schema.key_names)
    con = duckdb.connect()
    try:
        con.register("rows", table)
        return con.sql(
            f"SELECT * FROM rows QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY event_time DESC) = 1"
        ).to_arrow_table()
    finally:
        con.close()


def materialize(schema: GroupSchema, table: Any, online: OnlineStore) -> int:
    """Write the latest row per entity of `table` (conformed offline rows) to the online store; returns the rows
    written. An older event never replaces a newer one online, so materializing an old range is harmless."""
    online.create_group(schema)
    return online.write_table(schema, latest_per_entity(schema, table))


def run_batch(
    group: BatchFeatureGroup,
    schema: GroupSchema,
    offline: OfflineStore,
    online: OnlineStore | None,
    start: datetime,
    end: datetime,
    *,
    progress: Progress | None = None,
) -> BatchResult:
    report = progress or (lambda _stage, _n: None)
    with duck.session() as con:  # one DuckDB session for the transform and the offline write
        table = compute(group, schema, start, end, con=con)
        report("computed", table.num_rows)
        try:
            check_dtypes(group.name, schema, table)
        except DtypeMismatch as exc:
            raise PipelineError(str(exc)) from exc
        conformed = offline.conform(schema, table)
        offline.upsert(schema, conformed, con=con)
    report("offline", conformed.num_rows)
    written = 0
    if group.online and online is not None and conformed.num_rows:
        written = materialize(schema, conformed, online)
        report("online", written)
    return BatchResult(
        group=group.name,
        start=start,
        end=end,
        rows_offline=conformed.num_rows,
        rows_online=written,
        last_event_time=newest_event_time(conformed),
    )


def newest_event_time(table: Any) -> datetime | None:
    """The latest `event_time` of a pyarrow Table (None when it has no rows)."""
    import pyarrow.compute as pc

    if not table.num_rows:
        return None
    newest: datetime | None = pc.max(table.column("event_time")).as_py()
    return as_utc(newest) if newest is not None else None
