"""The change feed that serving replicas follow: a snapshot, then long polls for revisions after a sequence.

Every revision row's id is a global, increasing change sequence (writers commit them in order: see
`repository.lock_change_sequence`). A replica starts with a snapshot (no `since`), applies it, then asks for the
changes after the returned `sequence` again and again. A long poll holds no database connection while it waits: it
runs a short query in a worker thread every POLL_INTERVAL_S and sleeps on the event loop in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from fastapi import Request
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from bottega.api import access
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.tables import Project
from bottega.api.deployments import repository as repo
from bottega.api.deployments.schemas import WatchChange, WatchResult
from bottega.api.deps import get_principal

POLL_INTERVAL_S = 0.15
MAX_CHANGES = 500


def principal_briefly(request: Request) -> Principal:
    """Authenticate in a transaction of its own, committed at once: a long poll must not hold a connection (nor,
    on SQLite, the write lock that recording `last_used_at` takes) while it waits."""
    maker: sessionmaker[Session] = request.app.state.sessionmaker
    with maker() as session, session.begin():
        return get_principal(request, session)


def _scope(session: Session, principal: Principal, project: str | None) -> Select[int] | None:
    if project is not None:
        found = access.project_for(session, principal, project, Role.viewer)
        return select(Project.id).where(Project.id == found.id)
    return repo.visible_projects(session, None if principal.is_admin else principal.user, principal.project_id)


def _changes(rows: Sequence[repo.Change]) -> list[WatchChange]:
    return [
        WatchChange(
            sequence=revision.id,
            project=project,
            name=deployment.name,
            kind="online" if deployment.kind == "online" else "batch",
            revision=revision.revision,
            active=revision.active,
            spec=revision.spec,
            created_by=revision.created_by,
            created_at=revision.created_at,
        )
        for revision, deployment, project in rows
    ]


def poll(
    maker: sessionmaker[Session],
    principal: Principal,
    since: int | None,
    project: str | None,
    *,
    first: bool = True,
) -> WatchResult | None:
    """One look at the feed: a snapshot when `since` is None (or ahead of the server), the changes after `since`,
    or None when there are none yet. Later looks of one long poll (`first=False`) skip the access checks while the
    newest sequence has not moved, so a waiting watcher costs one indexed query per look."""
    with maker() as session:
        latest = repo.max_sequence(session)
        if not first and since is not None and since == latest:
            return None
        scope = _scope(session, principal, project)
        resync = since is not None and since > latest
        if since is None or resync:
            rows = repo.snapshot(session, scope)
            sequence = repo.max_sequence(session, scope)
            return WatchResult(sequence=sequence, changes=_changes(rows), snapshot=True, resync=resync)
        found = repo.changes_since(session, since, scope, MAX_CHANGES + 1)
        if not found:
            return None
        rows = found[:MAX_CHANGES]
        return WatchResult(sequence=rows[-1][0].id, changes=_changes(rows), more=len(found) > MAX_CHANGES)


async def long_poll(
    request: Request, principal: Principal, since: int | None, timeout: float, project: str | None
) -> WatchResult | None:
    """The first answer with changes, or None once `timeout` seconds passed (or the client went away)."""
    maker: sessionmaker[Session] = request.app.state.sessionmaker
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = True
    while True:
        result = await run_in_threadpool(partial(poll, maker, principal, since, project, first=first))
        first = False
        if result is not None:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0 or await request.is_disconnected():
            return None
        await asyncio.sleep(min(POLL_INTERVAL_S, remaining))
