"""SDK methods for deployments: create, read, update (optimistically), shift traffic, roll back, undeploy, history,
and the change feed that serving replicas follow (`watch`, `watch_iter`).

    dep = client.deployments.create("eats", "eta", {"targets": [{"model": "eta", "alias": "champion", "weight": 100}]})
    dep = client.deployments.set_traffic("eats", "eta", {"eta:3": 90, "eta:4": 10}, reason="canary v4")
    client.deployments.rollback("eats", "eta", reason="v4 is slow")
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel

from bottega.api.deployments.schemas import (
    BatchSpec,
    DeploymentRead,
    DeploymentRollback,
    DeploymentUpdate,
    OnlineSpec,
    RevisionRead,
    WatchChange,
    WatchResult,
)
from bottega.api.pages import Page
from bottega.core.errors import InvalidInput, Unavailable

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport

Spec = OnlineSpec | BatchSpec | Mapping[str, Any]
TrafficKey = str | tuple[str, int | str]
Kind = Literal["online", "batch"]


def _spec(spec: Spec) -> dict[str, Any]:
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json", exclude_none=True)
    return dict(spec)


def _kind(spec: Spec) -> Kind:
    if isinstance(spec, BatchSpec):
        return "batch"
    if isinstance(spec, OnlineSpec):
        return "online"
    return "online" if "targets" in spec or "input" not in spec else "batch"


def _if_match(expected_revision: int | None) -> dict[str, str]:
    return {"If-Match": f'"{expected_revision}"'} if expected_revision is not None else {}


def parse_ref(key: TrafficKey) -> tuple[str, int | None, str | None]:
    """`"eta:3"`, `"eta@champion"`, `("eta", 3)` or `("eta", "champion")` as (model, version, alias)."""
    if isinstance(key, tuple):
        model, ref = key
        if isinstance(ref, int):
            return model, ref, None
        return (model, int(ref), None) if ref.isdigit() else (model, None, ref)
    if "@" in key:
        model, _, alias = key.partition("@")
        if model and alias:
            return model, None, alias
    model, _, version = key.rpartition(":")
    if model and version.isdigit():
        return model, int(version), None
    raise InvalidInput(f"{key!r} names no model version: write `model:version` or `model@alias`")


def traffic_targets(current: Mapping[str, Any], weights: Mapping[TrafficKey, int]) -> builtins.list[dict[str, Any]]:
    """The targets of an online spec re-weighted to `weights` (the complete new split; unnamed targets go).

    A target named by version keeps what the current spec says about it (its alias of origin); one named by alias
    is resolved again by the server.
    """
    existing = {(t["model"], t.get("version")): t for t in current.get("targets", [])}
    targets: builtins.list[dict[str, Any]] = []
    for key, weight in weights.items():
        model, version, alias = parse_ref(key)
        if version is not None:
            base = existing.get((model, version), {"model": model, "version": version})
            targets.append({**base, "weight": weight})
        else:
            targets.append({"model": model, "alias": alias, "weight": weight})
    return targets


class DeploymentsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api

    def _base(self, project: str) -> str:
        return f"{self._api}/projects/{project}/deployments"

    def create(
        self, project: str, name: str, spec: Spec, *, kind: Kind | None = None, reason: str = ""
    ) -> DeploymentRead:
        """Create a deployment at revision 1; `kind` is inferred from the spec when not given."""
        body = {"name": name, "kind": kind or _kind(spec), "spec": _spec(spec), "reason": reason}
        return DeploymentRead.model_validate(self._t.json("POST", self._base(project), json=body))

    def get(self, project: str, name: str) -> DeploymentRead:
        """The current revision (`.revision`), its spec and who/when/why."""
        return DeploymentRead.model_validate(self._t.json("GET", f"{self._base(project)}/{name}"))

    def list(
        self,
        project: str,
        *,
        kind: Kind | None = None,
        include_undeployed: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[DeploymentRead]:
        params: dict[str, Any] = {"include_undeployed": include_undeployed, "limit": limit, "offset": offset}
        if kind is not None:
            params["kind"] = kind
        return Page[DeploymentRead].model_validate(self._t.json("GET", self._base(project), params=params))

    def update(
        self, project: str, name: str, spec: Spec, *, expected_revision: int, reason: str = ""
    ) -> DeploymentRead:
        """Write revision `expected_revision + 1`; raises StaleRevision (a Conflict; `.current_revision`) when the
        deployment moved on meanwhile. Redeploys an undeployed deployment."""
        body = DeploymentUpdate(spec=_spec(spec), reason=reason, expected_revision=expected_revision)
        payload = body.model_dump(mode="json")
        return DeploymentRead.model_validate(self._t.json("PUT", f"{self._base(project)}/{name}", json=payload))

    def set_traffic(
        self,
        project: str,
        name: str,
        weights: Mapping[TrafficKey, int],
        *,
        reason: str = "",
        expected_revision: int | None = None,
    ) -> DeploymentRead:
        """Split an online deployment's traffic, e.g. `{"eta:3": 90, "eta:4": 10}` (weights sum to 100).

        Routing stays, and so do the shadows, except those that become targets (a shadow promoted to a canary).
        Without `expected_revision` the change is based on the revision read here, so a
        concurrent change still makes it fail with Conflict rather than be overwritten.
        """
        current = self.get(project, name)
        if current.kind != "online":
            raise InvalidInput(f"deployment {name!r} is a batch deployment: it has no traffic to split")
        targets = traffic_targets(current.spec, weights)
        serving = {(t["model"], t.get("version")) for t in targets}
        shadows = [s for s in current.spec.get("shadows", []) if (s["model"], s.get("version")) not in serving]
        spec = {**current.spec, "targets": targets, "shadows": shadows}
        base = current.revision if expected_revision is None else expected_revision
        return self.update(project, name, spec, expected_revision=base, reason=reason)

    def rollback(
        self,
        project: str,
        name: str,
        *,
        reason: str = "",
        to_revision: int | None = None,
        expected_revision: int | None = None,
    ) -> DeploymentRead:
        """A new revision restoring the previous revision's spec (or `to_revision`'s)."""
        body = DeploymentRollback(reason=reason, to_revision=to_revision, expected_revision=expected_revision)
        payload = body.model_dump(mode="json", exclude_none=True)
        path = f"{self._base(project)}/{name}/rollback"
        return DeploymentRead.model_validate(self._t.json("POST", path, json=payload))

    def undeploy(
        self, project: str, name: str, *, reason: str = "", expected_revision: int | None = None
    ) -> DeploymentRead:
        """A new revision with `active=False` (owners); `update` redeploys it."""
        path = f"{self._base(project)}/{name}"
        body = self._t.json("DELETE", path, params={"reason": reason}, headers=_if_match(expected_revision))
        return DeploymentRead.model_validate(body)

    def history(self, project: str, name: str, *, limit: int = 50, offset: int = 0) -> Page[RevisionRead]:
        """Revisions, newest first."""
        path = f"{self._base(project)}/{name}/revisions"
        params = {"limit": limit, "offset": offset}
        return Page[RevisionRead].model_validate(self._t.json("GET", path, params=params))

    def revision(self, project: str, name: str, number: int) -> RevisionRead:
        path = f"{self._base(project)}/{name}/revisions/{number}"
        return RevisionRead.model_validate(self._t.json("GET", path))

    def watch(self, since: int | None = None, *, timeout: float = 30.0, project: str | None = None) -> WatchResult:
        """One long poll: a snapshot when `since` is None, else the changes after `since` (waiting up to `timeout`
        seconds for one; empty `changes` when none came)."""
        params: dict[str, Any] = {"timeout": timeout}
        if since is not None:
            params["since"] = since
        if project is not None:
            params["project"] = project
        options: dict[str, Any] = {}
        read_timeout = self._t.http.timeout.read
        if read_timeout is not None and read_timeout < timeout + 10:
            options["timeout"] = httpx.Timeout(timeout + 30, connect=10)
        body = self._t.json("GET", f"{self._api}/deployments/watch", params=params, **options)
        return WatchResult.model_validate(body)

    def watch_iter(
        self,
        since: int | None = None,
        *,
        timeout: float = 30.0,
        project: str | None = None,
        retry_s: float = 30.0,
    ) -> Iterator[WatchChange]:
        """Every change after `since` (starting with a snapshot of the active deployments when `since` is None),
        forever. Each change is the whole state of one deployment, so applying them in order keeps a replica in
        sync. The server being unreachable or unavailable is retried with backoff, for up to `retry_s` seconds in a
        row; other errors (Forbidden, ...) are raised."""
        failing_since: float | None = None
        delay = 0.2
        while True:
            try:
                result = self.watch(since, timeout=timeout, project=project)
            except (httpx.TransportError, Unavailable):
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > retry_s:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            failing_since, delay = None, 0.2
            yield from result.changes
            since = result.sequence
