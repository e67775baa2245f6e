"""Checks of batch feature groups: the values a run computed against the declared dtypes (before anything is
written), and, at `features apply` time, a group's SQL transform against its source's schema (a zero-row bind).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bottega.core.keys import renames_to_keys
from bottega.feature_store.definitions import URL_RE, BatchFeatureGroup, Definitions
from bottega.feature_store.offline.store import ARROW_TYPES
from bottega.feature_store.types import GroupSchema, ValueType

SQL_TYPES = {ValueType.int: "BIGINT", ValueType.float: "DOUBLE", ValueType.string: "VARCHAR", ValueType.bool: "BOOLEAN"}


class DtypeMismatch(ValueError):
    """A computed column whose values do not fit the declared dtype."""


def fitting_dtype(arrow_type: Any) -> str:
    """The dtype that would hold values of `arrow_type` (for the "or declare dtype ..." hint)."""
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    return "string"


def _offending_value(column: Any, target: Any) -> Any:
    """One value of `column` that does not cast safely to `target` (None if none is found)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_floating(values.type) and pa.types.is_integer(target):
        bad = pc.and_(pc.is_finite(values), pc.not_equal(values, pc.floor(values)))
        hits = values.filter(pc.fill_null(bad, False))
        if len(hits):
            return hits[0].as_py()
    for start in range(0, len(values), 4096):
        chunk = values.slice(start, 4096)
        try:
            chunk.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            for value in chunk:
                try:
                    pa.array([value.as_py()], chunk.type).cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    return value.as_py()
    return None


def check_dtypes(group: str, schema: GroupSchema, table: Any) -> None:
    """Raise `DtypeMismatch` when a key or feature column of `table` (pyarrow) does not cast safely to its declared
    dtype (a float 4.5 into an `int` feature), naming the column, both types, one offending value and the fixes."""
    import pyarrow as pa

    kinds = {**{n: "entity key" for n, _ in schema.entity_keys}, **{n: "feature" for n, _ in schema.features}}
    for name, vtype in (*schema.entity_keys, *schema.features):
        if name not in table.column_names:
            continue
        declared = ValueType(vtype)
        target = pa.type_for_alias(ARROW_TYPES[declared.value])
        column = table.column(name)
        try:
            column.cast(target)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        example = _offending_value(column, target)
        raise DtypeMismatch(
            f"feature group {group!r}: {kinds[name]} {name!r} is declared {declared.value} but the transform returns "
            f"{column.type} values that do not fit (e.g. {example!r}); cast it in the SQL "
            f"(e.g. CAST({name} AS {SQL_TYPES[declared]})"
            + (f" or round({name})" if declared is ValueType.int else "")
            + f") or declare dtype {fitting_dtype(column.type)}"
        )


class TransformCheckError(ValueError):
    """A batch group whose source is missing or whose SQL does not bind against the source's columns."""


MISSING_COLUMN_RE = re.compile(r'Referenced column "([^"]+)" not found')


def _source_exists(path: str) -> bool:
    import glob

    return bool(glob.glob(path)) if any(c in path for c in "*?[") else Path(path).exists()


def _bind(group: BatchFeatureGroup) -> tuple[list[str], list[str]]:
    """The source's columns and the SQL transform's output columns, bound on zero rows by DuckDB."""
    import duckdb

    from bottega.feature_store.batch.duckdb_pipeline import create_source_view

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        create_source_view(con, group, empty=True)
        columns = [row[0] for row in con.execute("DESCRIBE source").fetchall()]
        try:
            output = [row[0] for row in con.execute(f"DESCRIBE ({group.transform_sql})").fetchall()]
        except duckdb.BinderException as exc:
            found = MISSING_COLUMN_RE.search(str(exc))
            what = f"reads column {found.group(1)!r}, which the source does not have" if found else f"fails: {exc}"
            raise TransformCheckError(
                f"feature group {group.name!r}: transform_sql {what} (source {group.source.path} has columns: "
                f"{', '.join(columns)})"
            ) from exc
        return columns, output
    finally:
        con.close()


def check_transform(group: BatchFeatureGroup, schema: GroupSchema) -> str | None:
    """Check a batch group at apply time: its (local) source exists and, for `transform_sql`, the SQL binds
    against the source's columns on zero rows and returns the entity keys, `event_time` and every declared feature.
    Raises `TransformCheckError`; returns a note when a check was skipped (a URL source, a Python transform, SQL that
    DuckDB cannot parse, e.g. Spark-only SQL)."""
    import duckdb

    path = group.source.path
    if URL_RE.match(path):
        return f"{group.name}: source {path} is a URL; not checked at apply time"
    if not _source_exists(path):
        raise TransformCheckError(
            f"feature group {group.name!r}: source {path} does not exist; create it before applying, or apply "
            "with --no-check to register the group unchecked"
        )
    if group.transform_sql is None:
        return f"{group.name}: Python transform {group.transform}; its output is checked when it runs"
    try:
        _columns, output = _bind(group)
    except (duckdb.ParserException, duckdb.CatalogException) as exc:
        first = str(exc).splitlines()[0]
        return f"{group.name}: DuckDB cannot run transform_sql ({first}); not checked (Spark-only SQL?)"
    except duckdb.Error as exc:
        raise TransformCheckError(f"feature group {group.name!r}: reading source {path} failed: {exc}") from exc
    try:
        renames = renames_to_keys(output, group.key_columns, f"feature group {group.name!r}: transform_sql")
    except ValueError as exc:
        raise TransformCheckError(str(exc)) from None
    output = [renames.get(c, c) for c in output]
    needed = [*schema.key_names, "event_time", *(n for n, _ in schema.features)]
    missing = [c for c in needed if c not in output]
    if missing:
        raise TransformCheckError(
            f"feature group {group.name!r}: transform_sql does not return {missing} (it returns: {', '.join(output)}); "
            "it must return the entity keys, event_time and every declared feature"
        )
    return None


def check_definitions(definitions: Definitions) -> list[str]:
    """`check_transform` for every batch group of a definitions file; the notes of checks skipped."""
    notes = []
    for group in definitions.batch_groups:
        note = check_transform(group, group.schema_for(definitions.project, definitions.entity(group.entity)))
        if note:
            notes.append(note)
    return notes
