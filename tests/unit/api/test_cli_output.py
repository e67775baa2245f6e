"""The CLI prints server and user strings verbatim (no rich markup), and tables never cut identifiers."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bottega.cli import common
from bottega.core.errors import InvalidInput

TRICKY = "String should match pattern '^[a-z][a-z0-9_]{0,62}$' [bold]x[/bold] and [/]"


def _app(action: Any) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def go(ctx: typer.Context) -> None:
        action(ctx)

    @app.command()
    def other() -> None:  # two commands, so `go` is a sub-command
        pass

    return app


def _run(action: Any, columns: int = 250) -> Any:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(_app(action), ["go"])


def test_server_errors_print_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing:
        def __init__(self, *_: Any) -> None:
            pass

        def __enter__(self) -> Failing:
            raise InvalidInput(TRICKY)

        def __exit__(self, *_: Any) -> None:
            pass

    monkeypatch.setattr(common, "Client", Failing)

    def action(ctx: typer.Context) -> None:
        with common.client(ctx):
            pass

    result = _run(action)
    assert result.exit_code == 2  # a 422: the user's to fix
    assert "error: " + TRICKY in result.output


def test_done_lines_and_table_cells_print_verbatim() -> None:
    result = _run(lambda ctx: common.done(ctx, TRICKY))
    assert TRICKY in result.output
    result = _run(lambda ctx: common.emit(ctx, [{"name": "m", "description": "[bold]x[/bold] [a-z]"}]))
    assert "[bold]x[/bold] [a-z]" in result.output
    result = _run(lambda ctx: common.emit(ctx, {"detail": "[red]r[/red]"}))
    assert "[red]r[/red]" in result.output


LONG = "late_delivery_probability_for_restaurants_v2"  # 44 characters


def test_tables_keep_identifiers_whole_at_80_columns() -> None:
    rows = [
        {"name": LONG, "latest_version": 12, "description": "a long description " * 5, "aliases": {"prod": 3}},
        {"name": "eta", "latest_version": 1, "description": "", "aliases": {}},
    ]
    narrow = _run(lambda ctx: common.emit(ctx, rows), columns=80)
    assert LONG in narrow.output
    assert "…" not in narrow.output
    wide = _run(lambda ctx: common.emit(ctx, rows), columns=200)
    assert LONG in wide.output
    header = next(line for line in wide.output.splitlines() if "latest_version" in line)
    assert "name" in header
    assert "description" in header


def test_a_terminal_too_narrow_for_the_identifiers_gets_one_block_per_row() -> None:
    rows = [{"name": LONG, "run_id": "r" * 32, "model": LONG, "version": 3}]
    out = _run(lambda ctx: common.emit(ctx, rows), columns=60).output
    assert LONG in out
    assert "r" * 32 in out
    assert "…" not in out
