"""Point-in-time correct training sets with DuckDB (the embedded engine).

For each label row (entity keys, timestamp) and each requested feature: the value of the latest row of its group
with `event_time <= timestamp` for the same entity keys, provided it is not older than the group's max age. Never a
future value; every label row is kept, with nulls where nothing is known. Ties on (entity keys, event_time) left by
`append` resolve to the latest-written file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import TTL_MULTIPLIER, FeatureRef, GroupSchema

DUCK_TYPES = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN"}
ROW = "__bottega_row"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_name(ref: FeatureRef) -> str:
    """The training-set column of a feature: `<group>__<feature>`."""
    return f"{ref.group}__{ref.feature}"


def status_column(group: str) -> str:
    """The column `with_status` adds per group: FRESH / STALE / MISSING of the row the join found, judged as the
    online store judges it (`<group>___status`: no feature name starts with `_`, so it never collides)."""
    return f"{group}___status"


def status_sql(found: str, age_us: str, max_age_us: int) -> str:
    """FRESH within max age, STALE up to the online stores' TTL (2 x max age), MISSING beyond or when none."""
    ttl_us = int(max_age_us * TTL_MULTIPLIER)
    return (
        f"CASE WHEN {found} IS NULL THEN 'MISSING' WHEN {age_us} <= {max_age_us} THEN 'FRESH' "
        f"WHEN {age_us} <= {ttl_us} THEN 'STALE' ELSE 'MISSING' END"
    )


def plan_groups(
    features: Sequence[FeatureRef], schemas: Mapping[tuple[str, str], GroupSchema]
) -> list[tuple[GroupSchema, list[FeatureRef]]]:
    """The requested features grouped by feature group, in first-mention order, each checked to exist."""
    grouped: dict[tuple[str, str], tuple[GroupSchema, list[FeatureRef]]] = {}
    columns: dict[str, FeatureRef] = {}
    for ref in features:
        schema = schemas.get(ref.group_key)
        if schema is None:
            raise KeyError(f"unknown feature group {ref.project}:{ref.group}")
        if ref.feature not in schema.feature_types:
            raise KeyError(f"feature group {ref.project}:{ref.group} has no feature {ref.feature!r}")
        name = column_name(ref)
        if name in columns and columns[name] != ref:
            raise ValueError(f"{columns[name]} and {ref} would both be column {name!r}; request them separately")
        columns[name] = ref
        grouped.setdefault(ref.group_key, (schema, []))[1].append(ref)
    return list(grouped.values())


def _as_arrow(labels: Any) -> Any:
    import pyarrow as pa

    return labels if isinstance(labels, pa.Table) else pa.Table.from_pandas(labels, preserve_index=False)


def check_labels(labels: Any, timestamp_column: str, groups: list[tuple[GroupSchema, list[FeatureRef]]]) -> None:
    if timestamp_column not in labels.column_names:
        raise ValueError(f"the label table has no timestamp column {timestamp_column!r}")
    for schema, _ in groups:
        missing = [k for k in schema.key_names if k not in labels.column_names]
        if missing:
            raise ValueError(f"the label table lacks entity keys {missing} of feature group {schema.name!r}")


def point_in_time_join(
    store: OfflineStore,
    labels: Any,
    features: Sequence[FeatureRef],
    schemas: Mapping[tuple[str, str], GroupSchema],
    *,
    timestamp_column: str = "timestamp",
    with_status: bool = False,
) -> Any:
    """The label table (pyarrow or pandas) with one column per feature, rows in label order, as a pyarrow Table;
    `with_status` adds a `status_column` per group.

    Only the label columns the join needs (entity keys, timestamp) go through DuckDB, and only the requested
    features are read; each group is one ASOF join whose result is put back in label order by row number."""
    import duckdb
    import pyarrow as pa

    from bottega.core.timestamps import normalize_table

    groups = plan_groups(features, schemas)
    table = _as_arrow(labels)
    check_labels(table, timestamp_column, groups)
    table = normalize_table(table, timestamp_column)
    needed = list(dict.fromkeys([*(k for schema, _ in groups for k in schema.key_names), timestamp_column]))
    probe = table.select(needed).append_column(ROW, pa.array(range(table.num_rows), type=pa.int64()))
    con = duckdb.connect()
    try:
        con.register("labels", probe)
        for i, (schema, refs) in enumerate(groups):
            columns = _join_group(con, store, schema, refs, f"g{i}", timestamp_column, with_status)
            names = [*_columns(refs), *([status_column(schema.name)] if with_status else [])]
            for name, column in zip(names, columns, strict=True):
                table = table.append_column(name, column)
        return table
    finally:
        con.close()


def _columns(refs: list[FeatureRef]) -> list[str]:
    return [column_name(ref) for ref in refs]


def _join_group(
    con: Any,
    store: OfflineStore,
    schema: GroupSchema,
    refs: list[FeatureRef],
    alias: str,
    timestamp_column: str,
    with_status: bool = False,
) -> list[Any]:
    """One group's feature columns for the registered `labels`, in label order."""
    import pyarrow.compute as pc

    ts = f"labels.{_q(timestamp_column)}"
    equal = " AND ".join(
        f"CAST(labels.{_q(k)} AS {DUCK_TYPES[t.value]}) = {alias}.{_q(k)}" for k, t in schema.entity_keys
    )
    max_us = int(schema.max_age.total_seconds() * 1_000_000)
    age = f"epoch_us({ts}) - epoch_us({alias}.event_time)"
    selects = [
        f"CASE WHEN {age} <= {max_us} THEN {alias}.{_q(ref.feature)} END AS {_q(column_name(ref))}" for ref in refs
    ]
    names = _columns(refs)
    if with_status:
        status = status_column(schema.name)
        selects.append(f"{status_sql(f'{alias}.event_time', age, max_us)} AS {_q(status)}")
        names.append(status)
    rows = _group_rows(con, store, schema, [ref.feature for ref in refs], alias)
    sql = (
        f"WITH {alias} AS ({rows}) SELECT labels.{_q(ROW)}, {', '.join(selects)} "
        f"FROM labels ASOF LEFT JOIN {alias} ON {equal} AND {ts} >= {alias}.event_time"
    )
    result = con.sql(sql).to_arrow_table()
    order = pc.sort_indices(result.column(ROW))  # ASOF joins do not keep the probe order
    result = result.take(order)
    return [result.column(name).combine_chunks() for name in names]


def _group_rows(con: Any, store: OfflineStore, schema: GroupSchema, wanted: list[str], alias: str) -> str:
    """SQL for a group's rows (keys, the wanted features, event_time), one per (entity keys, event_time)."""
    columns = ", ".join(_q(c) for c in [*schema.key_names, *dict.fromkeys(wanted), "event_time"])
    files = store.files(schema)
    if not files:
        con.register(f"{alias}_empty", store.read(schema))
        return f"SELECT {columns} FROM {alias}_empty"
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    if store.unique_files(files):  # one file per date partition: (keys, event_time) is unique already
        return f"SELECT {columns} FROM read_parquet([{listed}], hive_partitioning = false)"
    keys = ", ".join(_q(c) for c in [*schema.key_names, "event_time"])
    source = f"read_parquet([{listed}], filename = true, hive_partitioning = false)"
    return f"SELECT {columns} FROM {source} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY filename DESC) = 1"
