"""Key columns: where the entity's join keys are in the user's own data, when the data names them otherwise.

An entity's join keys are platform names (lowercase snake_case, e.g. `user_id`): they become columns of the offline
store, the online store's tables and CQL. A user's data may name the same key `userId`, `UserID` or `user id`.
Wherever data enters, a `key_columns` mapping `{join key: your column}` says so, and the platform renames at the
boundary: a batch group's transform result and a stream group's events (on the group), a label table (a training
spec's `dataset.key_columns`, `get_training_set(key_columns=...)`, `--key-column user_id=userId`), and a model's
requests and batch-scoring inputs (its signature's `key_columns`, written by training from the label table's
mapping). A key without an entry is expected under its own name. Output keeps the user's names: a training set keeps
the label table's columns, batch scoring output keeps the input's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COLUMN_MAX = 255
"""the longest column name a mapping may give."""


def check_key_columns(mapping: Mapping[str, str], join_keys: Iterable[str], where: str) -> None:
    """ValueError unless every mapped key is a join key, every column is a non-empty name given once and no column
    is the name of another join key (a swap would be read both ways)."""
    keys = list(join_keys)
    unknown = [k for k in mapping if k not in keys]
    if unknown:
        raise ValueError(f"{where}: {unknown[0]!r} is not a join key (the join keys: {', '.join(keys)})")
    columns = list(mapping.values())
    for column in columns:
        if not column or len(column) > COLUMN_MAX or any(ord(c) < 32 for c in column):
            raise ValueError(f"{where}: {column!r} is not a column name (1 to {COLUMN_MAX} printable characters)")
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"{where}: two join keys are read from the column {twice[0]!r}")
    for key, column in mapping.items():
        if column != key and column in keys:
            raise ValueError(f"{where}: {key!r} is read from {column!r}, the name of another join key")


def key_column(mapping: Mapping[str, str] | None, key: str) -> str:
    """The user's column of a join key (the key itself when the mapping does not name it)."""
    return mapping.get(key, key) if mapping else key


def renames_to_keys(names: Iterable[str], mapping: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """`{user column: join key}` for the mapped keys of a table with columns `names`; ValueError naming the column to
    fix when a mapped column is missing or the table holds both names."""
    names = list(names)
    renames: dict[str, str] = {}
    for key, column in (mapping or {}).items():
        if column == key:
            continue
        if column not in names:
            raise ValueError(
                f"{what} has no column {column!r} (key_columns maps the join key {key!r} to it); "
                f"its columns: {', '.join(names)}"
            )
        if key in names:
            raise ValueError(
                f"{what} has both {key!r} and {column!r}, which key_columns maps to {key!r}: drop or rename one"
            )
        renames[column] = key
    return renames


def rename_to_keys(table: Any, mapping: Mapping[str, str] | None, what: str) -> Any:
    """A pyarrow Table with each mapped key column renamed to its join key (see `renames_to_keys`)."""
    renames = renames_to_keys(table.column_names, mapping, what)
    if not renames:
        return table
    return table.rename_columns([renames.get(n, n) for n in table.column_names])


def rename_from_keys(table: Any, mapping: Mapping[str, str] | None) -> Any:
    """The inverse of `rename_to_keys`: join-key columns given back their user names."""
    if not mapping:
        return table
    back = {key: column for key, column in mapping.items() if column != key}
    if not back:
        return table
    return table.rename_columns([back.get(n, n) for n in table.column_names])


def parse_key_columns(items: Iterable[str], option: str = "--key-column") -> dict[str, str]:
    """`KEY=COLUMN` pairs (a CLI option given several times) as a mapping; ValueError naming the bad one."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        if not sep or not key.strip() or not column:
            raise ValueError(f"{option} {item!r}: expected JOIN_KEY=COLUMN, e.g. user_id=userId")
        if key.strip() in out:
            raise ValueError(f"{option}: the join key {key.strip()!r} is given twice")
        out[key.strip()] = column
    return out
