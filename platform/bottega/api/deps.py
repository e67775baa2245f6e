"""Request-scoped dependencies: one database transaction per request, the authenticated caller, the settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from bottega.api.artifacts.store import BlobStore
from bottega.api.auth.principal import Principal
from bottega.api.auth.service import authenticate
from bottega.api.settings import ApiSettings
from bottega.core.errors import Unauthenticated


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back when it raises.

    Used with `scope="function"` so the commit happens before the response is sent: a commit failure becomes the
    response, never a silent loss after a 2xx.
    """
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing `Authorization: Bearer <API key>` header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <API key>`")
    return authenticate(session, token.strip())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
