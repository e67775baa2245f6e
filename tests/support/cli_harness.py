"""Drive the `bottega` CLI in-process against the test app: the CLI's SDK client is pointed at the TestClient."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from api_harness import ApiHarness
from typer.testing import CliRunner

from bottega.cli import common
from bottega.cli.main import app
from bottega.sdk import Client

Invoke = Callable[..., Any]


def cli_invoker(api: ApiHarness, monkeypatch: pytest.MonkeyPatch, group: str, token: str) -> Invoke:
    """`invoke(*args, as_json=True, code=0)` runs `bottega [--json] <group> *args` as `token` and returns the parsed
    JSON (or the output text), asserting the exit code."""
    monkeypatch.setattr(common, "Client", lambda url, tok: Client(token=tok, http=api.client))
    runner = CliRunner(env={"COLUMNS": "250"})

    def invoke(*args: str, as_json: bool = True, code: int = 0) -> Any:
        options = ["--token", token, *(["--json"] if as_json else [])]
        result = runner.invoke(app, [*options, group, *args])
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if as_json and code == 0 else result.output

    return invoke
