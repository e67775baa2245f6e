"""Deployments: create, read, list, update with preconditions, rollback, undeploy/redeploy, history; errors; audit."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select

from bottega.api.db.tables import Model, ModelAlias, ModelVersion, Project
from bottega.core.errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed, StaleRevision

BASE = "/api/v1/projects/eats/deployments"


def register(
    api: ApiHarness, project: str, model: str, versions: int = 3, aliases: dict[str, int] | None = None
) -> None:
    """Registry rows written directly (the registry API is another domain's)."""
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        row = Model(project_id=project_id, name=model, created_by="owner")
        session.add(row)
        session.flush()
        ids = {}
        for number in range(1, versions + 1):
            version = ModelVersion(model_id=row.id, version=number, flavor="xgboost", created_by="owner")
            session.add(version)
            session.flush()
            ids[number] = version.id
        for alias, number in (aliases or {}).items():
            session.add(ModelAlias(model_id=row.id, alias=alias, version_id=ids[number], updated_by="owner"))


def move_alias(api: ApiHarness, model: str, alias: str, version: int) -> None:
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        row = session.scalars(
            select(ModelAlias).join(Model, Model.id == ModelAlias.model_id).where(Model.name == model)
        ).one()
        row.version_id = session.scalars(
            select(ModelVersion.id).where(ModelVersion.model_id == row.model_id, ModelVersion.version == version)
        ).one()


def online(*targets: tuple[str, int | str, int], shadows: tuple[tuple[str, int | str], ...] = ()) -> dict[str, Any]:
    def ref(model: str, version: int | str) -> dict[str, Any]:
        return {"model": model, "version": version} if isinstance(version, int) else {"model": model, "alias": version}

    return {
        "targets": [{**ref(m, v), "weight": w} for m, v, w in targets],
        "shadows": [ref(m, v) for m, v in shadows],
    }


@pytest.fixture
def owner(api: ApiHarness) -> str:
    token = api.project("eats", owner="alice")
    register(api, "eats", "eta", versions=4, aliases={"champion": 2})
    register(api, "eats", "fraud", versions=1)
    return token


def test_create_get_list(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    spec = online(("eta", 1, 90), ("eta", "champion", 10), shadows=(("fraud", 1),))
    created = sdk.deployments.create("eats", "eta-live", spec, reason="first launch")
    assert (created.revision, created.active, created.kind) == (1, True, "online")
    assert created.spec["targets"] == [
        {"model": "eta", "version": 1, "alias": None, "weight": 90},
        {"model": "eta", "version": 2, "alias": "champion", "weight": 10},
    ]
    assert created.spec["shadows"] == [{"model": "fraud", "version": 1, "alias": None}]
    assert (created.updated_by, created.reason, created.created_by) == ("alice", "first launch", "alice")
    response = api.call("GET", f"{BASE}/eta-live", owner)
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["spec"] == created.spec
    batch = {"model": "fraud", "version": 1, "input": "s3://b/in", "output": "s3://b/out", "schedule": "0 3 * * *"}
    made = sdk.deployments.create("eats", "nightly", batch, reason="nightly scoring")
    assert made.kind == "batch"
    assert made.spec["params"] == {}
    assert [d.name for d in sdk.deployments.list("eats").items] == ["eta-live", "nightly"]
    assert [d.name for d in sdk.deployments.list("eats", kind="batch").items] == ["nightly"]
    page = sdk.deployments.list("eats", limit=1)
    assert (page.total, page.next_offset, page.items[0].name) == (2, 1, "eta-live")


def test_alias_is_pinned_at_write_time(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", "champion", 100)))
    move_alias(api, "eta", "champion", 3)
    assert sdk.deployments.get("eats", "d").spec["targets"][0]["version"] == 2
    # Sending the stored spec back keeps version 2 (the version is authoritative, the alias is provenance) ...
    kept = sdk.deployments.update("eats", "d", sdk.deployments.get("eats", "d").spec, expected_revision=1)
    assert kept.spec["targets"][0] == {"model": "eta", "version": 2, "alias": "champion", "weight": 100}
    # ... and the alias alone is resolved again.
    moved = sdk.deployments.update("eats", "d", online(("eta", "champion", 100)), expected_revision=2)
    assert moved.spec["targets"][0]["version"] == 3
    assert sdk.deployments.revision("eats", "d", 1).spec["targets"][0]["version"] == 2
    latest = sdk.deployments.update("eats", "d", online(("eta", "latest", 100)), expected_revision=3)
    assert latest.spec["targets"][0] == {"model": "eta", "version": 4, "alias": "latest", "weight": 100}
    register(api, "eats", "fraud2", versions=0)
    with pytest.raises(InvalidInput, match="model 'fraud2' has no alias 'latest'"):
        sdk.deployments.update("eats", "d", online(("fraud2", "latest", 100)), expected_revision=4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (online(("eta", 1, 60), ("eta", 2, 30)), "sum to 100, not 90"),
        (online(("eta", 1, 101)), "less than or equal to 100"),
        (online(("eta", 1, 50), ("eta", 1, 50)), "duplicate model version: eta:1"),
        ({"targets": []}, "at least 1 item"),
        ({"targets": [{"model": "eta", "weight": 100}]}, "give a `version` number or an `alias`"),
        ({"targets": [{"model": "eta", "version": 1, "weight": 100}], "colour": "red"}, "Extra inputs"),
        ({**online(("eta", 1, 100)), "routing": {"strategy": "sticky"}}, "sticky routing needs a `key`"),
    ],
)
def test_invalid_online_specs_are_422(api: ApiHarness, owner: str, spec: dict[str, Any], message: str) -> None:
    body = {"name": "d", "kind": "online", "spec": spec}
    response = api.call("POST", BASE, owner, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert message in response.text
    assert response.json()["errors"][0]["field"].startswith("body.")
    # The same spec through PUT (where the kind comes from the stored deployment) is refused the same way.
    api.sdk(owner).deployments.create("eats", "ok", online(("eta", 1, 100)))
    put = api.call("PUT", f"{BASE}/ok", owner, json={"spec": spec, "expected_revision": 1})
    assert put.status_code == 422
    assert message in put.text
    assert put.json()["errors"][0]["field"].startswith("body.spec")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (online(("ghost", 1, 100)), "body.spec.targets.0", "model 'ghost' does not exist in project 'eats'"),
        (online(("eta", 9, 100)), "body.spec.targets.0", "model 'eta' has no version 9"),
        (online(("eta", "beta", 100)), "body.spec.targets.0", "model 'eta' has no alias 'beta'"),
        (online(("eta", 1, 100), shadows=(("fraud", 4),)), "body.spec.shadows.0", "model 'fraud' has no version 4"),
        (online(("eta", 2, 50), ("eta", "champion", 50)), "body.spec.targets.1", "eta:2 appears twice"),
        (online(("eta", 2, 100), shadows=(("eta", "champion"),)), "body.spec.shadows.0", "eta:2 appears twice"),
    ],
)
def test_registry_references_are_checked(
    api: ApiHarness, owner: str, spec: dict[str, Any], field: str, message: str
) -> None:
    response = api.call("POST", BASE, owner, json={"name": "d", "kind": "online", "spec": spec})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == field


def test_versions_of_another_project_are_not_visible(api: ApiHarness, owner: str) -> None:
    api.project("rides", owner="alice")
    register(api, "rides", "surge", versions=1)
    with pytest.raises(InvalidInput, match="model 'surge' does not exist in project 'eats'"):
        api.sdk(owner).deployments.create("eats", "d", online(("surge", 1, 100)))


def test_batch_specs(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    spec = {"model": "eta", "alias": "champion", "input": "warehouse.orders", "output": "s3://b/o",
            "schedule": "*/15 * * * *", "params": {"batch_size": 512}}  # fmt: skip
    made = sdk.deployments.create("eats", "b", spec)
    assert made.spec["version"] == 2
    assert made.spec["params"] == {"batch_size": 512}
    bad_cron = api.call("POST", BASE, owner, json={"name": "c", "kind": "batch", "spec": {**spec, "schedule": "61 *"}})
    assert bad_cron.status_code == 422
    assert bad_cron.json()["errors"][0]["field"] == "body.spec.schedule"
    assert "has 2 fields" in bad_cron.json()["detail"]
    for schedule, message in [("61 * * * *", "not a valid cron"), ("0 0 31 2 *", "never fires")]:
        body = {"name": "c", "kind": "batch", "spec": {**spec, "schedule": schedule}}
        response = api.call("POST", BASE, owner, json=body)
        assert response.status_code == 422
        assert message in response.json()["detail"]
    for schedule, stored in [("@Daily", "@daily"), ("*/5  * * * * *", "*/5 * * * * *")]:
        made = sdk.deployments.create("eats", f"s{len(stored)}", {**spec, "schedule": schedule})
        assert made.spec["schedule"] == stored
    missing = api.call("POST", BASE, owner, json={"name": "c", "kind": "batch", "spec": {"model": "eta", "version": 1}})
    assert missing.status_code == 422
    mixed = api.call("PUT", f"{BASE}/b", owner, json={"spec": online(("eta", 1, 100)), "expected_revision": 1})
    assert mixed.status_code == 422  # an online spec for a batch deployment
    assert "not a valid batch spec" in mixed.json()["detail"]
    kind = api.call("POST", BASE, owner, json={"name": "c", "kind": "stream", "spec": spec})
    assert kind.status_code == 422


def test_duplicate_name_missing_things_and_bad_names(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    with pytest.raises(Conflict, match="already exists"):
        sdk.deployments.create("eats", "d", online(("eta", 2, 100)))
    with pytest.raises(NotFound, match="deployment 'ghost' does not exist"):
        sdk.deployments.get("eats", "ghost")
    with pytest.raises(NotFound, match="project 'nope' does not exist"):
        sdk.deployments.list("nope")
    with pytest.raises(NotFound, match="has no revision 7"):
        sdk.deployments.revision("eats", "d", 7)
    with pytest.raises(NotFound):
        sdk.deployments.update("eats", "ghost", online(("eta", 1, 100)), expected_revision=1)
    bad = api.call("POST", BASE, owner, json={"name": "Bad Name", "kind": "online", "spec": online(("eta", 1, 100))})
    assert bad.status_code == 422
    assert api.call("GET", f"{BASE}/d/revisions/0", owner).status_code == 422
    assert api.call("GET", f"{BASE}/d?x=1", None).status_code == 401


def test_update_needs_the_current_revision(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    spec = online(("eta", 1, 90), ("eta", 2, 10))
    no_precondition = api.call("PUT", f"{BASE}/d", owner, json={"spec": spec})
    assert no_precondition.status_code == 412
    assert no_precondition.json()["current_revision"] == 1
    assert "If-Match" in no_precondition.json()["detail"]
    by_header = api.call(
        "PUT", f"{BASE}/d", owner, json={"spec": spec, "reason": "canary"}, headers={"If-Match": '"1"'}
    )
    assert by_header.status_code == 200, by_header.text
    assert by_header.headers["etag"] == '"2"'
    assert (by_header.json()["revision"], by_header.json()["reason"]) == (2, "canary")
    stale = api.call("PUT", f"{BASE}/d", owner, json={"spec": spec}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert (stale.json()["current_revision"], stale.json()["expected_revision"]) == (2, 1)
    with pytest.raises(Conflict, match="is at revision 2, not 1") as caught:
        sdk.deployments.update("eats", "d", spec, expected_revision=1)
    assert isinstance(caught.value, StaleRevision)
    assert (caught.value.current_revision, caught.value.expected_revision) == (2, 1)
    with pytest.raises(PreconditionFailed):
        api.sdk(owner).transport.json("PUT", f"{BASE}/d", json={"spec": spec})
    both = api.call("PUT", f"{BASE}/d", owner, json={"spec": spec, "expected_revision": 2}, headers={"If-Match": '"1"'})
    assert both.status_code == 422
    garbage = api.call("PUT", f"{BASE}/d", owner, json={"spec": spec}, headers={"If-Match": "yesterday"})
    assert garbage.status_code == 422
    weak = api.call("PUT", f"{BASE}/d", owner, json={"spec": spec}, headers={"If-Match": 'W/"2"'})
    assert weak.status_code == 200
    assert sdk.deployments.get("eats", "d").revision == 3


def test_set_traffic(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    spec = {**online(("eta", "champion", 100), shadows=(("fraud", 1),)), "routing": {"strategy": "sticky", "key": "u"}}
    sdk.deployments.create("eats", "d", spec)
    canary = sdk.deployments.set_traffic("eats", "d", {"eta:2": 90, ("eta", 4): 10}, reason="canary v4")
    assert canary.spec["targets"] == [
        {"model": "eta", "version": 2, "alias": "champion", "weight": 90},
        {"model": "eta", "version": 4, "alias": None, "weight": 10},
    ]
    assert canary.spec["shadows"] == [{"model": "fraud", "version": 1, "alias": None}]
    assert canary.spec["routing"] == {"strategy": "sticky", "key": "u"}
    full = sdk.deployments.set_traffic("eats", "d", {"eta:4": 100})
    assert [(t["version"], t["weight"]) for t in full.spec["targets"]] == [(4, 100)]
    with pytest.raises(InvalidInput, match="sum to 100"):
        sdk.deployments.set_traffic("eats", "d", {"eta:4": 50})
    with pytest.raises(Conflict):
        sdk.deployments.set_traffic("eats", "d", {"eta@champion": 100}, expected_revision=1)
    back = sdk.deployments.set_traffic("eats", "d", {"eta@champion": 100})
    assert back.spec["targets"][0]["version"] == 2
    with pytest.raises(InvalidInput, match="names no model version"):
        sdk.deployments.set_traffic("eats", "d", {"eta": 100})


def test_rollback(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    with pytest.raises(Conflict, match="first revision"):
        sdk.deployments.rollback("eats", "d", reason="nothing to undo")
    sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=1, reason="v2")
    sdk.deployments.update("eats", "d", online(("eta", 3, 100)), expected_revision=2, reason="v3")
    back = sdk.deployments.rollback("eats", "d", reason="v3 is slow")
    assert (back.revision, back.rolled_back_from, back.reason) == (4, 2, "v3 is slow")
    assert back.spec["targets"][0]["version"] == 2
    first = sdk.deployments.rollback("eats", "d", to_revision=1, expected_revision=4)
    assert (first.revision, first.rolled_back_from, first.spec["targets"][0]["version"]) == (5, 1, 1)
    with pytest.raises(Conflict, match="at revision 5, not 4"):
        sdk.deployments.rollback("eats", "d", expected_revision=4)
    with pytest.raises(Conflict, match="already at revision 5"):
        sdk.deployments.rollback("eats", "d", to_revision=5)
    with pytest.raises(NotFound, match="has no revision 9"):
        sdk.deployments.rollback("eats", "d", to_revision=9)
    header = api.call("POST", f"{BASE}/d/rollback", owner, json={}, headers={"If-Match": '"4"'})
    assert header.status_code == 409
    history = sdk.deployments.history("eats", "d")
    assert [r.revision for r in history.items] == [5, 4, 3, 2, 1]
    assert [r.rolled_back_from for r in history.items] == [1, 2, None, None, None]
    assert [r.reason for r in history.items][2:] == ["v3", "v2", ""]
    assert history.items[0].sequence > history.items[1].sequence


def test_rollback_refuses_a_version_deleted_since(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=1)
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        version = session.scalars(
            select(ModelVersion)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.name == "eta", ModelVersion.version == 1)
        ).one()
        session.delete(version)
    with pytest.raises(InvalidInput, match="model 'eta' has no version 1"):
        sdk.deployments.rollback("eats", "d")
    assert sdk.deployments.get("eats", "d").revision == 2


def test_undeploy_and_redeploy(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    api.user("ed", "eats", "editor")
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    sdk.deployments.create("eats", "e", online(("eta", 1, 100)))
    with pytest.raises(Forbidden, match="owner"):
        api.sdk(api.tokens["ed"]).deployments.undeploy("eats", "d")
    with pytest.raises(Conflict, match="at revision 1, not 3"):
        sdk.deployments.undeploy("eats", "d", expected_revision=3)
    gone = sdk.deployments.undeploy("eats", "d", reason="retired", expected_revision=1)
    assert (gone.revision, gone.active, gone.reason) == (2, False, "retired")
    assert gone.spec == sdk.deployments.revision("eats", "d", 1).spec
    with pytest.raises(Conflict, match="already undeployed"):
        sdk.deployments.undeploy("eats", "d")
    assert [d.name for d in sdk.deployments.list("eats").items] == ["e"]
    listed = sdk.deployments.list("eats", include_undeployed=True).items
    assert [(d.name, d.active) for d in listed] == [("d", False), ("e", True)]
    with pytest.raises(Conflict, match="PUT a spec to redeploy"):
        sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    again = sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=2, reason="back")
    assert (again.revision, again.active) == (3, True)
    assert [r.active for r in sdk.deployments.history("eats", "d").items] == [True, False, True]
    undone = sdk.deployments.undeploy("eats", "d")
    restored = sdk.deployments.rollback("eats", "d", reason="undo the undeploy")
    assert (undone.active, restored.active, restored.rolled_back_from) == (False, True, 3)


def test_history_pagination(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    for revision in range(1, 5):
        sdk.deployments.update("eats", "d", online(("eta", revision % 4 + 1, 100)), expected_revision=revision)
    page = sdk.deployments.history("eats", "d", limit=2, offset=1)
    assert (page.total, [r.revision for r in page.items], page.next_offset) == (5, [4, 3], 3)


def test_every_change_is_audited(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)), reason="launch")
    sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=1, reason="v2")
    sdk.deployments.rollback("eats", "d", reason="v2 regressed")
    sdk.deployments.undeploy("eats", "d", reason="retired")
    with pytest.raises(Conflict):
        sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=1)
    events = api.sdk().audit.list(action="deployment.").items
    assert [e.action for e in events] == [
        "deployment.undeploy",
        "deployment.rollback",
        "deployment.update",
        "deployment.create",
    ]
    assert {(e.actor, e.project, e.target) for e in events} == {("alice", "eats", "project:eats/deployment:d")}
    details = [(e.details["from_revision"], e.details["to_revision"], e.details["reason"]) for e in events]
    assert details == [(3, 4, "retired"), (2, 3, "v2 regressed"), (1, 2, "v2"), (None, 1, "launch")]
    assert events[1].details["restored_revision"] == 1
    assert "v2 regressed" in events[1].summary


def test_archived_projects_are_read_only(api: ApiHarness, owner: str) -> None:
    sdk = api.sdk(owner)
    sdk.deployments.create("eats", "d", online(("eta", 1, 100)))
    sdk.projects.archive("eats")
    assert sdk.deployments.get("eats", "d").revision == 1
    with pytest.raises(Conflict, match="archived"):
        sdk.deployments.update("eats", "d", online(("eta", 2, 100)), expected_revision=1)
    with pytest.raises(Conflict, match="archived"):
        sdk.deployments.rollback("eats", "d")
