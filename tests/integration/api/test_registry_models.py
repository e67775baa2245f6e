"""Model DB, models: create, list (pagination, name substring, tags), get, update, delete; with their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound

MODELS = "/api/v1/projects/eats/models"


def _version(api: ApiHarness, token: str, tmp_path: Path, model: str) -> int:
    local = tmp_path / f"{model}.bin"
    local.write_bytes(f"weights of {model}".encode())
    sdk = api.sdk(token)
    return sdk.models.register_version("eats", model, "python", {"model.bin": local}).version


def test_create_get_update(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    created = sdk.models.create("eats", "eta", "delivery time", tags={"team": "eats", "task": "regression"})
    assert created.name == "eta"
    assert created.tags == {"team": "eats", "task": "regression"}
    assert created.created_by == "alice"
    assert created.latest_version is None
    assert created.aliases == {}
    fetched = sdk.models.get("eats", "eta")
    assert fetched == created
    updated = sdk.models.update("eats", "eta", description="ETA in minutes", tags={"task": None, "owner": "bob"})
    assert updated.description == "ETA in minutes"
    assert updated.tags == {"team": "eats", "owner": "bob"}
    assert updated.updated_at >= created.updated_at
    assert sdk.models.update("eats", "eta", tags={"team": "rides"}).tags == {"team": "rides", "owner": "bob"}
    events = sdk.audit.list(project="eats", action="model.").items
    assert [e.action for e in events] == ["model.update", "model.update", "model.create"]
    assert events[0].target == "project:eats/model:eta"


def test_an_update_that_changes_nothing_writes_no_audit_event(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.models.create("eats", "eta", "same", tags={"a": "1"})
    sdk.models.update("eats", "eta", description="same", tags={"a": "1", "gone": None})
    assert [e.action for e in sdk.audit.list(project="eats", action="model.").items] == ["model.create"]


def test_list_paginates_and_filters(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.models.create("eats", "eta", tags={"team": "eats", "stage": "prod"})
    sdk.models.create("eats", "eta_v2", tags={"team": "eats", "stage": "dev"})
    sdk.models.create("eats", "fraud", tags={"team": "risk"})
    api.project("rides", owner="alice")
    sdk.models.create("rides", "eta")  # another project: never listed here
    page = sdk.models.list("eats", limit=2)
    assert [m.name for m in page.items] == ["eta", "eta_v2"]
    assert (page.total, page.next_offset) == (3, 2)
    assert [m.name for m in sdk.models.list("eats", offset=2).items] == ["fraud"]
    assert [m.name for m in sdk.models.list("eats", q="ETA").items] == ["eta", "eta_v2"]
    assert [m.name for m in sdk.models.list("eats", q="_").items] == ["eta_v2"]  # `_` is no wildcard
    assert [m.name for m in sdk.models.list("eats", tags={"team": "eats"}).items] == ["eta", "eta_v2"]
    assert [m.name for m in sdk.models.list("eats", tags={"team": "eats", "stage": "dev"}).items] == ["eta_v2"]
    assert sdk.models.list("eats", tags={"team": "nobody"}).total == 0
    response = api.call("GET", MODELS, api.tokens["alice"], params={"tag": "no-colon"})
    assert response.status_code == 422
    assert response.json()["field"] == "tag"


def test_get_shows_latest_version_and_aliases(api: ApiHarness, tmp_path: Path) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.models.create("eats", "eta")
    for _ in range(3):
        _version(api, token, tmp_path, "eta")
    sdk.models.set_alias("eats", "eta", "production", 2)
    sdk.models.set_alias("eats", "eta", "challenger", 3)
    model = sdk.models.get("eats", "eta")
    assert model.latest_version == 3
    assert model.aliases == {"challenger": 3, "production": 2}
    assert sdk.models.list("eats").items[0].aliases == {"challenger": 3, "production": 2}


def test_duplicate_names_and_bad_input(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.models.create("eats", "eta")
    with pytest.raises(Conflict, match="already exists"):
        sdk.models.create("eats", "eta")
    api.project("rides", owner="alice")
    assert sdk.models.create("rides", "eta").name == "eta"  # unique per project only
    for body, field in [
        ({"name": "Bad Name"}, "body.name"),
        ({"name": "ok", "tags": {"bad key!": "x"}}, "body.tags.bad key!.[key]"),
        ({"name": "ok", "tags": {"k": 3}}, "body.tags.k"),
        ({"name": "ok", "colour": "red"}, "body.colour"),
    ]:
        response = api.call("POST", MODELS, token, json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"][0]["field"] == field
    with pytest.raises(InvalidInput, match="name"):
        sdk.models.create("eats", "Bad Name")  # refused locally, as the same error class
    response = api.call("PATCH", f"{MODELS}/eta", token, json={"name": "renamed"})
    assert response.status_code == 422


def test_missing_model_and_project(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    with pytest.raises(NotFound, match="model 'ghost' does not exist"):
        sdk.models.get("eats", "ghost")
    with pytest.raises(NotFound):
        sdk.models.update("eats", "ghost", description="x")
    with pytest.raises(NotFound):
        sdk.models.delete("eats", "ghost")
    with pytest.raises(NotFound, match="project 'nowhere'"):
        sdk.models.list("nowhere")
    with pytest.raises(Forbidden):
        api.sdk(api.user("mallory")).models.get("eats", "ghost")


def test_delete_refused_while_aliased_then_removes_everything(api: ApiHarness, tmp_path: Path) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.models.create("eats", "eta")
    _version(api, token, tmp_path, "eta")
    _version(api, token, tmp_path, "eta")
    sdk.models.set_alias("eats", "eta", "production", 1)
    with pytest.raises(Conflict, match=r"still has aliases \(production -> v1\)"):
        sdk.models.delete("eats", "eta")
    sdk.models.delete_alias("eats", "eta", "production")
    sdk.models.delete("eats", "eta")
    with pytest.raises(NotFound):
        sdk.models.get("eats", "eta")
    event = sdk.audit.list(project="eats", action="model.delete").items[0]
    assert event.summary == "deleted model eta and its 2 version(s)"
    recreated = sdk.models.create("eats", "eta")  # the name is free again and numbering restarts
    assert recreated.latest_version is None
    assert _version(api, token, tmp_path, "eta") == 1


def test_archived_project_is_read_only(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.models.create("eats", "eta")
    sdk.projects.archive("eats")
    assert sdk.models.get("eats", "eta").name == "eta"
    with pytest.raises(Conflict, match="archived"):
        sdk.models.create("eats", "other")
    with pytest.raises(Conflict, match="archived"):
        sdk.models.update("eats", "eta", description="x")
