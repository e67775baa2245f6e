"""The worker protocol: claim, heartbeat, complete (admin keys), concurrent claims, and lost-run recovery."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from api_harness import ApiHarness
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.auth.principal import Principal
from bottega.api.db.base import utcnow
from bottega.api.jobs import dispatch
from bottega.api.jobs.runtime import JobsSettings
from bottega.api.jobs.schemas import LOG_TAIL_MAX_BYTES, ClaimRequest
from bottega.core.errors import Conflict, Forbidden, NotFound

W1, W2 = "worker-1", "worker-2"


def sessions_of(api: ApiHarness) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    return factory


def test_claim_takes_the_oldest_queued_run_of_the_given_types(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    admin = api.sdk().jobs
    response = api.call("POST", "/api/v1/jobs/claim", api.admin_token, json={"worker": W1})
    assert response.status_code == 204
    assert admin.claim(W1) is None
    echo = sdk.jobs.submit("eats", "builtin.echo", {"n": 1})
    sleep = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 1})
    echo2 = sdk.jobs.submit("eats", "builtin.echo", {"n": 2})
    assert admin.claim(W1, []) is None, "an empty type list matches nothing"
    first = admin.claim(W1, ["builtin.sleep"])
    assert first is not None
    assert first.id == sleep.id
    assert (first.project, first.job_type, first.params) == ("eats", "builtin.sleep", {"seconds": 1.0})
    assert first.attempt == 1
    assert first.worker == W1
    assert first.heartbeat_interval_s > 0
    assert first.heartbeat_timeout_s > first.heartbeat_interval_s
    second = admin.claim(W2)
    assert second is not None
    assert second.id == echo.id
    third = admin.claim(W2, ["builtin.echo", "builtin.fail"])
    assert third is not None
    assert third.id == echo2.id
    assert admin.claim(W2) is None
    running = sdk.jobs.get("eats", sleep.id)
    assert (running.status, running.worker, running.attempt) == ("running", W1, 1)
    assert running.started_at is not None
    assert running.heartbeat_at is not None
    bad = api.call("POST", "/api/v1/jobs/claim", api.admin_token, json={"worker": "has space"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.worker"


def test_heartbeat_records_the_log_tail_and_rejects_other_workers(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo")
    admin = api.sdk().jobs
    assert admin.claim(W1) is not None
    before = sdk.jobs.get("eats", run.id).heartbeat_at
    reply = admin.heartbeat(run.id, worker=W1, attempt=1, log_tail="line 1\nline 2\n")
    assert (reply.status, reply.cancel_requested) == ("running", False)
    after = sdk.jobs.get("eats", run.id)
    assert after.log_tail == "line 1\nline 2\n"
    assert before is not None
    assert after.heartbeat_at is not None
    assert after.heartbeat_at >= before
    admin.heartbeat(run.id, worker=W1, attempt=1)
    assert sdk.jobs.get("eats", run.id).log_tail == "line 1\nline 2\n", "no log_tail keeps the last one"
    with pytest.raises(Conflict, match="no longer"):
        admin.heartbeat(run.id, worker=W2, attempt=1)
    with pytest.raises(Conflict, match="no longer"):
        admin.heartbeat(run.id, worker=W1, attempt=2)
    with pytest.raises(NotFound):
        admin.heartbeat("0" * 32, worker=W1, attempt=1)
    response = api.call("POST", f"/api/v1/jobs/runs/{run.id}/heartbeat", api.admin_token, json={"worker": W1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.attempt"


def test_complete_records_the_outcome_once(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo", {"x": 1})
    admin = api.sdk().jobs
    assert admin.claim(W1) is not None
    with pytest.raises(Conflict):
        admin.complete(run.id, worker=W2, attempt=1, status="succeeded")
    done = admin.complete(run.id, worker=W1, attempt=1, status="succeeded", result={"x": 1}, log_tail="ok\n")
    assert (done.status, done.result, done.log_tail, done.error) == ("succeeded", {"x": 1}, "ok\n", "")
    assert done.finished_at is not None
    assert done.started_at is not None
    assert done.finished_at >= done.started_at
    with pytest.raises(Conflict, match="succeeded, not running"):
        admin.complete(run.id, worker=W1, attempt=1, status="failed")
    with pytest.raises(Conflict):
        admin.heartbeat(run.id, worker=W1, attempt=1)
    with pytest.raises(NotFound):
        admin.complete("0" * 32, worker=W1, attempt=1, status="failed")
    response = api.call(
        "POST",
        f"/api/v1/jobs/runs/{run.id}/complete",
        api.admin_token,
        json={"worker": W1, "attempt": 1, "status": "exploded"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.status"


def test_a_failed_run_keeps_its_error_and_a_long_log_is_clipped(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.fail", {"message": "bad data"})
    admin = api.sdk().jobs
    assert admin.claim(W1) is not None
    lines = "".join(f"line {i:06d} " + "x" * 500 + "\n" for i in range(300))
    done = admin.complete(run.id, worker=W1, attempt=1, status="failed", error="JobFailed: bad data", log_tail=lines)
    assert done.status == "failed"
    assert done.error == "JobFailed: bad data"
    assert len(done.log_tail.encode()) <= LOG_TAIL_MAX_BYTES
    assert done.log_tail.endswith("line 000299 " + "x" * 500 + "\n"), "the tail keeps the end"


def test_handing_a_run_back_requeues_it_for_the_next_attempt(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo")
    admin = api.sdk().jobs
    assert admin.claim(W1) is not None
    back = admin.complete(run.id, worker=W1, attempt=1, status="queued")
    assert (back.status, back.worker, back.started_at, back.finished_at) == ("queued", None, None, None)
    again = admin.claim(W2)
    assert again is not None
    assert (again.id, again.attempt, again.worker) == (run.id, 2, W2)
    sdk.jobs.cancel("eats", run.id)
    assert admin.complete(run.id, worker=W2, attempt=2, status="queued").status == "cancelled", (
        "a run handed back after a cancel request is cancelled, not re-queued"
    )
    actions = [e.action for e in api.sdk().audit.list(project="eats", action="job.run.").items]
    assert "job.run.release" in actions


def test_only_admin_keys_run_the_worker_protocol(api: ApiHarness) -> None:
    owner = api.sdk(api.project("eats", owner="alice"))
    run = owner.jobs.submit("eats", "builtin.echo")
    with pytest.raises(Forbidden, match="admin"):
        owner.jobs.claim(W1)
    assert api.sdk().jobs.claim(W1) is not None
    with pytest.raises(Forbidden):
        owner.jobs.heartbeat(run.id, worker=W1, attempt=1)
    with pytest.raises(Forbidden):
        owner.jobs.complete(run.id, worker=W1, attempt=1, status="succeeded")
    assert owner.jobs.get("eats", run.id).status == "running"


def test_concurrent_claims_never_hand_out_a_run_twice(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    submitted = {sdk.jobs.submit("eats", "builtin.echo", {"i": i}).id for i in range(24)}
    sessions = sessions_of(api)
    settings = JobsSettings()
    principal = Principal(user="admin", key_id="x", is_admin=True)
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def claimer(name: str) -> None:
        mine: list[str] = []
        try:
            barrier.wait()
            while True:
                with sessions() as session, session.begin():
                    claimed = dispatch.claim(session, principal, ClaimRequest(worker=name), settings)
                if claimed is None:
                    break
                mine.append(claimed.id)
        except BaseException as exc:
            errors.append(exc)
        claims[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    everything = [run_id for ids in claims.values() for run_id in ids]
    assert sorted(everything) == sorted(submitted), "each run claimed exactly once"
    page = sdk.jobs.list("eats", status="running", limit=100)
    assert {r.id: r.worker for r in page.items} == {run_id: w for w, ids in claims.items() for run_id in ids}


def test_lost_runs_are_requeued_then_failed_after_max_attempts(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 100})
    admin = api.sdk().jobs
    settings = JobsSettings(heartbeat_timeout_s=30, max_attempts=2)
    sessions = sessions_of(api)

    def reap(after_s: float) -> list[str]:
        with sessions() as session, session.begin():
            return dispatch.reap_stale(session, utcnow() + timedelta(seconds=after_s), settings)

    assert admin.claim(W1) is not None
    assert reap(10) == [], "a fresh heartbeat is not stale"
    assert reap(31) == [run.id]
    lost = sdk.jobs.get("eats", run.id)
    assert (lost.status, lost.worker, lost.attempt) == ("queued", None, 1)
    assert "stopped heartbeating" in lost.error
    with pytest.raises(Conflict):
        admin.heartbeat(run.id, worker=W1, attempt=1)
    second = admin.claim(W2)
    assert second is not None
    assert second.attempt == 2
    assert sdk.jobs.get("eats", run.id).error == ""
    with pytest.raises(Conflict, match="no longer"):
        admin.complete(run.id, worker=W1, attempt=1, status="succeeded")
    assert reap(31) == [run.id]
    failed = sdk.jobs.get("eats", run.id)
    assert failed.status == "failed"
    assert "gave up after 2 attempts" in failed.error
    assert failed.finished_at is not None
    actions = [e.action for e in api.sdk().audit.list(project="eats", action="job.run.").items]
    assert actions[:2] == ["job.run.fail", "job.run.claim"]
    assert "job.run.requeue" in actions


def test_a_lost_run_whose_cancel_was_requested_is_cancelled(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 100})
    assert api.sdk().jobs.claim(W1) is not None
    sdk.jobs.cancel("eats", run.id)
    with sessions_of(api)() as session, session.begin():
        dispatch.reap_stale(session, utcnow() + timedelta(hours=1), JobsSettings())
    assert sdk.jobs.get("eats", run.id).status == "cancelled"
