"""API key tokens and role ordering."""

from __future__ import annotations

from bottega.api.auth import tokens
from bottega.api.auth.principal import Role


def test_new_token_parses_and_matches_only_its_hash() -> None:
    token, key_id, secret_hash = tokens.new_token()
    parsed = tokens.parse(token)
    assert parsed is not None
    assert parsed[0] == key_id
    assert tokens.matches(parsed[1], secret_hash)
    assert not tokens.matches(parsed[1] + "x", secret_hash)
    assert parsed[1] not in secret_hash


def test_malformed_tokens_are_refused() -> None:
    for bad in ["", "btg_", "btg_ABCDEF012345_" + "a" * 40, "btg_0123456789ab_short", "xyz_0123456789ab_" + "a" * 40]:
        assert tokens.parse(bad) is None


def test_roles_are_ordered() -> None:
    assert Role.owner.allows(Role.editor)
    assert Role.editor.allows(Role.editor)
    assert not Role.viewer.allows(Role.editor)
    assert not Role.editor.allows(Role.owner)
