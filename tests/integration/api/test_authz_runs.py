"""Authorization matrix for runs: every endpoint x every kind of caller (viewers read, editors write, owners delete)."""

from __future__ import annotations

import hashlib

import pytest
from api_harness import ApiHarness
from authz import CALLERS, PROJECT, Case, check

RUN = "/api/v1/projects/{project}/runs/{run}"
CONTENT = b"artifact bytes"


def one_run(api: ApiHarness, owner: str) -> dict[str, str]:
    sdk = api.sdk(owner)
    run = sdk.runs.create(PROJECT, "trainer", params={"lr": 0.1}, tags={"team": "ranking"})
    sdk.runs.log_metric(PROJECT, run.id, "loss", 0.5)
    return {"run": run.id}


def run_with_artifact(api: ApiHarness, owner: str) -> dict[str, str]:
    values = one_run(api, owner)
    headers = {"Content-Type": "application/octet-stream"}
    response = api.call(
        "PUT",
        f"/api/v1/projects/{PROJECT}/runs/{values['run']}/artifacts/model.bin",
        owner,
        content=CONTENT,
        headers=headers,
    )
    assert response.status_code == 201
    return values


def two_runs(api: ApiHarness, owner: str) -> dict[str, str]:
    first, second = one_run(api, owner), one_run(api, owner)
    return {"run": first["run"], "other": second["run"]}


UPLOAD = {
    "content": CONTENT,
    "headers": {"Content-Type": "application/octet-stream", "X-Bottega-Sha256": hashlib.sha256(CONTENT).hexdigest()},
}
CASES = [
    Case("run.create", "POST", "/api/v1/projects/{project}/runs", "editor", json={"name": "r"}, success=201),
    Case("run.list", "GET", "/api/v1/projects/{project}/runs", "viewer", setup=one_run),
    Case("run.get", "GET", RUN, "viewer", setup=one_run),
    Case("run.compare", "GET", "/api/v1/projects/{project}/runs/compare?ids={run},{other}", "viewer", setup=two_runs),
    Case("run.update", "PATCH", RUN, "editor", json={"status": "finished"}, setup=one_run),
    Case("run.delete", "DELETE", RUN, "owner", success=204, setup=one_run),
    Case("run.params", "POST", RUN + "/params", "editor", json={"params": {"depth": 6}}, setup=one_run),
    Case(
        "run.metrics",
        "POST",
        RUN + "/metrics",
        "editor",
        json={"metrics": [{"key": "loss", "value": 0.4, "step": 1}]},
        setup=one_run,
    ),
    Case("run.metric.history", "GET", RUN + "/metrics/loss", "viewer", setup=one_run),
    Case("run.tags.put", "PUT", RUN + "/tags", "editor", json={"tags": {"stage": "prod"}}, setup=one_run),
    Case("run.tag.delete", "DELETE", RUN + "/tags/team", "editor", success=204, setup=one_run),
    Case("run.artifact.put", "PUT", RUN + "/artifacts/model.bin", "editor", success=201, setup=one_run, kwargs=UPLOAD),
    Case("run.artifacts.list", "GET", RUN + "/artifacts", "viewer", setup=run_with_artifact),
    Case("run.artifact.get", "GET", RUN + "/artifacts/model.bin", "viewer", setup=run_with_artifact),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


def test_refused_upload_stores_nothing(api: ApiHarness) -> None:
    owner = api.project(PROJECT, owner="owner")
    viewer = api.user("viewer", PROJECT, "viewer")
    run = one_run(api, owner)["run"]
    path = f"/api/v1/projects/{PROJECT}/runs/{run}/artifacts/model.bin"
    assert api.call("PUT", path, viewer, **UPLOAD).status_code == 403
    assert not (api.settings.home / "artifacts" / "blobs").exists()
    assert api.sdk(owner).runs.list_artifacts(PROJECT, run).total == 0


def test_project_scoped_key_sees_only_its_project(api: ApiHarness) -> None:
    owner = api.project(PROJECT, owner="owner")
    api.project("beta", owner="owner")
    sdk = api.sdk(owner)
    beta_run = sdk.runs.create("beta", "b").id
    scoped = api.sdk(sdk.keys.create("alpha only", project=PROJECT).token)
    assert scoped.runs.create(PROJECT, "a").name == "a"
    assert api.call("GET", f"/api/v1/projects/beta/runs/{beta_run}", scoped.token).status_code == 403
    assert api.call("GET", "/api/v1/projects/beta/runs", scoped.token).status_code == 403
