"""Authorization matrix for jobs: viewers read, editors submit/cancel/schedule, owners delete schedules; the worker
protocol (claim, heartbeat, complete) is for admin keys only."""

from __future__ import annotations

import pytest
from api_harness import ApiHarness
from authz import CALLERS, PROJECT, Case, check, world

MONTHLY = "0 0 1 * *"
RUNS = "/api/v1/projects/{project}/jobs/runs"
SCHEDULES = "/api/v1/projects/{project}/jobs/schedules"


def a_run(api: ApiHarness, owner: str) -> dict[str, str]:
    return {"run_id": api.sdk(owner).jobs.submit(PROJECT, "builtin.echo").id}


def a_schedule(api: ApiHarness, owner: str) -> dict[str, str]:
    api.sdk(owner).jobs.create_schedule(PROJECT, "nightly", "builtin.echo", MONTHLY)
    return {"name": "nightly"}


CASES = [
    Case("runs.list", "GET", RUNS, "viewer"),
    Case("runs.get", "GET", RUNS + "/{run_id}", "viewer", setup=a_run),
    Case("runs.submit", "POST", RUNS, "editor", json={"job_type": "builtin.echo", "params": {}}, success=201),
    Case("runs.cancel", "POST", RUNS + "/{run_id}/cancel", "editor", setup=a_run),
    Case("schedules.list", "GET", SCHEDULES, "viewer"),
    Case("schedules.get", "GET", SCHEDULES + "/{name}", "viewer", setup=a_schedule),
    Case(
        "schedules.create",
        "POST",
        SCHEDULES,
        "editor",
        json={"name": "hourly", "job_type": "builtin.echo", "cron": "0 * * * *"},
        success=201,
    ),
    Case("schedules.update", "PATCH", SCHEDULES + "/{name}", "editor", json={"enabled": False}, setup=a_schedule),
    Case("schedules.delete", "DELETE", SCHEDULES + "/{name}", "owner", success=204, setup=a_schedule),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


ADMIN_ONLY = ["claim", "heartbeat", "complete"]


def _admin_call(api: ApiHarness, endpoint: str, token: str | None) -> int:
    admin = api.sdk().jobs
    claimed = admin.claim("w1")
    assert claimed is not None
    if endpoint == "claim":
        api.sdk(api.tokens["owner"]).jobs.submit(PROJECT, "builtin.echo")
        return api.call("POST", "/api/v1/jobs/claim", token, json={"worker": "w2"}).status_code
    body = {"worker": "w1", "attempt": 1}
    if endpoint == "complete":
        body["status"] = "succeeded"
    return api.call("POST", f"/api/v1/jobs/runs/{claimed.id}/{endpoint}", token, json=body).status_code


@pytest.mark.parametrize("caller", [*CALLERS, "admin"])
@pytest.mark.parametrize("endpoint", ADMIN_ONLY)
def test_the_worker_protocol_needs_an_admin_key(api: ApiHarness, endpoint: str, caller: str) -> None:
    tokens = world(api)
    tokens["admin"] = api.admin_token
    api.sdk(api.tokens["owner"]).jobs.submit(PROJECT, "builtin.echo")
    status = _admin_call(api, endpoint, tokens[caller])
    expected = {"no-token": 401, "bad-token": 401, "admin": 200}.get(caller, 403)
    assert status == expected, f"{endpoint} as {caller}"


def test_job_types_need_any_valid_key(api: ApiHarness) -> None:
    tokens = world(api)
    for caller in CALLERS:
        status = api.call("GET", "/api/v1/job-types", tokens[caller]).status_code
        assert status == (401 if caller in ("no-token", "bad-token") else 200), caller


def test_a_key_scoped_to_another_project_sees_no_runs(api: ApiHarness) -> None:
    owner = api.project("alpha", owner="owner")
    api.project("beta", owner="owner")
    run = api.sdk(owner).jobs.submit("alpha", "builtin.echo")
    scoped = api.sdk(owner).keys.create("beta only", project="beta").token
    assert api.call("GET", f"/api/v1/projects/alpha/jobs/runs/{run.id}", scoped).status_code == 403
    assert api.call("GET", "/api/v1/projects/alpha/jobs/runs", scoped).status_code == 403
    assert api.call("GET", "/api/v1/projects/beta/jobs/runs", scoped).status_code == 200
