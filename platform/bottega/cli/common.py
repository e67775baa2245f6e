"""What every command group shares: the SDK client from global options, output (rich or --json), errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from bottega.core.errors import BottegaError
from bottega.sdk import Client


@dataclass
class CliState:
    url: str | None = None
    token: str | None = None
    as_json: bool = False


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


@contextmanager
def client(ctx: typer.Context) -> Iterator[Client]:
    """An SDK client for the command; domain errors become one red line and exit code 1."""
    st = state(ctx)
    try:
        with Client(st.url, st.token) as sdk:
            yield sdk
    except BottegaError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc.detail}", highlight=False)
        raise typer.Exit(1) from exc
    except (httpx.TransportError, OSError) as exc:  # connection refused, DNS, timeouts
        Console(stderr=True).print(f"[red]error:[/red] cannot reach the API: {exc}", highlight=False)
        raise typer.Exit(1) from exc


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
        table = Table(title=title)
        cols = list(columns or (data[0].keys() if data else []))
        for col in cols:
            table.add_column(col)
        for row in data:
            table.add_row(*[_cell(row.get(col)) for col in cols])
        console.print(table)
        return
    if isinstance(data, dict):
        table = Table(show_header=False, title=title)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key in columns or data.keys():
            table.add_row(key, _cell(data.get(key)))
        console.print(table)
        return
    console.print(data)


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
    Console().print(message, highlight=False)
    if render:
        render()
