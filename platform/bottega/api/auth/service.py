"""API keys: authenticate a bearer token, create and revoke keys, and make the bootstrap admin key."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth import repository as repo
from bottega.api.auth import tokens
from bottega.api.auth.principal import Principal, Role
from bottega.api.auth.schemas import KeyCreate, KeyCreated, KeyRead
from bottega.api.db.base import utcnow
from bottega.api.db.tables import ApiKey, Project
from bottega.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated

BOOTSTRAP_USER = "admin"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate(session: Session, token: str) -> Principal:
    parsed = tokens.parse(token)
    if parsed is None:
        raise Unauthenticated("malformed API key: expected `Authorization: Bearer btg_<id>_<secret>`")
    key_id, secret = parsed
    key = repo.key_by_key_id(session, key_id)
    if key is None or not tokens.matches(secret, key.secret_hash):
        raise Unauthenticated("unknown API key")
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key_id} was revoked")
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
    return Principal(user=key.user, key_id=key.key_id, is_admin=key.is_admin, project_id=key.project_id)


def _read(key: ApiKey, project: str | None) -> KeyRead:
    return KeyRead(
        key_id=key.key_id,
        user=key.user,
        name=key.name,
        is_admin=key.is_admin,
        project=project,
        created_by=key.created_by,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def create_key(session: Session, principal: Principal, body: KeyCreate) -> KeyCreated:
    user = body.user or principal.user
    if (user != principal.user or body.admin) and not principal.is_admin:
        raise Forbidden("only admins create keys for other users or admin keys")
    if principal.project_id is not None and body.project is None:
        raise Forbidden("a project-scoped key can only create keys scoped to its own project")
    project_id: int | None = None
    if body.project is not None:
        if body.admin:
            raise InvalidInput("an admin key cannot be restricted to one project", field="project")
        project = access.project_for(session, principal, body.project, Role.viewer, allow_archived=True)
        if not principal.is_admin and user == principal.user and access.role_in(session, principal, project) is None:
            raise Forbidden(f"{user!r} has no role in project {body.project!r}")
        project_id = project.id
    token, key_id, secret_hash = tokens.new_token()
    key = ApiKey(
        key_id=key_id,
        secret_hash=secret_hash,
        user=user,
        name=body.name,
        is_admin=body.admin,
        project_id=project_id,
        created_by=principal.user,
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    record(
        session,
        principal,
        "key.create",
        f"key:{key_id}",
        project=body.project,
        summary=f"key {key_id} for {user}" + (" (admin)" if body.admin else ""),
    )
    return KeyCreated(token=token, **_read(key, body.project).model_dump())


def list_keys(session: Session, principal: Principal, user: str | None) -> list[KeyRead]:
    if user is not None and user != principal.user and not principal.is_admin:
        raise Forbidden("only admins list other users' keys")
    wanted = user if (user is not None or not principal.is_admin) else None
    if wanted is None and not principal.is_admin:
        wanted = principal.user
    return [_read(key, project) for key, project in repo.list_keys(session, wanted)]


def revoke_key(session: Session, principal: Principal, key_id: str) -> KeyRead:
    key = repo.key_by_key_id(session, key_id)
    if key is None or (key.user != principal.user and not principal.is_admin):
        raise NotFound(f"API key {key_id!r} does not exist")
    if key.revoked_at is None:
        if key.is_admin and repo.active_admin_keys(session) <= 1:
            raise InvalidInput("refusing to revoke the last active admin key; create another admin key first")
        key.revoked_at = utcnow()
        record(session, principal, "key.revoke", f"key:{key_id}", summary=f"revoked key {key_id} of {key.user}")
    project = session.scalar(select(Project.name).where(Project.id == key.project_id)) if key.project_id else None
    return _read(key, project)


def bootstrap_admin(session: Session, home: Path, configured: str | None) -> str | None:
    """On a database without an admin key, create one and return its token (else None).

    The token is `BOTTEGA_BOOTSTRAP_TOKEN` when set (it must be a well-formed `btg_` token), or a new random one
    written to `<home>/bootstrap-token` with mode 0600.
    """
    if repo.active_admin_keys(session) > 0:
        return None
    if configured:
        parsed = tokens.parse(configured)
        if parsed is None:
            raise InvalidInput("BOTTEGA_BOOTSTRAP_TOKEN must look like btg_<12 lowercase hex/digits>_<32+ chars>")
        token, (key_id, secret) = configured, parsed
        secret_hash = tokens.hash_secret(secret)
    else:
        token, key_id, secret_hash = tokens.new_token()
    session.add(
        ApiKey(
            key_id=key_id,
            secret_hash=secret_hash,
            user=BOOTSTRAP_USER,
            name="bootstrap",
            is_admin=True,
            created_by="bootstrap",
            created_at=utcnow(),
        )
    )
    record(session, "bootstrap", "key.create", f"key:{key_id}", summary="bootstrap admin key")
    if not configured:
        home.mkdir(parents=True, exist_ok=True)
        path = home / "bootstrap-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    return token
