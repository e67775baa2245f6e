"""The watch feed: snapshot, long poll latency, visibility per caller, ETags, resync, batching; the event loop
stays free while watchers wait."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import select

from bottega.api.db.tables import Model, ModelVersion, Project
from bottega.api.deployments import watch
from bottega.core.errors import Forbidden, NotFound
from bottega.sdk import Client

WATCH = "/api/v1/deployments/watch"


def register(api: ApiHarness, project: str, model: str) -> None:
    maker = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with maker() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        row = Model(project_id=project_id, name=model, created_by="owner")
        session.add(row)
        session.flush()
        session.add_all(ModelVersion(model_id=row.id, version=v, flavor="onnx", created_by="owner") for v in (1, 2))


def spec(version: int) -> dict[str, Any]:
    return {"targets": [{"model": "m", "version": version, "weight": 100}]}


@pytest.fixture
def world(api: ApiHarness) -> dict[str, Client]:
    """`eats` (alice) and `rides` (bob), a model `m` in each, one deployment in each."""
    alice = api.sdk(api.project("eats", owner="alice"))
    bob = api.sdk(api.project("rides", owner="bob"))
    for project, sdk in (("eats", alice), ("rides", bob)):
        register(api, project, "m")
        sdk.deployments.create(project, "d", spec(1))
    return {"alice": alice, "bob": bob, "admin": api.sdk()}


def test_snapshot_then_changes(world: dict[str, Client]) -> None:
    alice = world["alice"]
    alice.deployments.create("eats", "gone", spec(1))
    alice.deployments.undeploy("eats", "gone")
    snapshot = alice.deployments.watch()
    assert snapshot.snapshot
    assert [(c.project, c.name, c.revision, c.active) for c in snapshot.changes] == [("eats", "d", 1, True)]
    assert snapshot.sequence == alice.deployments.get("eats", "gone").sequence
    quiet = alice.deployments.watch(snapshot.sequence, timeout=0)
    assert (quiet.changes, quiet.sequence, quiet.snapshot) == ([], snapshot.sequence, False)
    alice.deployments.update("eats", "d", spec(2), expected_revision=1, reason="v2")
    alice.deployments.update("eats", "gone", spec(2), expected_revision=2)
    changed = alice.deployments.watch(snapshot.sequence, timeout=5)
    assert [(c.name, c.revision, c.active) for c in changed.changes] == [("d", 2, True), ("gone", 3, True)]
    assert changed.changes[0].spec["targets"][0]["version"] == 2
    assert changed.sequence == changed.changes[-1].sequence
    assert world["admin"].deployments.watch(0, timeout=0).changes[0].sequence == 1


def test_a_change_reaches_a_waiting_watcher_within_a_second(world: dict[str, Client]) -> None:
    alice = world["alice"]
    since = alice.deployments.watch().sequence
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(alice.deployments.watch, since, timeout=20)
        time.sleep(0.5)
        assert not waiting.done()
        changed_at = time.monotonic()
        alice.deployments.update("eats", "d", spec(2), expected_revision=1)
        result = waiting.result(timeout=10)
        seen_after = time.monotonic() - changed_at
    assert [(c.name, c.revision) for c in result.changes] == [("d", 2)]
    assert seen_after < 1.5, f"the watcher saw the change {seen_after:.2f}s after it was made"
    assert time.monotonic() - started < 5


def test_a_timeout_returns_no_changes(api: ApiHarness, world: dict[str, Client]) -> None:
    since = world["alice"].deployments.watch().sequence
    started = time.monotonic()
    response = api.call("GET", WATCH, api.tokens["alice"], params={"since": since, "timeout": 0.5})
    waited = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["changes"] == []
    assert response.headers["etag"] == f'"{since}"'
    assert 0.5 <= waited < 3


def test_waiting_watchers_do_not_block_other_requests(api: ApiHarness, world: dict[str, Client]) -> None:
    alice = world["alice"]
    since = alice.deployments.watch().sequence
    with ThreadPoolExecutor(4) as pool:
        watchers = [pool.submit(alice.deployments.watch, since, timeout=3) for _ in range(3)]
        time.sleep(0.3)
        started = time.monotonic()
        assert alice.deployments.get("eats", "d").revision == 1
        assert time.monotonic() - started < 1
        assert not any(w.done() for w in watchers)
        assert all(w.result(timeout=10).changes == [] for w in watchers)


def test_visibility(api: ApiHarness, world: dict[str, Client]) -> None:
    alice, bob, admin = world["alice"], world["bob"], world["admin"]
    assert {c.project for c in admin.deployments.watch(0, timeout=0).changes} == {"eats", "rides"}
    assert {c.project for c in alice.deployments.watch(0, timeout=0).changes} == {"eats"}
    assert {c.project for c in bob.deployments.watch(0, timeout=0).changes} == {"rides"}
    assert {c.project for c in admin.deployments.watch(0, timeout=0, project="rides").changes} == {"rides"}
    api.user("svc", "eats", "viewer")
    api.user("svc", "rides", "viewer")
    assert {c.project for c in api.sdk(api.tokens["svc"]).deployments.watch(0, timeout=0).changes} == {"eats", "rides"}
    scoped = api.sdk(admin.keys.create("replica", user="svc", project="eats").token)
    assert {c.project for c in scoped.deployments.watch(0, timeout=0).changes} == {"eats"}
    with pytest.raises(Forbidden):
        scoped.deployments.watch(0, timeout=0, project="rides")
    with pytest.raises(Forbidden):
        alice.deployments.watch(0, timeout=0, project="rides")
    with pytest.raises(NotFound):
        alice.deployments.watch(0, timeout=0, project="ghost")
    api.user("carol", "eats", "viewer")
    carol = api.sdk(api.tokens["carol"])
    since = carol.deployments.watch().sequence
    bob.deployments.update("rides", "d", spec(2), expected_revision=1)
    assert carol.deployments.watch(since, timeout=0.3).changes == []  # another project's change wakes no one here
    assert api.call("GET", WATCH, None).status_code == 401


def test_if_none_match(api: ApiHarness, world: dict[str, Client]) -> None:
    token = api.tokens["alice"]
    first = api.call("GET", WATCH, token)
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["sequence"]}"'
    unchanged = api.call("GET", WATCH, token, params={"timeout": 0.2}, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == etag
    world["alice"].deployments.update("eats", "d", spec(2), expected_revision=1)
    changed = api.call("GET", WATCH, token, params={"timeout": 5}, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert [c["revision"] for c in changed.json()["changes"]] == [2]
    assert changed.headers["etag"] == f'"{changed.json()["sequence"]}"'
    bad = api.call("GET", WATCH, token, headers={"If-None-Match": "*"})
    assert bad.status_code == 422


def test_a_sequence_ahead_of_the_server_gets_a_snapshot(world: dict[str, Client]) -> None:
    result = world["alice"].deployments.watch(10_000, timeout=5)
    assert result.resync
    assert result.snapshot
    assert [c.name for c in result.changes] == ["d"]
    assert result.sequence < 10_000


def test_long_feeds_come_in_batches(world: dict[str, Client], monkeypatch: pytest.MonkeyPatch) -> None:
    alice = world["alice"]
    for revision in range(1, 6):
        alice.deployments.update("eats", "d", spec(revision % 2 + 1), expected_revision=revision)
    monkeypatch.setattr(watch, "MAX_CHANGES", 2)
    since, seen = 0, []
    while True:
        result = alice.deployments.watch(since, timeout=0)
        seen += [c.revision for c in result.changes]
        since = result.sequence
        if not result.more:
            break
    assert seen == [1, 2, 3, 4, 5, 6]


def test_watch_iter_follows_the_feed(world: dict[str, Client]) -> None:
    alice = world["alice"]
    stream = alice.deployments.watch_iter(timeout=5)
    assert next(stream).revision == 1  # the snapshot
    got: list[tuple[str, int]] = []
    done = threading.Event()

    def follow() -> None:
        for change in stream:
            got.append((change.name, change.revision))
            if len(got) == 2:
                done.set()
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    alice.deployments.update("eats", "d", spec(2), expected_revision=1)
    alice.deployments.create("eats", "e", spec(1))
    assert done.wait(10)
    assert got == [("d", 2), ("e", 1)]


@pytest.mark.parametrize(
    "params", [{"timeout": 31}, {"timeout": -1}, {"since": -1}, {"since": "x"}, {"project": "Not A Name"}]
)
def test_bad_parameters(api: ApiHarness, world: dict[str, Client], params: dict[str, Any]) -> None:
    response = api.call("GET", WATCH, api.tokens["alice"], params=params)
    assert response.status_code == 422
