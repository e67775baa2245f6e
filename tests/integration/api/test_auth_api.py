"""API keys: shown once, stored hashed, revocable; bearer auth everywhere but health; the bootstrap admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_harness import ApiHarness, harness
from sqlalchemy import select

from bottega.api.db.engine import make_engine
from bottega.api.db.tables import ApiKey
from bottega.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated


def test_token_shown_once_and_stored_hashed(api: ApiHarness, database_url: str) -> None:
    created = api.sdk().keys.create("ci", user="alice")
    assert created.token.startswith(f"btg_{created.key_id}_")
    listed = api.sdk().keys.list(user="alice")
    assert [k.key_id for k in listed] == [created.key_id]
    assert "token" not in listed[0].model_dump()
    engine = make_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(ApiKey.secret_hash).where(ApiKey.key_id == created.key_id)).scalar_one()
    engine.dispose()
    assert created.token.split("_", 2)[2] not in stored
    assert len(stored) == 64


def test_whoami_and_missing_or_bad_tokens(api: ApiHarness) -> None:
    token = api.user("alice")
    assert api.sdk(token).whoami()["user"] == "alice"
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nope"}):
        response = api.client.get("/api/v1/projects", headers=headers)
        assert response.status_code == 401
        assert response.json()["type"] == "urn:bottega:problem:unauthenticated"
    wrong_secret = token[: token.rindex("_") + 1] + "x" * 43
    assert api.call("GET", "/api/v1/whoami", wrong_secret).status_code == 401
    assert api.client.get("/healthz").status_code == 200


def test_revoke(api: ApiHarness) -> None:
    token = api.user("alice")
    sdk = api.sdk(token)
    second = sdk.keys.create("second")
    assert api.call("GET", "/api/v1/whoami", second.token).status_code == 200
    assert sdk.keys.revoke(second.key_id).revoked_at is not None
    response = api.call("GET", "/api/v1/whoami", second.token)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    with pytest.raises(NotFound):
        api.sdk(api.user("bob")).keys.revoke(second.key_id)  # not bob's key: indistinguishable from missing


def test_only_admins_make_admin_keys_or_keys_for_others(api: ApiHarness) -> None:
    sdk = api.sdk(api.user("alice"))
    with pytest.raises(Forbidden):
        sdk.keys.create(admin=True)
    with pytest.raises(Forbidden):
        sdk.keys.create(user="bob")
    with pytest.raises(Forbidden):
        sdk.keys.list(user="bob")
    admin_key = api.sdk().keys.create("second admin", user="root2", admin=True)
    assert api.sdk(admin_key.token).whoami()["is_admin"] is True


def test_last_admin_key_cannot_be_revoked(api: ApiHarness) -> None:
    admin_id = api.sdk().whoami()["key_id"]
    with pytest.raises(InvalidInput, match="last active admin key"):
        api.sdk().keys.revoke(admin_id)


def test_bootstrap_writes_a_token_file_when_none_is_configured(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with harness(database_url, home, bootstrap_token=None) as h:
        token = (home / "bootstrap-token").read_text().strip()
        assert oct((home / "bootstrap-token").stat().st_mode & 0o777) == "0o600"
        assert h.sdk(token).whoami()["is_admin"] is True
        with pytest.raises(Unauthenticated):
            h.sdk("btg_0000000000ad_" + "a" * 40).whoami()
