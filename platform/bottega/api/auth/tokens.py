"""API key tokens: `btg_<key id>_<secret>`. Only a SHA-256 of the secret is stored (keys are random, so a slow hash
adds nothing); comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_RE = re.compile(r"^btg_([a-z0-9]{12})_([A-Za-z0-9_-]{32,128})$")


def new_token() -> tuple[str, str, str]:
    """A fresh (token, key_id, secret_hash)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"btg_{key_id}_{secret}", key_id, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed token, else None."""
    match = TOKEN_RE.match(token)
    return (match.group(1), match.group(2)) if match else None


def matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
