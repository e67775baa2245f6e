"""The authorization matrix: every mutating endpoint x (no token, bad token, viewer, editor, owner, another project's
owner). Each domain lists its endpoints as `Case`s and runs `check` for every caller.

The world: project `alpha` owned by `owner`, with `viewer` and `editor` members; project `beta` owned by `stranger`,
who is the "other project's owner" and holds no role in `alpha`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api_harness import ApiHarness

CALLERS = ["no-token", "bad-token", "viewer", "editor", "owner", "other-owner"]
RANK = {"viewer": 1, "editor": 2, "owner": 3}
BAD_TOKEN = "btg_ffffffffffff_" + "b" * 40
PROJECT = "alpha"


@dataclass
class Case:
    """One endpoint. `needed` is the least role that may call it. `setup` (run by the owner before the call)
    returns values for the `{...}` fields of `path` and of string values in `json`."""

    id: str
    method: str
    path: str
    needed: str
    json: dict[str, Any] | None = None
    success: int = 200
    setup: Callable[[ApiHarness, str], dict[str, str]] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def world(api: ApiHarness) -> dict[str, str | None]:
    owner = api.project(PROJECT, owner="owner")
    api.project("beta", owner="stranger")
    return {
        "no-token": None,
        "bad-token": BAD_TOKEN,
        "viewer": api.user("viewer", PROJECT, "viewer"),
        "editor": api.user("editor", PROJECT, "editor"),
        "owner": owner,
        "other-owner": api.tokens["stranger"],
    }


def expected_status(case: Case, caller: str) -> int:
    if caller in ("no-token", "bad-token"):
        return 401
    if caller == "other-owner":
        return 403
    return case.success if RANK[caller] >= RANK[case.needed] else 403


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def check(api: ApiHarness, case: Case, caller: str) -> None:
    tokens = world(api)
    owner = tokens["owner"]
    assert owner is not None
    values = {"project": PROJECT, **(case.setup(api, owner) if case.setup else {})}
    path = case.path.format(**values)
    body = _fill(case.json, values) if case.json is not None else None
    response = api.call(case.method, path, tokens[caller], json=body, **case.kwargs)
    want = expected_status(case, caller)
    assert response.status_code == want, f"{case.id} as {caller}: {response.status_code} {response.text[:300]}"
    if want in (401, 403):
        assert response.headers["content-type"].startswith("application/problem+json")
