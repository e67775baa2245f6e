"""`bottega worker --once` as a subprocess against a real uvicorn server process, and the `bottega jobs` commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_harness import ADMIN_TOKEN, wipe
from live_server import live_server
from typer.testing import CliRunner

from bottega.api.db.engine import make_engine
from bottega.cli.main import app as main_app
from bottega.sdk import Client

# The lead registers `bottega worker` in cli/main.py; until then this entry point adds it for the subprocess.
WORKER_MAIN = """
import sys
from bottega.cli import jobs, main
if not any(c.name == "worker" for c in main.app.registered_commands):
    main.app.command("worker")(jobs.worker)
main.run()
"""


@dataclass
class Server:
    url: str
    env: dict[str, str]

    def sdk(self, token: str = ADMIN_TOKEN) -> Client:
        return Client(self.url, token)


@pytest.fixture(scope="module")
def module_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `bottega server` per backend for this module (the tests use their own projects)."""
    engine = make_engine(database_url)
    try:
        wipe(engine)
    finally:
        engine.dispose()
    env = {
        "BOTTEGA_DATABASE_URL": database_url,
        "BOTTEGA_BOOTSTRAP_TOKEN": ADMIN_TOKEN,
        "BOTTEGA_EMBEDDED_WORKER": "false",
        "BOTTEGA_MIGRATE_ON_START": "false",
        "BOTTEGA_SCHEDULER_INTERVAL_S": "0.5",
    }
    with live_server(tmp_path_factory.mktemp("server") / "home", extra_env=env) as running:
        yield Server(url=running.url, env=running.env(ADMIN_TOKEN))


@pytest.fixture
def server(module_server: Server) -> Iterator[Server]:
    """The module's server, with every project and its runs deleted after each test."""
    yield module_server
    with module_server.sdk() as admin:
        for project in admin.projects.list(limit=500).items:
            admin.projects.delete(project.name)


def worker_once(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        WORKER_MAIN,
        "--url",
        server.url,
        "--token",
        ADMIN_TOKEN,
        "worker",
        "--once",
        *args,
    ]
    return subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=60, check=False)


def test_worker_once_runs_a_submitted_echo_job(server: Server) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
        run = admin.jobs.submit("eats", "builtin.echo", {"hello": "world", "n": 3})
        later = admin.jobs.submit("eats", "builtin.echo", {"second": True})
        done = worker_once(server, "--poll-interval", "0.1")
        assert done.returncode == 0, done.stderr
        assert f"run {run.id} (builtin.echo) succeeded" in done.stdout
        finished = admin.jobs.get("eats", run.id)
        assert finished.status == "succeeded"
        assert finished.result == {"hello": "world", "n": 3}
        assert 'echo: {"hello": "world", "n": 3}' in finished.log_tail
        assert finished.worker is not None
        assert admin.jobs.get("eats", later.id).status == "queued", "--once processes at most one run"


def test_worker_once_records_a_failure_and_filters_job_types(server: Server) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
        echo = admin.jobs.submit("eats", "builtin.echo")
        failing = admin.jobs.submit("eats", "builtin.fail", {"message": "no rows"})
        done = worker_once(server, "--job-type", "builtin.fail", "--name", "cli-worker")
        assert done.returncode == 0, done.stderr
        failed = admin.jobs.get("eats", failing.id)
        assert (failed.status, failed.error, failed.worker) == ("failed", "JobFailed: no rows", "cli-worker")
        assert "Traceback" in failed.log_tail
        assert admin.jobs.get("eats", echo.id).status == "queued"
        assert admin.jobs.cancel("eats", echo.id).status == "cancelled"
        idle = worker_once(server)
        assert idle.returncode == 0, idle.stderr
        assert "no queued run" in idle.stdout


def test_worker_refuses_non_admin_keys_and_unknown_types(server: Server) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
        token = admin.keys.create("alice", user="alice").token
    command = [sys.executable, "-c", WORKER_MAIN, "--url", server.url, "--token", token, "worker", "--once"]
    refused = subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "admin" in refused.stderr
    unknown = worker_once(server, "--job-type", "builtin.nope")
    assert unknown.returncode == 2
    assert "does not know job type" in unknown.stderr


def cli(server: Server, *args: str) -> str:
    result = CliRunner().invoke(main_app, ["--url", server.url, "--token", ADMIN_TOKEN, *args])
    assert result.exit_code == 0, result.output
    return result.output


def cli_fails(server: Server, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main_app, ["--url", server.url, "--token", ADMIN_TOKEN, *args])
    return result.exit_code, result.output


def test_jobs_commands(server: Server) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
    assert "builtin.sleep" in cli(server, "jobs", "types")
    types = json.loads(cli(server, "--json", "jobs", "types"))
    assert {t["name"] for t in types} >= {"builtin.echo", "builtin.fail", "builtin.sleep"}
    queued = json.loads(
        cli(
            server,
            "--json",
            "jobs",
            "submit",
            "eats",
            "builtin.echo",
            "-p",
            "n=3",
            "-p",
            "who=me",
            "--params",
            '{"flag": true}',
        )
    )
    assert queued["params"] == {"flag": True, "n": 3, "who": "me"}
    assert queued["status"] == "queued"
    assert "queued builtin.sleep run" in cli(server, "jobs", "submit", "eats", "builtin.sleep", "-p", "seconds=0")
    listed = json.loads(cli(server, "--json", "jobs", "list", "eats", "--job-type", "builtin.echo"))
    assert [r["id"] for r in listed["items"]] == [queued["id"]]
    assert worker_once(server, "--job-type", "builtin.echo").returncode == 0
    shown = cli(server, "jobs", "get", "eats", queued["id"])
    assert "succeeded" in shown
    assert "log tail" in shown
    assert "echo:" in shown
    waited = json.loads(cli(server, "--json", "jobs", "wait", "eats", queued["id"], "--timeout", "5"))
    assert waited["result"] == {"flag": True, "n": 3, "who": "me"}
    sleeper = json.loads(cli(server, "--json", "jobs", "list", "eats", "--status", "queued"))["items"][0]
    assert "cancelled run" in cli(server, "jobs", "cancel", "eats", sleeper["id"])
    code, output = cli_fails(server, "jobs", "wait", "eats", sleeper["id"])
    assert code == 1, "wait exits 1 unless the run succeeded"
    code, output = cli_fails(server, "jobs", "cancel", "eats", sleeper["id"])
    assert code == 2
    assert "already finished" in output
    code, output = cli_fails(server, "jobs", "submit", "eats", "builtin.nope")
    assert (code, "unknown job type" in output) == (2, True)
    code, output = cli_fails(server, "jobs", "submit", "eats", "builtin.echo", "--params", "[1]")
    assert code == 2


def test_schedule_commands(server: Server) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
    made = cli(server, "jobs", "schedule", "eats", "nightly", "builtin.sleep", "--cron", "0 3 * * *", "-p", "seconds=1")
    assert "scheduled nightly" in made
    assert "next at" in made
    listed = json.loads(cli(server, "--json", "jobs", "schedules", "eats"))
    assert [(s["name"], s["cron"], s["params"]) for s in listed["items"]] == [
        ("nightly", "0 3 * * *", {"seconds": 1.0})
    ]
    paused = json.loads(cli(server, "--json", "jobs", "pause", "eats", "nightly"))
    assert (paused["enabled"], paused["next_run_at"]) == (False, None)
    assert json.loads(cli(server, "--json", "jobs", "schedules", "eats", "--paused"))["total"] == 1
    assert "resumed schedule nightly" in cli(server, "jobs", "resume", "eats", "nightly")
    changed = json.loads(cli(server, "--json", "jobs", "update-schedule", "eats", "nightly", "--cron", "*/5 * * * *"))
    assert changed["cron"] == "*/5 * * * *"
    assert "recent runs" in cli(server, "jobs", "show-schedule", "eats", "nightly")
    code, output = cli_fails(server, "jobs", "schedule", "eats", "bad", "builtin.echo", "--cron", "* * *")
    assert code == 2
    assert "cron" in output
    assert "deleted schedule nightly" in cli(server, "jobs", "unschedule", "eats", "nightly", "--yes")
    assert json.loads(cli(server, "--json", "jobs", "schedules", "eats"))["total"] == 0


@pytest.mark.parametrize("signals", [["SIGINT", "SIGINT"], ["SIGTERM"]], ids=["ctrl-c-twice", "sigterm"])
def test_an_interrupted_worker_hands_its_run_back(server: Server, signals: list[str]) -> None:
    with server.sdk() as admin:
        admin.projects.create("eats")
        run = admin.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
        command = [sys.executable, "-c", WORKER_MAIN, "--url", server.url, "--token", ADMIN_TOKEN, "worker",
                   "--poll-interval", "0.1"]  # fmt: skip
        process = subprocess.Popen(command, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while admin.jobs.get("eats", run.id).status != "running":
                assert time.monotonic() < deadline, "the worker never started the run"
                time.sleep(0.1)
            if len(signals) == 2:
                process.send_signal(signal.SIGINT)
                time.sleep(1.0)
                assert process.poll() is None, "the first Ctrl-C lets the current run finish"
                assert admin.jobs.get("eats", run.id).status == "running"
            process.send_signal(getattr(signal, signals[-1]))
            _, stderr = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, stderr
        back = admin.jobs.get("eats", run.id)
        assert (back.status, back.attempt, back.worker) == ("queued", 1, None), "handed back for another worker"
        assert "sleeping for 60.0 s" in back.log_tail
