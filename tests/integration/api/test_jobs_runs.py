"""Job types and runs: submit, list, get, cancel; with their error cases, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound

WORKER = "test-worker"


def test_job_types_list_the_builtins_with_their_params_schema(api: ApiHarness) -> None:
    sdk = api.sdk(api.user("alice"))
    types = {t.name: t for t in sdk.jobs.job_types()}
    assert {"builtin.echo", "builtin.sleep", "builtin.fail"} <= set(types)
    sleep = types["builtin.sleep"]
    assert "cancel" in sleep.description
    assert sleep.params_schema["properties"]["seconds"]["type"] == "number"
    assert types["builtin.fail"].params_schema["properties"]["message"]["type"] == "string"
    assert api.call("GET", "/api/v1/job-types", None).status_code == 401


def test_submit_get_and_list_newest_first_with_filters(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    first = sdk.jobs.submit("eats", "builtin.echo", {"greeting": "hi"})
    assert first.status == "queued"
    assert first.project == "eats"
    assert first.params == {"greeting": "hi"}
    assert first.attempt == 0
    assert first.created_by == "alice"
    assert first.schedule is None
    assert first.scheduled_for is None
    assert first.started_at is None
    assert first.log_tail == ""
    second = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 5})
    third = sdk.jobs.submit("eats", "builtin.sleep")
    assert third.params == {"seconds": 1.0}, "defaults are filled in and recorded"

    got = sdk.jobs.get("eats", second.id)
    assert got.model_dump(exclude={"log_tail", "result"}) == second.model_dump(exclude={"log_tail", "result"})
    page = sdk.jobs.list("eats")
    assert [r.id for r in page.items] == [third.id, second.id, first.id]
    assert page.total == 3
    assert "log_tail" not in page.items[0].model_dump()
    paged = sdk.jobs.list("eats", limit=2, offset=1)
    assert [r.id for r in paged.items] == [second.id, first.id]
    assert paged.next_offset is None
    assert sdk.jobs.list("eats", limit=1).next_offset == 1
    assert [r.id for r in sdk.jobs.list("eats", job_type="builtin.echo").items] == [first.id]
    assert sdk.jobs.list("eats", status="running").total == 0
    assert sdk.jobs.list("eats", status="queued").total == 3
    assert sdk.jobs.list("eats", schedule="nope").total == 0
    response = api.call("GET", "/api/v1/projects/eats/jobs/runs?status=exploded", api.tokens["alice"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.status"


def test_unknown_job_type_and_invalid_params_are_422_naming_the_field(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    with pytest.raises(InvalidInput, match=r"unknown job type 'builtin\.nope'") as unknown:
        sdk.jobs.submit("eats", "builtin.nope")
    assert unknown.value.extra["field"] == "job_type"
    with pytest.raises(InvalidInput, match=r"params\.seconds") as invalid:
        sdk.jobs.submit("eats", "builtin.sleep", {"seconds": "long"})
    assert invalid.value.extra["errors"][0]["field"] == "params.seconds"
    with pytest.raises(InvalidInput, match=r"params\.colour"):
        sdk.jobs.submit("eats", "builtin.sleep", {"colour": "red"})
    with pytest.raises(InvalidInput, match=r"params\.seconds"):
        sdk.jobs.submit("eats", "builtin.sleep", {"seconds": -1})
    for body, field in [
        ({"job_type": "Bad Type!"}, "body.job_type"),
        ({"job_type": "builtin.echo", "params": [1, 2]}, "body.params"),
        ({"job_type": "builtin.echo", "extra": 1}, "body.extra"),
        ({}, "body.job_type"),
    ]:
        response = api.call("POST", "/api/v1/projects/eats/jobs/runs", token, json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"][0]["field"] == field
    assert sdk.jobs.list("eats").total == 0


def test_missing_project_and_run_are_404(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        sdk.jobs.submit("ghost", "builtin.echo")
    with pytest.raises(NotFound, match="job run 'f00' does not exist"):
        sdk.jobs.get("eats", "f00")
    with pytest.raises(NotFound):
        sdk.jobs.cancel("eats", "f00")
    response = api.call("GET", "/api/v1/projects/eats/jobs/runs/bad!id", api.tokens["alice"])
    assert response.status_code in (404, 422)


def test_a_run_of_another_project_is_not_found_through_this_one(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.projects.create("rides")
    run = sdk.jobs.submit("rides", "builtin.echo")
    with pytest.raises(NotFound):
        sdk.jobs.get("eats", run.id)
    with pytest.raises(Forbidden):
        api.sdk(api.user("bob")).jobs.get("rides", run.id)


def test_cancel_a_queued_run_at_once_then_409(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
    cancelled = sdk.jobs.cancel("eats", run.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert cancelled.cancel_requested is False
    with pytest.raises(Conflict, match="already finished"):
        sdk.jobs.cancel("eats", run.id)
    assert api.sdk().jobs.claim(WORKER) is None, "a cancelled run is never claimed"


def test_cancel_a_running_run_asks_its_worker(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.sleep", {"seconds": 60})
    admin = api.sdk().jobs
    claimed = admin.claim(WORKER)
    assert claimed is not None
    assert claimed.id == run.id
    asked = sdk.jobs.cancel("eats", run.id)
    assert asked.status == "cancelling"
    assert asked.cancel_requested is True
    assert asked.finished_at is None
    assert sdk.jobs.cancel("eats", run.id).status == "cancelling", "asking twice is harmless"
    reply = admin.heartbeat(run.id, worker=WORKER, attempt=1)
    assert reply.cancel_requested is True
    done = admin.complete(run.id, worker=WORKER, attempt=1, status="cancelled", error="stopped", log_tail="bye\n")
    assert done.status == "cancelled"
    assert done.log_tail == "bye\n"
    with pytest.raises(Conflict):
        sdk.jobs.cancel("eats", run.id)


def test_finished_runs_cannot_be_cancelled(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo", {"a": 1})
    admin = api.sdk().jobs
    assert admin.claim(WORKER) is not None
    admin.complete(run.id, worker=WORKER, attempt=1, status="succeeded", result={"a": 1})
    with pytest.raises(Conflict, match="succeeded"):
        sdk.jobs.cancel("eats", run.id)


def test_archived_projects_take_no_new_runs(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    run = sdk.jobs.submit("eats", "builtin.echo")
    sdk.projects.archive("eats")
    with pytest.raises(Conflict, match="archived"):
        sdk.jobs.submit("eats", "builtin.echo")
    with pytest.raises(Conflict, match="archived"):
        sdk.jobs.cancel("eats", run.id)
    assert sdk.jobs.get("eats", run.id).status == "queued", "reads still work"


def test_every_run_mutation_is_audited(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    queued = sdk.jobs.submit("eats", "builtin.echo")
    sdk.jobs.cancel("eats", queued.id)
    run = sdk.jobs.submit("eats", "builtin.echo")
    admin = api.sdk().jobs
    assert admin.claim(WORKER) is not None
    admin.complete(run.id, worker=WORKER, attempt=1, status="succeeded")
    events = api.sdk().audit.list(project="eats", action="job.").items
    actions = [(e.action, e.actor, e.target) for e in reversed(events)]
    assert actions == [
        ("job.run.submit", "alice", f"project:eats/job-run:{queued.id}"),
        ("job.run.cancel", "alice", f"project:eats/job-run:{queued.id}"),
        ("job.run.submit", "alice", f"project:eats/job-run:{run.id}"),
        ("job.run.claim", "admin", f"project:eats/job-run:{run.id}"),
        ("job.run.complete", "admin", f"project:eats/job-run:{run.id}"),
    ]
