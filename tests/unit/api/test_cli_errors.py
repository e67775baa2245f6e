"""The CLI's one error rule: one `error: ...` line, verbatim text, exit 2 for what the user can fix, 1 for failures,
and the traceback only with --debug / BOTTEGA_DEBUG."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import typer
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from bottega.cli.common import client, state
from bottega.cli.errors import CliGroup, describe
from bottega.cli.main import app as bottega_app
from bottega.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound, OperationFailed
from bottega.core.extras import MissingExtra

TRICKY = "pattern '^[a-z][a-z0-9_]{0,62}$' [bold]x[/bold] and [/] stay"


class Named(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _validation_error() -> ValidationError:
    try:
        Named(name="Bad-Name")
    except ValidationError as exc:
        return exc
    raise AssertionError("Named accepted Bad-Name")


def _root(raise_it: Callable[[], Any]) -> typer.Typer:
    """A root app built like `bottega`'s (its group class and the --debug option) with one failing command."""
    app = typer.Typer(cls=CliGroup)

    @app.callback()
    def main(ctx: typer.Context, debug: bool = typer.Option(False, "--debug", envvar="BOTTEGA_DEBUG")) -> None:
        state(ctx).debug = debug

    @app.command()
    def go() -> None:
        raise_it()

    @app.command()
    def other() -> None:
        pass

    return app


def _raise(exc: BaseException) -> Callable[[], Any]:
    def action() -> None:
        raise exc

    return action


def _bad_parameter() -> None:
    raise typer.BadParameter(TRICKY, param_hint="--thing")


@pytest.mark.parametrize(
    ("action", "code", "expected"),
    [
        (_raise(InvalidInput(TRICKY)), 2, TRICKY),
        (_raise(NotFound(TRICKY)), 2, TRICKY),
        (_raise(Conflict(TRICKY)), 2, TRICKY),
        (_raise(IntegrityFailure(TRICKY)), 1, TRICKY),
        (_raise(ValueError(TRICKY)), 2, TRICKY),  # PipelineError, DtypeMismatch, label checks, timestamp rule
        (_raise(FileNotFoundError(2, "No such file", "/d/" + TRICKY)), 2, "No such file: /d/" + TRICKY),
        (_raise(MissingExtra(TRICKY)), 2, TRICKY),
        (_raise(OperationFailed(TRICKY)), 1, TRICKY),
        (_raise(RuntimeError(TRICKY)), 1, f"unexpected RuntimeError: {TRICKY} (rerun with --debug"),
        (_bad_parameter, 2, f"Invalid value for --thing: {TRICKY}"),
    ],
)
def test_every_error_path_prints_one_verbatim_line(action: Callable[[], Any], code: int, expected: str) -> None:
    result = CliRunner(env={"COLUMNS": "40"}).invoke(_root(action), ["go"])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # never wrapped, not even at 40 columns
    assert lines[0].startswith("error: " + expected)
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_instead() -> None:
    boom = ValueError("the data is bad")
    for args, env in ((["--debug", "go"], {}), (["go"], {"BOTTEGA_DEBUG": "1"})):
        result = CliRunner(env=env).invoke(_root(_raise(boom)), args)
        assert result.exception is boom
        assert "error: " not in result.output


def test_usage_errors_name_the_command_to_ask_for_help() -> None:
    result = CliRunner().invoke(bottega_app, ["features", "run"])
    assert result.exit_code == 2
    assert result.output.startswith("error: Missing argument 'project'.")
    assert "features run --help" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_without_a_command_still_prints_the_help() -> None:
    result = CliRunner().invoke(bottega_app, ["features"])
    assert "Usage:" in result.output
    assert "error:" not in result.output


def test_names_are_explained_in_words_with_the_pattern_kept_for_machines() -> None:
    message, code = describe(_validation_error())
    assert code == 2
    assert message == (
        "name: must be lowercase letters, digits and _ . -, starting with a lowercase letter or a digit, "
        "at most 63 characters; got 'Bad-Name'"
    )


def test_projects_create_with_a_bad_name_is_one_line_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(bottega_app, ["--url", "http://127.0.0.1:9", "projects", "create", "Bad-Name"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: name: must be lowercase letters")
    assert "'Bad-Name'" in result.output
    assert "cannot reach" not in result.output  # the SDK refused it before sending


def test_an_unreachable_api_is_a_failure_naming_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTTEGA_URL", raising=False)
    result = CliRunner().invoke(bottega_app, ["--url", "http://127.0.0.1:9", "projects", "list"])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach the API at http://127.0.0.1:9")


def test_the_client_context_alone_applies_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTTEGA_URL", raising=False)
    app = typer.Typer()  # a plain group: only `client()` stands between the error and the user

    @app.command()
    def go(ctx: typer.Context) -> None:
        with client(ctx):
            raise httpx.ConnectError(TRICKY)

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["go"])
    assert result.exit_code == 1
    assert f"error: cannot reach the API at http://127.0.0.1:8700: {TRICKY}" in result.output
