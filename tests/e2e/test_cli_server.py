"""The README's path: `bottega server` on embedded defaults with nothing configured, then the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from live_server import BIN, LiveServer, live_server

from bottega.api.db import migrate
from bottega.api.db.engine import make_engine


def cli(server: LiveServer, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bottega"), *args], env=server.env(token), capture_output=True, text=True, timeout=60, check=False
    )


def test_server_starts_on_embedded_defaults_and_the_cli_drives_it(tmp_path: Path) -> None:
    home = tmp_path / "bottega-home"
    with live_server(home) as server:
        assert (home / "bottega.db").exists(), "SQLite under BOTTEGA_HOME is the default database"
        assert "bootstrap admin API key" in server.log.read_text()

        created = cli(server, "projects", "create", "eats", "--description", "restaurant models")
        assert created.returncode == 0, created.stderr
        assert "created project eats" in created.stdout

        listed = cli(server, "--json", "projects", "list")
        assert [p["name"] for p in json.loads(listed.stdout)["items"]] == ["eats"]

        key = json.loads(cli(server, "--json", "keys", "create", "--user", "alice", "--name", "laptop").stdout)
        assert key["token"].startswith("btg_")
        added = cli(server, "projects", "add-member", "eats", "alice", "--role", "viewer")
        assert added.returncode == 0, added.stderr
        alice_view = json.loads(cli(server, "--json", "projects", "get", "eats", token=key["token"]).stdout)
        assert alice_view["role"] == "viewer"
        denied = cli(server, "projects", "update", "eats", "--description", "x", token=key["token"])
        assert denied.returncode == 2
        assert "editor role" in denied.stderr

        missing = cli(server, "projects", "get", "nope")
        assert missing.returncode == 2
        assert "'nope' does not exist" in missing.stderr

        audit = json.loads(cli(server, "--json", "audit", "--project", "eats").stdout)
        assert [e["action"] for e in audit["items"]] == ["project.member.put", "project.create"]

        human = cli(server, "projects", "list")
        assert "eats" in human.stdout
        assert "restaurant models" in human.stdout


def test_cli_reports_an_unreachable_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "bottega"), "--url", "http://127.0.0.1:9", "--token", "x", "projects", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach the API" in result.stderr


def test_db_upgrade_on_a_fresh_home(tmp_path: Path) -> None:
    env = {"BOTTEGA_HOME": str(tmp_path / "h"), "PATH": str(BIN)}
    done = subprocess.run(
        [str(BIN / "bottega"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'h' / 'bottega.db'}")
    try:
        assert migrate.is_at_head(engine)
        assert f"database at {', '.join(sorted(migrate.head_revisions(engine)))}" in done.stdout
    finally:
        engine.dispose()
    assert (tmp_path / "h" / "bottega.db").exists()
