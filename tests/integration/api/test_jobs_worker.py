"""Workers end to end through the service: the in-process backend, the embedded worker, cancellation, shutdown,
lost runs, job types of components and their discovery through entry points."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from api_harness import ApiHarness, harness
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.db.base import utcnow
from bottega.api.jobs import dispatch
from bottega.api.jobs.background import LocalBackend
from bottega.api.jobs.builtin import job_types as builtin_types
from bottega.api.jobs.runtime import JobsRuntime, JobsSettings
from bottega.api.jobs.types import JobContext, JobType, JobTypeRegistry
from bottega.api.jobs.worker import Worker
from bottega.core.errors import InvalidInput
from bottega.sdk import Client


def sessions_of(api: ApiHarness) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    return factory


def local_worker(api: ApiHarness, registry: JobTypeRegistry | None = None, **options: Any) -> Worker:
    registry = registry or JobTypeRegistry.discover()
    runtime = JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.1))
    return Worker(LocalBackend(sessions_of(api), runtime), registry, name="local-test", **options)


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def background() -> Iterator[Callable[[Worker], threading.Thread]]:
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> threading.Thread:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return thread

    yield start
    for worker, thread in started:
        worker.stop(abandon=True)
        thread.join(10)


def test_echo_succeeds_with_its_result_and_log_tail(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo", {"greeting": "ciao", "n": [1, 2]})
    worker = local_worker(api)
    assert worker.run(once=True) == 1
    done = sdk.jobs.get("eats", run.id)
    assert done.status == "succeeded"
    assert done.result == {"greeting": "ciao", "n": [1, 2]}
    assert 'INFO echo: {"greeting": "ciao", "n": [1, 2]}' in done.log_tail
    assert (done.worker, done.attempt, done.error) == ("local-test", 1, "")
    assert worker.last is not None
    assert worker.last.status == "succeeded"
    assert worker.run(once=True) == 0, "nothing left"


def test_fail_records_the_error_and_the_traceback(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.fail", {"message": "the table is empty"})
    local_worker(api).run(once=True)
    done = sdk.jobs.get("eats", run.id)
    assert done.status == "failed"
    assert done.error == "JobFailed: the table is empty"
    assert "about to fail: the table is empty" in done.log_tail
    assert "Traceback" in done.log_tail
    assert done.result == {}


def test_sleep_is_cancelled_while_it_runs(api: ApiHarness, background: Callable[[Worker], Any]) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
    background(local_worker(api, poll_interval_s=0.05))
    until(lambda: sdk.jobs.get("eats", run.id).status == "running")
    started = time.monotonic()
    assert sdk.jobs.cancel("eats", run.id).status == "cancelling"
    done = sdk.jobs.wait("eats", run.id, timeout=10, poll_interval=0.05)
    assert done.status == "cancelled"
    assert time.monotonic() - started < 5
    assert "sleeping for 60.0 s" in done.log_tail
    assert "slept" not in done.log_tail


def test_the_heartbeat_carries_the_log_tail_while_it_runs(api: ApiHarness, background: Callable[[Worker], Any]) -> None:
    def chatty(ctx: JobContext[Any]) -> dict[str, Any]:
        for i in range(1000):
            ctx.log.info("step %d", i)
            ctx.sleep(0.02)
        return {}

    registry = JobTypeRegistry([JobType("test.chatty", "logs a lot", chatty)])
    api.client.app.state.jobs = JobsRuntime(registry, JobsSettings())  # type: ignore[attr-defined]
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "test.chatty")
    background(local_worker(api, registry, poll_interval_s=0.05))
    until(lambda: "step 3" in sdk.jobs.get("eats", run.id).log_tail)
    sdk.jobs.cancel("eats", run.id)
    assert sdk.jobs.wait("eats", run.id, timeout=10, poll_interval=0.05).status == "cancelled"


def test_shutting_down_hands_the_run_back_for_another_worker(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
    first = local_worker(api, poll_interval_s=0.05)
    thread = threading.Thread(target=first.run)
    thread.start()
    until(lambda: sdk.jobs.get("eats", run.id).status == "running")
    first.stop(abandon=True)
    thread.join(10)
    assert not thread.is_alive()
    back = sdk.jobs.get("eats", run.id)
    assert (back.status, back.attempt, back.worker) == ("queued", 1, None)
    sdk.jobs.cancel("eats", run.id)


def test_stop_without_abandon_finishes_the_current_run(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 0.5})
    later = sdk.jobs.submit("eats", "builtin.echo")
    worker = local_worker(api, poll_interval_s=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    until(lambda: sdk.jobs.get("eats", run.id).status == "running")
    worker.stop()
    thread.join(10)
    assert sdk.jobs.get("eats", run.id).status == "succeeded"
    assert sdk.jobs.get("eats", later.id).status == "queued", "a stopping worker claims nothing more"


def test_a_worker_that_lost_its_run_stops_it_and_does_not_complete_it(
    api: ApiHarness, background: Callable[[Worker], Any]
) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
    worker = local_worker(api, poll_interval_s=30)
    thread = background(worker)
    until(lambda: sdk.jobs.get("eats", run.id).status == "running")
    with sessions_of(api)() as session, session.begin():  # as if its heartbeats had stopped reaching the API
        assert dispatch.reap_stale(session, utcnow() + timedelta(hours=1), JobsSettings()) == [run.id]
    until(lambda: sdk.jobs.get("eats", run.id).attempt == 2)
    assert thread.is_alive(), "the worker goes on, and here takes the re-queued run again"
    again = sdk.jobs.get("eats", run.id)
    assert (again.status, again.worker) == ("running", "local-test")
    actions = [e.action for e in api.sdk().audit.list(project="eats", action="job.run.").items]
    assert "job.run.complete" not in actions, "the lost attempt was not reported"
    assert actions.count("job.run.claim") == 2


def test_workers_claim_only_their_job_types(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sleep = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 0})
    echo = sdk.jobs.submit("eats", "builtin.echo")
    assert local_worker(api, job_types=["builtin.echo"]).run(once=True) == 1
    assert sdk.jobs.get("eats", echo.id).status == "succeeded"
    assert sdk.jobs.get("eats", sleep.id).status == "queued"
    with pytest.raises(ValueError, match="does not know job type"):
        local_worker(api, job_types=["builtin.nope"])


class Threshold(BaseModel):
    limit: int


def test_component_job_types_get_params_and_an_api_client(api: ApiHarness) -> None:
    def inspect_project(ctx: JobContext[Threshold]) -> Threshold:
        ctx.check_cancelled()
        with ctx.client() as client:
            project = client.projects.get(ctx.project)
        ctx.log.info("project %s, attempt %d, run %s", project.name, ctx.attempt, ctx.run_id)
        return Threshold(limit=ctx.params.limit * 2)

    def returns_junk(ctx: JobContext[Any]) -> Any:
        return ["not", "a", "dict"]

    registry = JobTypeRegistry(
        [
            JobType("test.inspect", "reads its project", inspect_project, Threshold),
            JobType("test.junk", "returns a list", returns_junk),
        ]
    )
    api.client.app.state.jobs = JobsRuntime(registry, JobsSettings())  # type: ignore[attr-defined]
    sdk = api.sdk(api.project("eats", owner="alice"))
    assert [t.name for t in sdk.jobs.job_types()] == ["test.inspect", "test.junk"]
    with pytest.raises(InvalidInput, match=r"params\.limit"):
        sdk.jobs.submit("eats", "test.inspect", {})
    good = sdk.jobs.submit("eats", "test.inspect", {"limit": 21})
    junk = sdk.jobs.submit("eats", "test.junk")
    worker = local_worker(api, registry, client_factory=lambda: Client(token=api.admin_token, http=api.client))
    assert worker.run(once=True) == 1
    assert worker.run(once=True) == 1
    done = sdk.jobs.get("eats", good.id)
    assert (done.status, done.result) == ("succeeded", {"limit": 42})
    assert f"project eats, attempt 1, run {good.id}" in done.log_tail
    failed = sdk.jobs.get("eats", junk.id)
    assert failed.status == "failed"
    assert "must return a dict" in failed.error


def test_the_embedded_worker_runs_jobs_in_the_api_process(database_url: str, tmp_path: Path) -> None:
    with harness(database_url, tmp_path / "home", embedded_worker=True, scheduler_interval_s=0.2) as api:
        sdk = api.sdk(api.project("eats", owner="alice"))
        echo = sdk.jobs.submit("eats", "builtin.echo", {"x": 1})
        fail = sdk.jobs.submit("eats", "builtin.fail", {"message": "nope"})
        done = sdk.jobs.wait("eats", echo.id, timeout=15, poll_interval=0.05)
        assert (done.status, done.result) == ("succeeded", {"x": 1})
        assert done.worker is not None
        assert done.worker.startswith("embedded@")
        assert sdk.jobs.wait("eats", fail.id, timeout=15, poll_interval=0.05).error == "JobFailed: nope"
        sleeper = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
        until(lambda: sdk.jobs.get("eats", sleeper.id).status == "running")
        sdk.jobs.cancel("eats", sleeper.id)
        assert sdk.jobs.wait("eats", sleeper.id, timeout=15, poll_interval=0.05).status == "cancelled"
        last = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
        until(lambda: sdk.jobs.get("eats", last.id).status == "running")
        started = time.monotonic()
    assert time.monotonic() - started < 8, "stopping the app stops its worker promptly"


def test_the_registry_discovers_entry_points_and_refuses_redefinitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_jobs.py").write_text(
        "from bottega.api.jobs.types import JobType\n"
        "def hello(ctx):\n    return {'hello': ctx.project}\n"
        "def job_types():\n    return [JobType('acme.hello', 'says hello', hello)]\n"
        "def clash():\n    return [JobType('builtin.echo', 'not the real echo', hello)]\n"
    )
    info = tmp_path / "acme_jobs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-jobs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[bottega.job_types]\nacme = acme_jobs:job_types\nclash = acme_jobs:clash\nbroken = acme_jobs:missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = JobTypeRegistry.discover()
    assert "acme.hello" in registry
    assert {"builtin.echo", "builtin.sleep", "builtin.fail"} <= set(registry.names())
    assert registry.get("builtin.echo").description.startswith("Log the params"), "the clash was skipped"
    assert registry.validate("builtin.sleep", {}) == {"seconds": 1.0}
    with pytest.raises(InvalidInput, match="unknown job type"):
        registry.get("acme.nope")
    with pytest.raises(ValueError, match="already defined"):
        JobTypeRegistry([*builtin_types(), JobType("builtin.echo", "other", lambda ctx: {})])
    assert len(JobTypeRegistry([*builtin_types(), *builtin_types()]).names()) == 3, "the same type twice is fine"
    sys.modules.pop("acme_jobs", None)


def test_a_result_the_api_refuses_fails_the_run_instead_of_losing_it(api: ApiHarness) -> None:
    def huge(ctx: JobContext[Any]) -> dict[str, Any]:
        return {"blob": "x" * (api.settings.max_json_bytes + 10)}

    registry = JobTypeRegistry([JobType("test.huge", "returns too much", huge)])
    api.client.app.state.jobs = JobsRuntime(registry, JobsSettings())  # type: ignore[attr-defined]
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "test.huge")
    worker = Worker(api.sdk().jobs, registry, name="http-test")  # over HTTP (the TestClient), like `bottega worker`
    assert worker.run(once=True) == 1
    done = sdk.jobs.get("eats", run.id)
    assert done.status == "failed"
    assert "the API refused the run's result" in done.error
    assert done.worker == "http-test"
