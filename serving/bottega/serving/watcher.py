"""Follow the API's deployment feed and keep the replica's `ServingState` in step with it.

A background thread long-polls `GET /api/v1/deployments/watch`: first a snapshot, then each change after the last
sequence. For a change it loads what the new revision needs (artifacts downloaded and sha256-checked, a runtime, a
feature plan from the signature) BEFORE swapping the new state in, so requests never wait for a load and never see a
half-loaded deployment. A revision that fails to load (a corrupt artifact, an unknown feature) leaves the
deployment on its previous revision and is reported by `/readyz`, the metrics and the log. Versions no route uses any
more are closed after a grace period, so requests already holding them finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from bottega.core.errors import Unavailable
from bottega.serving.routing import LoadedModel, ModelKey, Route, ServingState
from bottega.serving.runtimes.base import signature_classes

if TYPE_CHECKING:
    from bottega.api.deployments.schemas import WatchChange
    from bottega.feature_store.online.base import OnlineStore
    from bottega.sdk import Client
    from bottega.serving.runtimes.base import Runtime
    from bottega.serving.runtimes.loader import ArtifactCache

log = logging.getLogger("bottega.serving")


def output_kind(signature: Mapping[str, Any]) -> str:
    outputs = signature.get("outputs") or []
    names = [o.get("name") for o in outputs]
    if names == ["probability"]:
        return "probability"
    if names == ["probabilities"]:
        return "probabilities"
    return "prediction"


@dataclass
class LoadStatus:
    """What the replica knows about loading: for /readyz and the metrics."""

    snapshot_applied: bool = False
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    """(project, deployment) -> why its latest revision is not served."""
    never_loaded: set[tuple[str, str]] = field(default_factory=set)
    """deployments of the feed that have no loaded revision at all."""
    sequence: int | None = None
    last_applied_at: float | None = None


class Loader:
    """Turns a deployment revision into a Route: runtimes are shared per version, plans per (version, policies)."""

    def __init__(self, client: Client, cache: ArtifactCache, store: OnlineStore | None) -> None:
        self.client = client
        self.cache = cache
        self.store = store
        self.runtimes: dict[ModelKey, Runtime] = {}
        self.signatures: dict[ModelKey, dict[str, Any]] = {}

    def runtime(self, key: ModelKey) -> tuple[Runtime, dict[str, Any]]:
        from bottega.serving.runtimes.loader import load_runtime

        if key not in self.runtimes:
            project, model, version = key
            artifacts = self.cache.fetch(project, model, version)
            self.runtimes[key] = load_runtime(artifacts)
            self.signatures[key] = dict(artifacts.signature)
        return self.runtimes[key], self.signatures[key]

    def model(self, key: ModelKey, spec: Mapping[str, Any]) -> LoadedModel:
        from bottega.serving.features.plan import FeaturePlan
        from bottega.serving.features.policy import parse_policies

        runtime, signature = self.runtime(key)
        refs = list(signature.get("store_features") or [])
        resolution = self.client.features.resolve(refs) if refs else None
        plan = FeaturePlan.build(signature, resolution, parse_policies(spec))
        if self.store is not None:
            plan.register(self.store)
        elif refs:
            raise ValueError(f"{key[1]}:{key[2]} reads store features but this replica has no online store")
        return LoadedModel(
            project=key[0],
            model=key[1],
            version=key[2],
            runtime=runtime,
            plan=plan,
            signature=signature,
            output_kind=output_kind(signature),
            blocking=runtime.flavor == "python",
            classes=signature_classes(signature) if output_kind(signature) == "probabilities" else (),
        )

    def route(self, change: WatchChange) -> Route:
        spec = change.spec
        targets = [self.model((change.project, t["model"], int(t["version"])), spec) for t in spec["targets"]]
        shadows = [self.model((change.project, s["model"], int(s["version"])), spec) for s in spec.get("shadows", [])]
        routing = spec.get("routing") or {}
        return Route(
            project=change.project,
            name=change.name,
            revision=change.revision,
            targets=tuple(targets),
            weights=tuple(int(t["weight"]) for t in spec["targets"]),
            shadows=tuple(shadows),
            sticky_key=routing.get("key") if routing.get("strategy") == "sticky" else None,
        )

    def release(self, keep: set[ModelKey]) -> list[Runtime]:
        """Forget the runtimes no route uses; the caller closes them after the grace period."""
        gone = [key for key in self.runtimes if key not in keep]
        released = [self.runtimes.pop(key) for key in gone]
        for key in gone:
            self.signatures.pop(key, None)
        return released


class Watcher:
    """Applies the feed to a `ServingState` held in `holder.state` (one attribute, swapped whole)."""

    def __init__(
        self,
        client: Client,
        loader: Loader,
        publish: Callable[[ServingState], None],
        *,
        project: str | None = None,
        poll_timeout_s: float = 25.0,
        unload_grace_s: float = 10.0,
        on_load_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.loader = loader
        self.publish = publish
        self.project = project
        self.poll_timeout_s = poll_timeout_s
        self.unload_grace_s = unload_grace_s
        self.on_load_failure = on_load_failure
        self.status = LoadStatus()
        self.state = ServingState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bottega-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.poll_once()
                delay = 0.2
            except (httpx.TransportError, Unavailable) as exc:
                log.warning("deployment feed unreachable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("deployment feed failed; retrying in %.1f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def poll_once(self, timeout: float | None = None) -> int:
        """One long poll; applies what it returns. Returns the number of changes seen."""
        wait = self.poll_timeout_s if timeout is None else timeout
        result = self.client.deployments.watch(self.status.sequence, timeout=wait, project=self.project)
        if result.snapshot:
            self.apply(result.changes, snapshot=True)
        elif result.changes:
            self.apply(result.changes)
        self.status.sequence = result.sequence
        return len(result.changes)

    def apply(self, changes: list[WatchChange], *, snapshot: bool = False) -> None:
        routes: dict[tuple[str, str], Route] = {} if snapshot else dict(self.state.routes)
        if snapshot:
            self.status.never_loaded = set()
        for change in changes:
            key = (change.project, change.name)
            if not change.active or change.kind != "online":
                routes.pop(key, None)
                self.status.errors.pop(key, None)
                self.status.never_loaded.discard(key)
                continue
            try:
                routes[key] = self.loader.route(change)
            except Exception as exc:
                self._failed(key, change, exc, routes)
                continue
            self.status.errors.pop(key, None)
            self.status.never_loaded.discard(key)
        if snapshot:
            kept = set(routes)
            for key in list(self.status.errors):
                if key not in kept and key not in self.status.never_loaded:
                    self.status.errors.pop(key)
        self._swap(ServingState.of(routes, self.status.sequence))
        self.status.snapshot_applied = True

    def _failed(
        self, key: tuple[str, str], change: WatchChange, exc: Exception, routes: dict[tuple[str, str], Route]
    ) -> None:
        old = self.state.routes.get(key)
        message = f"revision {change.revision} of {change.project}/{change.name} did not load: {exc}"
        log.error("%s%s", message, f"; still serving revision {old.revision}" if old else "")
        self.status.errors[key] = message
        if old is not None:
            routes[key] = old
        else:
            self.status.never_loaded.add(key)
        if self.on_load_failure is not None:
            self.on_load_failure(change.name)

    def _swap(self, state: ServingState) -> None:
        self.state = state
        self.publish(state)
        self.status.last_applied_at = time.time()
        released = self.loader.release(set(state.models()))
        if released:
            timer = threading.Timer(self.unload_grace_s, _close_all, args=(released,))
            timer.daemon = True
            timer.start()


def _close_all(runtimes: list[Runtime]) -> None:
    for runtime in runtimes:
        try:
            runtime.close()
        except Exception:
            log.exception("closing a released model failed")
