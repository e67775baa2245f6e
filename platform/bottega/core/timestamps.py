"""One timestamp rule for users' data.

Any Arrow/pandas timestamp unit and any zone is accepted; tz-aware values become UTC microseconds; naive values are
read as UTC with a `NaiveTimestampWarning`; ISO-8601 text is parsed (an offset in the text is honoured, text
without one follows the naive rule); anything else is refused with a ValueError naming the column.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any


class NaiveTimestampWarning(UserWarning):
    """A timestamp without a time zone was read as UTC."""


def _warn_naive(name: str) -> None:
    warnings.warn(
        f"column {name!r} has no time zone; read as UTC. If it is local time, localize it first: "
        f"df[{name!r}] = df[{name!r}].dt.tz_localize('Europe/Rome')",
        NaiveTimestampWarning,
        stacklevel=3,
    )


def _refuse(name: str, kind: Any) -> ValueError:
    return ValueError(
        f"column {name!r} has type {kind}, not a timestamp; give a timestamp column (any unit, any zone) or "
        "ISO-8601 text, e.g. df[col] = pd.to_datetime(df[col], utc=True)"
    )


def _parse_text(column: Any, name: str) -> Any:
    import pyarrow as pa

    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    parsed: list[datetime | None] = []
    naive = False
    for value in values:
        if value is None:
            parsed.append(None)
            continue
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"column {name!r} has text {value!r} that is not an ISO-8601 time stamp; write times like "
                "'2024-01-01T10:00:00+01:00'"
            ) from None
        naive = naive or moment.tzinfo is None
        parsed.append(moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC))
    if naive:
        _warn_naive(name)
    return pa.array(parsed, type=pa.timestamp("us", tz="UTC"))


def to_utc_micros(column: Any, name: str) -> Any:
    """`column` (a pyarrow Array or ChunkedArray) as `timestamp[us, tz=UTC]`, following the rule."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            _warn_naive(name)
        target = pa.timestamp("us", tz="UTC")
        if kind == target:
            return column
        # Arrow timestamps are stored as UTC instants whatever their zone: a cast only changes unit and label.
        return column.cast(target, safe=False)
    if pa.types.is_date(kind):
        return column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_text(column, name)
    raise _refuse(name, kind)


def normalize_table(table: Any, column: str) -> Any:
    """`table` (pyarrow) with `column` replaced by its UTC-microsecond version."""
    if column not in table.column_names:
        raise ValueError(f"the table has no timestamp column {column!r}")
    index = table.column_names.index(column)
    return table.set_column(index, column, to_utc_micros(table.column(column), column))


def as_utc(moment: datetime, name: str) -> datetime:
    """A scalar datetime as an aware UTC datetime; a naive one is read as UTC with the warning."""
    if not isinstance(moment, datetime):
        raise _refuse(name, type(moment).__name__)
    if moment.tzinfo is None or moment.utcoffset() is None:
        warnings.warn(
            f"{name} {moment.isoformat()} has no time zone; read as UTC. Give an offset (e.g. "
            f"{moment.isoformat()}+01:00 or {moment.isoformat()}Z) if it is another zone's time",
            NaiveTimestampWarning,
            stacklevel=2,
        )
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
