"""Every mutation writes an audit event; admins see all, members see their projects; filters work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api_harness import ApiHarness


def test_mutations_are_audited_and_filterable(api: ApiHarness) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    token = api.project("eats", owner="alice")
    sdk = api.sdk(token)
    sdk.projects.update("eats", description="d")
    sdk.projects.set_member("eats", "bob", "viewer")
    sdk.projects.archive("eats")
    events = api.sdk().audit.list(project="eats").items
    actions = [e.action for e in events]
    assert actions == ["project.archive", "project.member.put", "project.update", "project.create"]
    assert {e.actor for e in events} == {"alice"}
    assert events[1].target == "project:eats/member:bob"
    assert api.sdk().audit.list(action="project.member.put").total == 1
    assert api.sdk().audit.list(action="project.").total == 4
    assert api.sdk().audit.list(actor="alice", since=before).total == 4
    assert api.sdk().audit.list(until=before).total == 0


def test_members_see_only_their_projects_events(api: ApiHarness) -> None:
    api.project("eats", owner="alice")
    api.project("rides", owner="bob")
    alice_events = api.sdk(api.tokens["alice"]).audit.list().items
    assert {e.project for e in alice_events} == {"eats"}
    admin_events = api.sdk().audit.list().items
    assert {"eats", "rides"} <= {e.project for e in admin_events}
    assert any(e.action == "key.create" for e in admin_events)


def test_failed_mutation_writes_no_event(api: ApiHarness) -> None:
    api.project("eats", owner="alice")
    response = api.call("POST", "/api/v1/projects", api.tokens["alice"], json={"name": "eats"})
    assert response.status_code == 409
    assert api.sdk().audit.list(action="project.create").total == 1
