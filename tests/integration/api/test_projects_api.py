"""Projects: create, list, get, update, archive, delete, members; with their error cases."""

from __future__ import annotations

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound


def test_create_get_list_update(api: ApiHarness) -> None:
    sdk = api.sdk(api.user("alice"))
    created = sdk.projects.create("eats", "restaurant models")
    assert created.name == "eats"
    assert created.role == "owner"
    assert created.created_by == "alice"
    assert sdk.projects.get("eats").description == "restaurant models"
    updated = sdk.projects.update("eats", description="changed")
    assert updated.description == "changed"
    assert updated.updated_at >= created.updated_at
    sdk.projects.create("rides")
    page = sdk.projects.list(limit=1)
    assert page.total == 2
    assert [p.name for p in page.items] == ["eats"]
    assert page.next_offset == 1
    assert [p.name for p in sdk.projects.list(offset=1).items] == ["rides"]


def test_users_see_only_their_projects_and_admins_see_all(api: ApiHarness) -> None:
    api.project("mine", owner="alice")
    api.project("theirs", owner="bob")
    alice = api.sdk(api.tokens["alice"])
    assert [p.name for p in alice.projects.list().items] == ["mine"]
    assert {p.name for p in api.sdk().projects.list().items} == {"mine", "theirs"}
    with pytest.raises(Forbidden):
        alice.projects.get("theirs")


def test_duplicate_and_bad_names(api: ApiHarness) -> None:
    sdk = api.sdk(api.user("alice"))
    sdk.projects.create("eats")
    with pytest.raises(Conflict, match="already exists"):
        sdk.projects.create("eats")
    response = api.call("POST", "/api/v1/projects", api.tokens["alice"], json={"name": "Bad Name!"})
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["type"] == "urn:bottega:problem:invalid-input"
    assert body["errors"][0]["field"] == "body.name"
    words = "must be lowercase letters, digits and _ . -, starting with a lowercase letter or a digit, at most 63"
    assert body["errors"][0]["message"].startswith(words)
    assert body["errors"][0]["message"].endswith("got 'Bad Name!'")
    assert body["errors"][0]["pattern"] == "^[a-z0-9][a-z0-9_.-]{0,62}$"  # the rule for programs
    assert body["detail"].startswith("body.name: " + words)
    response = api.call("POST", "/api/v1/projects", api.tokens["alice"], json={"name": "ok", "colour": "red"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.colour"


def test_missing_project_is_404(api: ApiHarness) -> None:
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        api.sdk().projects.get("ghost")


def test_archive_makes_a_project_read_only_until_unarchived(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    assert sdk.projects.archive("eats").archived is True
    assert sdk.projects.get("eats").archived is True
    with pytest.raises(Conflict, match="archived"):
        sdk.projects.update("eats", description="x")
    assert [p.name for p in sdk.projects.list(archived=True).items] == ["eats"]
    assert sdk.projects.list(archived=False).total == 0
    assert sdk.projects.unarchive("eats").archived is False
    assert sdk.projects.update("eats", description="x").description == "x"


def test_delete_removes_project_and_memberships(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    api.user("bob", "eats", "editor")
    api.sdk(token).projects.delete("eats")
    with pytest.raises(NotFound):
        api.sdk().projects.get("eats")
    api.sdk(api.user("carol")).projects.create("eats")  # the name is free again
    assert [m.user for m in api.sdk().projects.members("eats")] == ["carol"]


def test_members_roles_and_last_owner_guard(api: ApiHarness) -> None:
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.projects.set_member("eats", "bob", "viewer")
    sdk.projects.set_member("eats", "bob", "editor")
    assert {(m.user, m.role) for m in sdk.projects.members("eats")} == {("alice", "owner"), ("bob", "editor")}
    with pytest.raises(InvalidInput, match="last owner"):
        sdk.projects.set_member("eats", "alice", "viewer")
    with pytest.raises(InvalidInput, match="last owner"):
        sdk.projects.remove_member("eats", "alice")
    sdk.projects.set_member("eats", "bob", "owner")
    sdk.projects.remove_member("eats", "alice")
    with pytest.raises(Forbidden):
        sdk.projects.get("eats")
    with pytest.raises(NotFound):
        api.sdk().projects.remove_member("eats", "nobody")
    response = api.call("PUT", "/api/v1/projects/eats/members/zed", api.admin_token, json={"role": "boss"})
    assert response.status_code == 422
