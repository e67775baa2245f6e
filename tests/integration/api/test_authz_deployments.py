"""Authorization matrix for deployments: viewers read (and watch), editors create/update/roll back, owners undeploy."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import ApiHarness
from authz import CALLERS, PROJECT, Case, check
from sqlalchemy import select

from bottega.api.db.tables import Model, ModelVersion, Project

ITEM = "/api/v1/projects/{project}/deployments/{name}"
SPEC: dict[str, Any] = {"targets": [{"model": "m", "version": 2, "weight": 100}]}


def models(api: ApiHarness, project: str = PROJECT) -> None:
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        model = Model(project_id=project_id, name="m", created_by="owner")
        session.add(model)
        session.flush()
        session.add_all(ModelVersion(model_id=model.id, version=v, flavor="onnx", created_by="owner") for v in (1, 2))


def deployed(api: ApiHarness, owner: str) -> dict[str, str]:
    """Model `m` (versions 1 and 2) and deployment `d` at revision 2, made by the owner."""
    models(api)
    sdk = api.sdk(owner).deployments
    sdk.create(PROJECT, "d", {"targets": [{"model": "m", "version": 1, "weight": 100}]})
    sdk.update(PROJECT, "d", SPEC, expected_revision=1)
    return {"name": "d"}


def only_models(api: ApiHarness, owner: str) -> dict[str, str]:
    models(api)
    return {}


CASES = [
    Case("deployment.create", "POST", "/api/v1/projects/{project}/deployments", "editor", success=201,
         json={"name": "new", "kind": "online", "spec": SPEC}, setup=only_models),
    Case("deployment.list", "GET", "/api/v1/projects/{project}/deployments", "viewer", setup=deployed),
    Case("deployment.read", "GET", ITEM, "viewer", setup=deployed),
    Case("deployment.revisions", "GET", ITEM + "/revisions", "viewer", setup=deployed),
    Case("deployment.revision", "GET", ITEM + "/revisions/1", "viewer", setup=deployed),
    Case("deployment.update", "PUT", ITEM, "editor", json={"spec": SPEC, "expected_revision": 2}, setup=deployed),
    Case("deployment.update.if_match", "PUT", ITEM, "editor", json={"spec": SPEC, "reason": "r"}, setup=deployed,
         kwargs={"headers": {"If-Match": '"2"'}}),
    Case("deployment.rollback", "POST", ITEM + "/rollback", "editor", json={"reason": "r"}, setup=deployed),
    Case("deployment.undeploy", "DELETE", ITEM, "owner", setup=deployed, kwargs={"params": {"reason": "r"}}),
    Case("deployment.watch", "GET", "/api/v1/deployments/watch", "viewer", setup=deployed,
         kwargs={"params": {"project": PROJECT, "since": 0, "timeout": 0}}),
]  # fmt: skip


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


def test_project_scoped_key_reaches_only_its_project(api: ApiHarness) -> None:
    owner = api.project("alpha", owner="owner")
    api.project("beta", owner="owner")
    for project in ("alpha", "beta"):
        models(api, project)
        api.sdk(owner).deployments.create(project, "d", SPEC)
    scoped = api.sdk(owner).keys.create("alpha only", project="alpha").token
    assert api.call("GET", "/api/v1/projects/alpha/deployments/d", scoped).status_code == 200
    assert api.call("GET", "/api/v1/projects/beta/deployments/d", scoped).status_code == 403
    body = {"spec": SPEC, "expected_revision": 1}
    assert api.call("PUT", "/api/v1/projects/beta/deployments/d", scoped, json=body).status_code == 403
    assert api.call("PUT", "/api/v1/projects/alpha/deployments/d", scoped, json=body).status_code == 200
    feed = api.call("GET", "/api/v1/deployments/watch", scoped, params={"since": 0, "timeout": 0}).json()
    assert {(c["project"], c["revision"]) for c in feed["changes"]} == {("alpha", 1), ("alpha", 2)}


def test_failed_authorization_changes_nothing(api: ApiHarness) -> None:
    owner = api.project("alpha", owner="owner")
    viewer = api.user("viewer", "alpha", "viewer")
    deployed(api, owner)
    body = {"spec": SPEC, "expected_revision": 2}
    assert api.call("PUT", "/api/v1/projects/alpha/deployments/d", viewer, json=body).status_code == 403
    assert api.call("DELETE", "/api/v1/projects/alpha/deployments/d", viewer).status_code == 403
    assert api.sdk(owner).deployments.get("alpha", "d").revision == 2
    assert api.sdk().audit.list(action="deployment.").total == 2
