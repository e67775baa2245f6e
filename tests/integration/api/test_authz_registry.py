"""Authorization matrix of the model DB: blobs, models, versions, artifacts and aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_harness import ApiHarness
from authz import CALLERS, PROJECT, Case, check

OCTET = {"Content-Type": "application/octet-stream"}
MODEL = "/api/v1/projects/{project}/models/{model}"
VERSION = MODEL + "/versions/1"


def with_model(api: ApiHarness, owner: str) -> dict[str, str]:
    api.sdk(owner).models.create(PROJECT, "m1")
    return {"model": "m1"}


def with_version(api: ApiHarness, owner: str) -> dict[str, str]:
    values = with_model(api, owner)
    upload = api.call("PUT", f"/api/v1/projects/{PROJECT}/blobs", owner, content=b"weights", headers=OCTET)
    sha = upload.json()["sha256"]
    body = {"flavor": "onnx", "artifacts": [{"path": "model.onnx", "sha256": sha}]}
    created = api.call("POST", f"/api/v1/projects/{PROJECT}/models/m1/versions", owner, json=body)
    assert created.status_code == 201, created.text
    return {**values, "sha": sha}


def with_alias(api: ApiHarness, owner: str) -> dict[str, str]:
    values = with_version(api, owner)
    api.sdk(owner).models.set_alias(PROJECT, "m1", "production", 1)
    return values


CASES = [
    Case(
        "blob.upload",
        "PUT",
        "/api/v1/projects/{project}/blobs",
        "editor",
        success=201,
        kwargs={"content": b"some bytes", "headers": OCTET},
    ),
    Case("blob.read", "GET", "/api/v1/projects/{project}/blobs/{sha}", "viewer", setup=with_version),
    Case("model.create", "POST", "/api/v1/projects/{project}/models", "editor", json={"name": "m2"}, success=201),
    Case("model.list", "GET", "/api/v1/projects/{project}/models", "viewer", setup=with_model),
    Case("model.read", "GET", MODEL, "viewer", setup=with_model),
    Case("model.update", "PATCH", MODEL, "editor", json={"description": "new"}, setup=with_model),
    Case("model.delete", "DELETE", MODEL, "owner", success=204, setup=with_version),
    Case(
        "version.create",
        "POST",
        MODEL + "/versions",
        "editor",
        json={"flavor": "python", "artifacts": [{"path": "again.onnx", "sha256": "{sha}"}]},
        success=201,
        setup=with_version,
    ),
    Case("version.list", "GET", MODEL + "/versions", "viewer", setup=with_version),
    Case("version.read", "GET", VERSION, "viewer", setup=with_version),
    Case("version.read.alias", "GET", MODEL + "/versions/production", "viewer", setup=with_alias),
    Case("version.update", "PATCH", VERSION, "editor", json={"description": "notes"}, setup=with_version),
    Case("artifact.list", "GET", VERSION + "/artifacts", "viewer", setup=with_version),
    Case("artifact.download", "GET", VERSION + "/artifacts/model.onnx", "viewer", setup=with_version),
    Case("version.verify", "POST", VERSION + "/verify", "viewer", setup=with_version),
    Case("alias.list", "GET", MODEL + "/aliases", "viewer", setup=with_alias),
    Case("alias.set", "PUT", MODEL + "/aliases/production", "editor", json={"version": 1}, setup=with_version),
    Case("alias.delete", "DELETE", MODEL + "/aliases/production", "editor", success=204, setup=with_alias),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


def test_a_key_scoped_to_another_project_sees_no_models(api: ApiHarness) -> None:
    owner = api.project(PROJECT, owner="owner")
    api.project("beta", owner="owner")
    with_version(api, owner)
    scoped = api.sdk(owner).keys.create("beta only", project="beta").token
    assert api.call("GET", "/api/v1/projects/beta/models", scoped).status_code == 200
    assert api.call("GET", f"/api/v1/projects/{PROJECT}/models", scoped).status_code == 403
    assert (
        api.call("GET", f"/api/v1/projects/{PROJECT}/models/m1/versions/1/artifacts/model.onnx", scoped).status_code
        == 403
    )
    upload = api.call("PUT", f"/api/v1/projects/{PROJECT}/blobs", scoped, content=b"x", headers=OCTET)
    assert upload.status_code == 403


def test_refused_uploads_store_nothing(api: ApiHarness) -> None:
    owner = api.project(PROJECT, owner="owner")
    viewer = api.user("viewer", PROJECT, "viewer")
    response = api.call("PUT", f"/api/v1/projects/{PROJECT}/blobs", viewer, content=b"not yours", headers=OCTET)
    assert response.status_code == 403
    blobs = api.settings.resolved_artifacts_url()
    assert not (Path(blobs) / "blobs").exists()
    assert (
        api.call("PUT", f"/api/v1/projects/{PROJECT}/blobs", owner, content=b"mine", headers=OCTET).status_code == 201
    )
