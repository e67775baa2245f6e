"""Two changes based on the same revision: exactly one wins, the other gets 409; on SQLite and PostgreSQL.

The service-level tests hold both writers at a barrier just before the conditional UPDATE, so both have read the
same revision and really race for the row; the HTTP test races two requests through the app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from api_harness import ApiHarness
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.auth.principal import Principal
from bottega.api.db.tables import Deployment, DeploymentRevision, Model, ModelVersion, Project
from bottega.api.deployments import repository, service
from bottega.api.deployments.schemas import DeploymentRollback, DeploymentUpdate, OnlineDeploymentCreate, OnlineSpec
from bottega.core.errors import Conflict

ALICE = Principal(user="alice", key_id="test")


def spec(version: int) -> dict[str, Any]:
    return {"targets": [{"model": "eta", "version": version, "weight": 100}]}


@pytest.fixture
def maker(api: ApiHarness) -> sessionmaker[Session]:
    token = api.project("eats", owner="alice")
    made: sessionmaker[Session] = api.client.app.state.sessionmaker  # type: ignore[attr-defined]
    with made() as session, session.begin():
        project_id = session.scalar(select(Project.id).where(Project.name == "eats"))
        model = Model(project_id=project_id, name="eta", created_by="alice")
        session.add(model)
        session.flush()
        session.add_all(
            ModelVersion(model_id=model.id, version=v, flavor="onnx", created_by="alice") for v in (1, 2, 3)
        )
    api.sdk(token).deployments.create("eats", "d", spec(1))
    return made


def run_in_transaction(maker: sessionmaker[Session], work: Callable[[Session], object]) -> str:
    with maker() as session:
        try:
            work(session)
            session.commit()
            return "ok"
        except Conflict:
            session.rollback()
            return "conflict"


def race(monkeypatch: pytest.MonkeyPatch, target: str, works: list[Callable[[], str]]) -> list[str]:
    """Run `works` at once, holding each at a barrier right before `repository.<target>` until all arrive."""
    barrier = threading.Barrier(len(works))
    original = getattr(repository, target)

    def gated(*args: Any, **kwargs: Any) -> Any:
        barrier.wait(timeout=20)
        return original(*args, **kwargs)

    monkeypatch.setattr(repository, target, gated)
    with ThreadPoolExecutor(len(works)) as pool:
        return sorted(f.result(timeout=60) for f in [pool.submit(w) for w in works])


def revisions(maker: sessionmaker[Session]) -> list[int]:
    with maker() as session:
        return list(session.scalars(select(DeploymentRevision.revision).order_by(DeploymentRevision.revision)))


def test_concurrent_updates_from_the_same_revision(
    maker: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    def update(version: int) -> Callable[[], str]:
        body = DeploymentUpdate(spec=spec(version), reason=f"to v{version}", expected_revision=1)
        return lambda: run_in_transaction(maker, lambda s: service.update(s, ALICE, "eats", "d", body, None))

    assert race(monkeypatch, "advance", [update(2), update(3)]) == ["conflict", "ok"]
    assert revisions(maker) == [1, 2]
    with maker() as session:
        assert session.scalar(select(Deployment.revision)) == 2


def test_concurrent_update_and_rollback(maker: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    run_in_transaction(
        maker,
        lambda s: service.update(s, ALICE, "eats", "d", DeploymentUpdate(spec=spec(2), expected_revision=1), None),
    )
    update = DeploymentUpdate(spec=spec(3), expected_revision=2)
    works = [
        lambda: run_in_transaction(maker, lambda s: service.update(s, ALICE, "eats", "d", update, None)),
        lambda: run_in_transaction(
            maker, lambda s: service.rollback(s, ALICE, "eats", "d", DeploymentRollback(), None)
        ),
    ]
    assert race(monkeypatch, "advance", works) == ["conflict", "ok"]
    assert revisions(maker) == [1, 2, 3]


def test_concurrent_creates_of_one_name(maker: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    def create(version: int) -> Callable[[], str]:
        body = OnlineDeploymentCreate(name="twin", kind="online", spec=OnlineSpec.model_validate(spec(version)))
        return lambda: run_in_transaction(maker, lambda s: service.create(s, ALICE, "eats", body))

    assert race(monkeypatch, "by_name", [create(1), create(2)]) == ["conflict", "ok"]
    with maker() as session:
        assert session.scalar(select(func.count()).select_from(Deployment).where(Deployment.name == "twin")) == 1


def test_concurrent_http_updates_with_the_same_if_match(api: ApiHarness, maker: sessionmaker[Session]) -> None:
    token = api.tokens["alice"]
    path = "/api/v1/projects/eats/deployments/d"
    for expected in range(1, 6):
        barrier = threading.Barrier(2)

        def put(version: int, expected: int = expected, barrier: threading.Barrier = barrier) -> int:
            barrier.wait(timeout=20)
            headers = {"If-Match": f'"{expected}"'}
            return api.call("PUT", path, token, json={"spec": spec(version)}, headers=headers).status_code

        with ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(put, [2, 3]))
        assert codes == [200, 409]
    assert revisions(maker) == [1, 2, 3, 4, 5, 6]


def test_revisions_commit_in_sequence_order(api: ApiHarness, maker: sessionmaker[Session]) -> None:
    """While one revision is uncommitted, another deployment's revision waits: ids become visible in order, so a
    watcher that has seen sequence N never misses a smaller one committed later."""
    api.sdk(api.tokens["alice"]).deployments.create("eats", "e", spec(1))
    first = maker()
    try:
        made = service.update(first, ALICE, "eats", "d", DeploymentUpdate(spec=spec(2), expected_revision=1), None)
        body = DeploymentUpdate(spec=spec(2), expected_revision=1)
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(run_in_transaction, maker, lambda s: service.update(s, ALICE, "eats", "e", body, None))
            time.sleep(0.5)
            assert not second.done()
            first.commit()
            assert second.result(timeout=20) == "ok"
    finally:
        first.close()
    with maker() as session:
        later = session.scalar(select(func.max(DeploymentRevision.id)))
    assert later is not None
    assert later > made.sequence
