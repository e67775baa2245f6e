"""Duplicates in label tables: exact copies of a row, and conflicting rows (same entity keys and timestamp, a
different label or other column). Both `features training-set` / `get_training_set` and training runs use
`check_labels`, with the policy `on_duplicates`:

- `warn` (the default): keep every row, log a warning and report the counts;
- `error`: refuse the table (`DuplicateLabels`), with the counts and an example key;
- `keep`: keep every row and report the counts, without a warning.

The counts travel with the training set as schema metadata (`label_duplicates(table)` reads them back).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

OnDuplicates = Literal["error", "warn", "keep"]
POLICIES: tuple[str, ...] = ("error", "warn", "keep")
METADATA_KEY = b"bottega.label_duplicates"
log = logging.getLogger(__name__)


class DuplicateLabels(ValueError):
    """A label table with duplicate or conflicting rows, refused by `on_duplicates: error`."""


@dataclass(frozen=True)
class LabelDuplicates:
    """What `find_duplicates` found in a label table."""

    rows: int
    duplicate_rows: int
    """rows that repeat an earlier row exactly (every column equal): the extra copies."""
    conflicting_rows: int
    """distinct rows that share their entity keys and timestamp with another, different row."""
    example_key: dict[str, Any] | None = field(default=None)
    """the entity keys and timestamp of one duplicated or conflicting row."""

    @property
    def found(self) -> bool:
        return bool(self.duplicate_rows or self.conflicting_rows)

    def describe(self) -> str:
        example = f"; e.g. {self.example_key}" if self.example_key else ""
        return (
            f"{self.duplicate_rows} exact duplicate rows and {self.conflicting_rows} conflicting rows (same keys and "
            f"timestamp, other values) among {self.rows} label rows{example}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_duplicates(table: Any, keys: Sequence[str], timestamp_column: str) -> LabelDuplicates:
    """Count exact duplicate rows and conflicting rows of a label table (pyarrow) by `keys` + `timestamp_column`
    (those not in the table are left out of the key)."""
    import duckdb

    on = [c for c in [*keys, timestamp_column] if c in table.column_names]
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in on)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("labels", table)
        distinct = con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM labels)").fetchone()
        duplicates = table.num_rows - int(distinct[0] if distinct else 0)
        conflicting, example = 0, None
        if on:
            groups = f"SELECT {quoted}, count(*) AS n FROM (SELECT DISTINCT * FROM labels) GROUP BY ALL HAVING n > 1"
            row = con.execute(f"SELECT coalesce(sum(n), 0) FROM ({groups})").fetchone()
            conflicting = int(row[0]) if row else 0
            first = f"SELECT {quoted} FROM labels GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 1"
            hit = con.execute(first).fetchone()
            if hit is not None:
                example = {c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(on, hit, strict=True)}
    finally:
        con.close()
    return LabelDuplicates(table.num_rows, duplicates, conflicting, example)


def check_labels(
    table: Any, keys: Sequence[str], timestamp_column: str, on_duplicates: str = "warn", *, what: str = "labels"
) -> LabelDuplicates:
    """`find_duplicates`, then the policy: `error` raises `DuplicateLabels`, `warn` logs, `keep` is silent."""
    if on_duplicates not in POLICIES:
        raise ValueError(f"on_duplicates {on_duplicates!r}: choose one of {', '.join(POLICIES)}")
    found = find_duplicates(table, keys, timestamp_column)
    if found.found and on_duplicates == "error":
        raise DuplicateLabels(
            f"{what}: {found.describe()}; remove them, or pass on_duplicates warn (report) or keep (accept)"
        )
    if found.found and on_duplicates == "warn":
        log.warning("%s: %s (kept; on_duplicates=error refuses them)", what, found.describe())
    return found


def with_duplicates(table: Any, found: LabelDuplicates) -> Any:
    """The table with the counts in its schema metadata (read them with `label_duplicates`)."""
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(found.as_dict(), default=str).encode()
    return table.replace_schema_metadata(metadata)


def label_duplicates(table: Any) -> LabelDuplicates | None:
    """The duplicate counts a training set carries (None when it carries none)."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return LabelDuplicates(**json.loads(raw)) if raw else None
