"""The CLI's one error rule: every error prints one `error: ...` line on stderr, never a traceback unless asked.

Exit status 2: something the user can fix (a bad value or file, a name that breaks a rule, a missing object, a
conflict, no permission, data that does not fit its declaration, a missing optional install).
Exit status 1: the platform could not do it (the API is unreachable or failed, a run failed, an unexpected error).
`--debug` (or `BOTTEGA_DEBUG=1`) re-raises instead, so the full traceback shows.
"""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text
from typer._click import Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup
from typer.exceptions import TyperException

from bottega.core.errors import BottegaError, OperationFailed
from bottega.core.extras import MissingExtra
from bottega.core.names import explain_all

USER_ERROR = 2
FAILURE = 1
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def debug_enabled(ctx: Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    if root is not None and getattr(root.obj, "debug", False):
        return True
    return os.environ.get("BOTTEGA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())


def describe(exc: BaseException, url: str | None = None) -> tuple[str, int]:
    """The message and exit status for an error the CLI met."""
    if isinstance(exc, BottegaError):
        return _one_line(str(exc.detail)), USER_ERROR if exc.status < 500 else FAILURE
    if isinstance(exc, ValidationError):
        return explain_all(exc.errors()), USER_ERROR  # type: ignore[arg-type]
    if isinstance(exc, MissingExtra):
        return str(exc), USER_ERROR
    if isinstance(exc, httpx.TransportError):
        where = f" at {url}" if url else ""
        return f"cannot reach the API{where}: {_one_line(str(exc)) or type(exc).__name__}", FAILURE
    if isinstance(exc, _USER_OS_ERRORS):
        name = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{name}", USER_ERROR
    if isinstance(exc, OperationFailed):
        return str(exc).strip(), FAILURE  # may carry a run's last output lines: kept as they are
    if isinstance(exc, ValueError):
        return _one_line(str(exc)) or type(exc).__name__, USER_ERROR
    detail = _one_line(str(exc))
    return f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} (rerun with --debug for the traceback)", (
        FAILURE
    )


def print_error(message: str) -> None:
    """`error: message` on stderr, the message verbatim (no rich markup) and never wrapped into several lines."""
    line = Text("error: ", style="red")
    line.append(message)
    Console(stderr=True, soft_wrap=True).print(line, highlight=False)


def exit_for(ctx: Context | None, exc: Exception, url: str | None = None) -> typer.Exit:
    """Print `exc` as the one error line and return the Exit to raise (with --debug: re-raise `exc` itself)."""
    if debug_enabled(ctx):
        raise exc
    message, code = describe(exc, url)
    print_error(message)
    return typer.Exit(code)


def _usage_line(exc: UsageError) -> str:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _one_line(exc.format_message()) + hint


class CliGroup(TyperGroup):
    """The root command group: errors that escape a command become the one error line."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise  # prints the help
        except UsageError as exc:
            if debug_enabled(ctx):
                raise
            print_error(_usage_line(exc))
            raise typer.Exit(USER_ERROR) from exc
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except Exception as exc:
            raise exit_for(ctx, exc) from exc
