"""Model DB, versions and aliases: numbering, immutability, signatures, runs as sources, aliases and their audit."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select
from sqlalchemy.orm import Session

from bottega.api.artifacts.repository import record_blob
from bottega.api.artifacts.store import BlobStore
from bottega.api.db.tables import Project, Run, RunArtifact
from bottega.core.errors import InvalidInput, NotFound

VERSIONS = "/api/v1/projects/eats/models/eta/versions"
SIGNATURE = {
    "inputs": [{"name": "distance_km", "type": "float64"}, {"name": "hour", "type": "int32"}],
    "store_features": ["eats:restaurant_stats:prep_time_2w", "eats:courier:speed_1h"],
    "outputs": [{"name": "eta_minutes", "type": "float32", "shape": [-1]}],
}


@pytest.fixture
def owner(api: ApiHarness) -> str:
    token = api.project("eats", owner="alice")
    api.sdk(token).models.create("eats", "eta", "delivery time")
    return token


def weights(tmp_path: Path, text: str = "weights") -> Path:
    path = tmp_path / f"{uuid.uuid4().hex}.bin"
    path.write_bytes(text.encode())
    return path


def register(api: ApiHarness, token: str, tmp_path: Path, **kwargs: Any) -> int:
    files = kwargs.pop("files", {"model.bin": weights(tmp_path)})
    flavor = kwargs.pop("flavor", "xgboost")
    return api.sdk(token).models.register_version("eats", "eta", flavor, files, **kwargs).version


def blob_sha(api: ApiHarness, token: str, tmp_path: Path, text: str = "weights") -> str:
    return api.sdk(token).models.upload_blob("eats", weights(tmp_path, text)).sha256


def insert_run(api: ApiHarness, project: str, files: dict[str, bytes]) -> str:
    """A run with artifacts, written straight into the database (the runs API is another domain's)."""
    blobs: BlobStore = api.client.app.state.blobs  # type: ignore[attr-defined]
    session: Session = api.client.app.state.sessionmaker()  # type: ignore[attr-defined]
    run_id = uuid.uuid4().hex
    with session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        assert project_id is not None
        session.add(Run(id=run_id, project_id=project_id, name="train", created_by="alice"))
        session.flush()
        for path, data in files.items():
            sha, size = blobs.put_bytes(data)
            record_blob(session, sha, size)
            session.add(RunArtifact(run_id=run_id, path=path, sha256=sha, size=size))
    return run_id


def test_numbers_increase_and_everything_is_stored(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    sdk = api.sdk(owner)
    first = sdk.models.register_version(
        "eats",
        "eta",
        "xgboost",
        {"model/model.json": weights(tmp_path, "trees"), "model/config.json": weights(tmp_path, "{}")},
        signature=SIGNATURE,
        metrics={"rmse": 3.25, "mae": 2},
        evaluation={"slices": [{"city": "rome", "rmse": 3.1}], "plots": {"residuals": [0.1, -0.2]}},
        lineage={"dataset": "eats/training/2026-11", "feature_refs": ["eats:courier:speed_1h"], "code_version": "abc1"},
        description="first cut",
    )
    assert first.version == 1
    assert first.flavor == "xgboost"
    assert first.signature.model_dump(exclude_none=True) == SIGNATURE
    assert first.metrics == {"rmse": 3.25, "mae": 2.0}
    assert first.evaluation["slices"][0]["city"] == "rome"
    assert first.lineage["dataset"] == "eats/training/2026-11"
    assert first.lineage["created_by"] == "alice"
    assert first.lineage["run_id"] is None
    assert first.lineage["created_at"].startswith(str(first.created_at.year))
    assert [a.path for a in first.artifacts] == ["model/config.json", "model/model.json"]
    assert first.artifacts[0].size == 2
    assert register(api, owner, tmp_path) == 2
    assert register(api, owner, tmp_path) == 3
    page = sdk.models.list_versions("eats", "eta")
    assert [v.version for v in page.items] == [3, 2, 1]
    assert [v.version for v in sdk.models.list_versions("eats", "eta", newest_first=False, limit=2).items] == [1, 2]
    assert sdk.models.list_versions("eats", "eta", offset=2).items[0].description == "first cut"
    assert page.total == 3
    assert sdk.models.get_version("eats", "eta", 1) == first
    assert sdk.models.get_version("eats", "eta", "latest").version == 3
    assert sdk.models.get("eats", "eta").latest_version == 3
    event = sdk.audit.list(project="eats", action="model.version.create").items[-1]
    assert event.target == "project:eats/model:eta/version:1"
    assert event.details["flavor"] == "xgboost"


def test_concurrent_creates_never_share_a_number(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    sha = blob_sha(api, owner, tmp_path)
    body = {"flavor": "onnx", "artifacts": [{"path": "model.onnx", "sha256": sha}]}

    def create(_: int) -> int:
        response = api.call("POST", VERSIONS, owner, json=body)
        assert response.status_code == 201, response.text
        number: int = response.json()["version"]
        return number

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(create, range(16)))
    assert sorted(numbers) == list(range(1, 17))


def test_versions_are_immutable_except_the_description(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    register(api, owner, tmp_path, metrics={"rmse": 3.0})
    updated = api.sdk(owner).models.update_version("eats", "eta", 1, "now with notes")
    assert updated.description == "now with notes"
    assert updated.metrics == {"rmse": 3.0}
    for body in [{"metrics": {"rmse": 1.0}}, {"description": "x", "flavor": "onnx"}, {"artifacts": []}]:
        response = api.call("PATCH", f"{VERSIONS}/1", owner, json=body)
        assert response.status_code == 422, body
        assert "immutable" in response.json()["detail"]
    assert api.call("PATCH", f"{VERSIONS}/1", owner, json={}).status_code == 422
    assert api.sdk(owner).models.get_version("eats", "eta", 1).metrics == {"rmse": 3.0}
    actions = [e.action for e in api.sdk(owner).audit.list(project="eats", action="model.version.").items]
    assert actions == ["model.version.update", "model.version.create"]
    assert api.call("DELETE", f"{VERSIONS}/1", owner).status_code == 405  # no deleting history


@pytest.mark.parametrize(
    ("signature", "field"),
    [
        ({"inputs": [{"name": "x", "type": "float128"}]}, "body.signature.inputs.0.type"),
        ({"inputs": [{"name": "x"}]}, "body.signature.inputs.0.type"),
        ({"inputs": [{"name": "bad name", "type": "int32"}]}, "body.signature.inputs.0.name"),
        ({"inputs": [{"name": "x", "type": "bool"}, {"name": "x", "type": "bool"}]}, "body.signature.inputs"),
        ({"store_features": ["eats:prep_time"]}, "body.signature.store_features.0"),
        ({"store_features": ["Eats:g:f"]}, "body.signature.store_features.0"),
        ({"outputs": [{"name": "y", "type": "float32", "shape": [-2]}]}, "body.signature.outputs.0.shape.0"),
        ({"inputs": [], "extra": 1}, "body.signature.extra"),
    ],
)
def test_bad_signatures_name_the_field(
    api: ApiHarness, owner: str, tmp_path: Path, signature: dict[str, Any], field: str
) -> None:
    sha = blob_sha(api, owner, tmp_path)
    body = {"flavor": "onnx", "signature": signature, "artifacts": [{"path": "m.onnx", "sha256": sha}]}
    response = api.call("POST", VERSIONS, owner, json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"flavor": "sklearn"}, "body.flavor"),
        ({"metrics": {"rmse": "low"}}, "body.metrics.rmse"),
        ({"evaluation": {"blob": "x" * (1024 * 1024)}}, "body.evaluation"),
        ({"lineage": {"feature_refs": ["not a ref"]}}, "body.lineage"),
        ({"artifacts": [{"path": "../escape", "sha256": "0" * 64}]}, "body.artifacts.0.path"),
        ({"artifacts": [{"path": "/abs", "sha256": "0" * 64}]}, "body.artifacts.0.path"),
        ({"artifacts": [{"path": "m", "sha256": "XYZ"}]}, "body.artifacts.0.sha256"),
        ({"artifacts": []}, "body"),
        ({"from_run_artifacts": True}, "body"),
    ],
)
def test_bad_version_bodies_name_the_field(
    api: ApiHarness, owner: str, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    sha = blob_sha(api, owner, tmp_path)
    body = {"flavor": "onnx", "artifacts": [{"path": "m.onnx", "sha256": sha}], **change}
    response = api.call("POST", VERSIONS, owner, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_non_finite_numbers_are_refused(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    sha = blob_sha(api, owner, tmp_path)
    prefix = '{"flavor": "onnx", "artifacts": [{"path": "m", "sha256": "' + sha + '"}], '
    for tail in ('"metrics": {"rmse": NaN}}', '"metrics": {"rmse": Infinity}}', '"evaluation": {"a": [NaN]}}'):
        headers = {"Content-Type": "application/json"}
        response = api.call("POST", VERSIONS, owner, content=prefix + tail, headers=headers)
        assert response.status_code == 422, response.text
    assert "NaN" in response.json()["detail"]
    assert api.sdk(owner).models.list_versions("eats", "eta").total == 0


def test_missing_blobs_are_named(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    sha = blob_sha(api, owner, tmp_path)
    ghost = "f" * 64
    body = {
        "flavor": "onnx",
        "artifacts": [{"path": "a", "sha256": sha}, {"path": "b", "sha256": ghost}],
    }
    response = api.call("POST", VERSIONS, owner, json=body)
    assert response.status_code == 422
    problem = response.json()
    assert problem["field"] == "artifacts.1.sha256"
    assert ghost in problem["detail"]
    assert "'b'" in problem["detail"]
    assert api.sdk(owner).models.list_versions("eats", "eta").total == 0


def test_blobs_of_another_project_cannot_be_referenced(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    stranger = api.project("beta", owner="stranger")
    secret = api.sdk(stranger).models.upload_blob("beta", weights(tmp_path, "their secret weights")).sha256
    body = {"flavor": "onnx", "artifacts": [{"path": "stolen", "sha256": secret}]}
    response = api.call("POST", VERSIONS, owner, json=body)
    assert response.status_code == 422
    assert secret in response.json()["detail"]
    # uploading the same bytes proves possession: then the project may use them
    assert api.sdk(owner).models.upload_blob("eats", weights(tmp_path, "their secret weights")).sha256 == secret
    assert api.call("POST", VERSIONS, owner, json=body).status_code == 201


def test_register_from_run_artifacts(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    run_id = insert_run(
        api, "eats", {"model/model.json": b"trees", "model/conf.json": b"{}", "plots/roc.png": b"png", "log.txt": b"."}
    )
    sdk = api.sdk(owner)
    everything = sdk.models.register_version("eats", "eta", "xgboost", run_id=run_id, from_run_artifacts=True)
    assert [a.path for a in everything.artifacts] == ["log.txt", "model/conf.json", "model/model.json", "plots/roc.png"]
    assert everything.run_id == run_id
    assert everything.lineage["run_id"] == run_id
    some = sdk.models.register_version(
        "eats",
        "eta",
        "xgboost",
        {"extra/notes.txt": weights(tmp_path, "notes")},
        run_id=run_id,
        from_run_artifacts=["model/", "log.txt"],
    )
    assert [a.path for a in some.artifacts] == ["extra/notes.txt", "log.txt", "model/conf.json", "model/model.json"]
    run_sha = {a.path: a.sha256 for a in everything.artifacts}
    assert {a.path: a.sha256 for a in some.artifacts}["model/model.json"] == run_sha["model/model.json"]
    linked = sdk.models.register_version("eats", "eta", "python", {"m": weights(tmp_path)}, run_id=run_id)
    assert linked.run_id == run_id  # a run as lineage only: its artifacts stay out
    assert [a.path for a in linked.artifacts] == ["m"]
    with pytest.raises(InvalidInput, match="has no artifact 'nothing/'"):
        sdk.models.register_version("eats", "eta", "xgboost", run_id=run_id, from_run_artifacts=["nothing/"])
    with pytest.raises(InvalidInput, match="both in `artifacts` and in the run"):
        sdk.models.register_version(
            "eats", "eta", "xgboost", {"log.txt": weights(tmp_path)}, run_id=run_id, from_run_artifacts=True
        )
    empty = insert_run(api, "eats", {})
    with pytest.raises(InvalidInput, match="no artifacts"):
        sdk.models.register_version("eats", "eta", "xgboost", run_id=empty, from_run_artifacts=True)


def test_runs_of_other_projects_and_unknown_runs_are_refused(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    api.project("beta", owner="stranger")
    foreign = insert_run(api, "beta", {"model.bin": b"theirs"})
    sdk = api.sdk(owner)
    for run_id in (foreign, uuid.uuid4().hex):
        with pytest.raises(InvalidInput, match="does not exist in project 'eats'") as caught:
            sdk.models.register_version("eats", "eta", "xgboost", run_id=run_id, from_run_artifacts=True)
        assert caught.value.extra["field"] == "run_id"
    assert sdk.models.list_versions("eats", "eta").total == 0


def test_missing_models_versions_and_aliases_are_404(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    register(api, owner, tmp_path)
    sdk = api.sdk(owner)
    with pytest.raises(NotFound, match="no version 7"):
        sdk.models.get_version("eats", "eta", 7)
    with pytest.raises(NotFound, match="no alias 'production'"):
        sdk.models.get_version("eats", "eta", "production")
    uploads = sdk.audit.list(project="eats", action="blob.upload").total
    with pytest.raises(NotFound, match="model 'ghost'"):
        sdk.models.register_version("eats", "ghost", "python", {"m": weights(tmp_path, "new bytes")})
    assert sdk.audit.list(project="eats", action="blob.upload").total == uploads  # nothing was uploaded
    with pytest.raises(NotFound):
        sdk.models.list_versions("eats", "ghost")
    with pytest.raises(NotFound):
        sdk.models.update_version("eats", "eta", 9, "x")
    with pytest.raises(NotFound):
        sdk.models.list_artifacts("eats", "eta", 9)
    with pytest.raises(NotFound, match="no alias"):
        sdk.models.delete_alias("eats", "eta", "production")
    with pytest.raises(NotFound):
        sdk.models.list_aliases("eats", "ghost")
    sdk.models.create("eats", "empty")
    with pytest.raises(NotFound, match="no versions yet"):
        sdk.models.get_version("eats", "empty", "latest")
    assert api.call("GET", f"{VERSIONS}/0", owner).status_code == 422  # neither a number >= 1 nor an alias
    assert api.call("GET", f"{VERSIONS}/Prod!", owner).status_code == 422


def test_aliases_resolve_move_and_are_audited(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    for _ in range(3):
        register(api, owner, tmp_path)
    sdk = api.sdk(owner)
    made = sdk.models.set_alias("eats", "eta", "production", 1)
    assert (made.alias, made.version, made.updated_by) == ("production", 1, "alice")
    sdk.models.set_alias("eats", "eta", "challenger", 2)
    assert sdk.models.get_version("eats", "eta", "production").version == 1
    assert sdk.models.get_version("eats", "eta", 1).aliases == ["production"]
    moved = sdk.models.set_alias("eats", "eta", "production", 3)
    assert moved.version == 3
    assert sdk.models.get_version("eats", "eta", "production").version == 3
    assert sdk.models.get_version("eats", "eta", 1).aliases == []
    assert [(a.alias, a.version) for a in sdk.models.list_aliases("eats", "eta")] == [
        ("challenger", 2),
        ("production", 3),
    ]
    assert {v.version: v.aliases for v in sdk.models.list_versions("eats", "eta").items} == {
        3: ["production"],
        2: ["challenger"],
        1: [],
    }
    sdk.models.set_alias("eats", "eta", "production", 3)  # no change: no event
    sdk.models.delete_alias("eats", "eta", "challenger")
    events = sdk.audit.list(project="eats", action="model.alias.").items
    assert [(e.action, e.details["alias"], e.details["from"], e.details["to"]) for e in events] == [
        ("model.alias.delete", "challenger", 2, None),
        ("model.alias.set", "production", 1, 3),
        ("model.alias.set", "challenger", None, 2),
        ("model.alias.set", "production", None, 1),
    ]
    assert events[1].summary == "moved production from v1 to v3"
    assert events[1].target == "project:eats/model:eta/alias:production"


def test_bad_aliases(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    register(api, owner, tmp_path)
    sdk = api.sdk(owner)
    for name in ("latest", "1", "Prod", "-x", "a" * 64):
        with pytest.raises(InvalidInput) as caught:
            sdk.models.set_alias("eats", "eta", name, 1)
        assert "alias" in caught.value.detail, name
    with pytest.raises(InvalidInput, match="no version 5") as caught:
        sdk.models.set_alias("eats", "eta", "production", 5)
    assert caught.value.extra["field"] == "version"
    with pytest.raises(NotFound):
        sdk.models.set_alias("eats", "ghost", "production", 1)
    response = api.call("PUT", "/api/v1/projects/eats/models/eta/aliases/prod", owner, json={"version": 0})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.version"


def test_new_versions_name_store_features_the_catalog_can_define(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_text("w")
    signature = {"store_features": ["eats:Restaurant_Stats:prep_time"]}
    with pytest.raises(InvalidInput, match="the catalog cannot define it"):
        api.sdk(owner).models.register_version("eats", "eta", "xgboost", {"model.bin": weights}, signature=signature)
