"""Authorization matrix for projects, members and keys."""

from __future__ import annotations

import pytest
from api_harness import ApiHarness
from authz import CALLERS, Case, check

CASES = [
    Case("project.read", "GET", "/api/v1/projects/{project}", "viewer"),
    Case("project.members.read", "GET", "/api/v1/projects/{project}/members", "viewer"),
    Case("project.update", "PATCH", "/api/v1/projects/{project}", "editor", json={"description": "new"}),
    Case("project.archive", "POST", "/api/v1/projects/{project}/archive", "owner"),
    Case("project.unarchive", "POST", "/api/v1/projects/{project}/unarchive", "owner"),
    Case("project.delete", "DELETE", "/api/v1/projects/{project}", "owner", success=204),
    Case("member.put", "PUT", "/api/v1/projects/{project}/members/newbie", "owner", json={"role": "viewer"}),
    Case("member.remove", "DELETE", "/api/v1/projects/{project}/members/viewer", "owner", success=204),
    Case("key.scoped", "POST", "/api/v1/keys", "viewer", json={"project": "{project}"}, success=201),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(api: ApiHarness, case: Case, caller: str) -> None:
    check(api, case, caller)


def test_key_of_project_a_reads_nothing_of_project_b(api: ApiHarness) -> None:
    owner = api.project("alpha", owner="owner")
    api.project("beta", owner="owner")
    scoped = api.sdk(owner).keys.create("alpha only", project="alpha").token
    assert api.call("GET", "/api/v1/projects/alpha", scoped).status_code == 200
    assert api.call("GET", "/api/v1/projects/beta", scoped).status_code == 403
    listed = api.call("GET", "/api/v1/projects", scoped).json()
    assert [p["name"] for p in listed["items"]] == ["alpha"]
    events = api.call("GET", "/api/v1/audit", scoped).json()["items"]
    assert events
    assert {e["project"] for e in events} == {"alpha"}
    assert api.call("POST", "/api/v1/projects", scoped, json={"name": "gamma"}).status_code == 403
