"""What every command group shares: the SDK client from global options, output (rich or --json), errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from bottega.cli.errors import USER_ERROR, exit_for, print_error
from bottega.sdk import Client


@dataclass
class CliState:
    url: str | None = None
    token: str | None = None
    as_json: bool = False
    debug: bool = False


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


@contextmanager
def client(ctx: typer.Context) -> Iterator[Client]:
    """An SDK client for the command; errors become the one `error: ...` line (see `bottega.cli.errors`)."""
    st = state(ctx)
    sdk = Client(st.url, st.token)  # no I/O yet: its `url` is the one the messages name
    try:
        with sdk:
            yield sdk
    except (typer.Exit, typer.Abort, TyperException):
        raise
    except Exception as exc:
        raise exit_for(ctx, exc, getattr(sdk, "url", None)) from exc


def fail(message: str, code: int = USER_ERROR) -> typer.Exit:
    """Print the one error line for `message` and return the Exit to raise (2: the user can fix it)."""
    print_error(message)
    return typer.Exit(code)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def emit(ctx: typer.Context, value: Any, columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print `value` as JSON (with --json) or as a table of `columns` (a list) / key-value table (one object)."""
    data = _plain(value)
    if state(ctx).as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    console = Console()
    if isinstance(data, dict) and "items" in data and isinstance(data["items"], list):
        data = data["items"]
    if isinstance(data, list):
        cols = list(columns or (data[0].keys() if data else []))
        console.print(_list_table(console, data, cols, title))
        return
    if isinstance(data, dict):
        table = Table(show_header=False, title=_text(title))
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key in columns or data.keys():
            table.add_row(Text(str(key)), Text(_cell(data.get(key))))
        console.print(table)
        return
    console.print(data, markup=False, highlight=False)


IDENTIFIERS = ("name", "id", "model", "version", "alias", "project", "ref", "feature", "deployment", "group", "key")


def _is_identifier(column: str) -> bool:
    return any(column == word or column.endswith(("_" + word, word + "s")) for word in IDENTIFIERS)


def _text(value: str | None) -> Text | None:
    return None if value is None else Text(value)


def _list_table(console: Console, rows: list[Any], cols: list[str], title: str | None) -> Table:
    """Rows as a table that never cuts an identifier (names, ids, versions, refs): those columns keep their whole
    width, the others fold; when the identifiers alone do not fit the terminal, one `field  value` block per row."""
    cells = [[_cell(row.get(col)) for col in cols] for row in rows]
    widths = {col: max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(cols)}
    needed = sum(widths[c] + 3 for c in cols if _is_identifier(c)) + 4 * (len(cols) - sum(map(_is_identifier, cols)))
    if needed > console.width:
        vertical = Table(show_header=False, title=_text(title), show_lines=True)
        vertical.add_column("field", style="bold", no_wrap=True)
        vertical.add_column("value", overflow="fold")
        for row in cells:
            vertical.add_row(Text("\n".join(cols)), Text("\n".join(row)))
        return vertical
    table = Table(title=_text(title))
    for col in cols:
        if _is_identifier(col):
            table.add_column(col, no_wrap=True, min_width=widths[col])
        else:
            table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*[Text(c) for c in row])
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def done(ctx: typer.Context, message: str, value: Any = None, render: Callable[[], None] | None = None) -> None:
    """Confirm a mutation: the object as JSON with --json, else a one-line message."""
    if state(ctx).as_json:
        emit(ctx, value if value is not None else {"ok": True, "message": message})
        return
    Console().print(message, highlight=False, markup=False)
    if render:
        render()
