"""What a replica serves, as one immutable snapshot: deployments (routes) and the model versions they use.

The watcher builds a new `ServingState` for every change it applies and swaps it in with one attribute assignment;
a request reads the state once, so it sees either the old or the new routes, never a mix, and a version it picked
stays loaded until the request is done (replaced versions are closed after a grace period).

Routing a request: a version pinned by `X-Bottega-Version` (a number, or `model:number` when the deployment serves
several models) wins; otherwise sticky routing hashes the routing key (the `X-Bottega-Routing-Key` header, else the
deployment's `routing.key` field of the first instance) into 100 buckets laid out by the targets' weights; otherwise
a random draw by weight.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bottega.serving.features.plan import FeaturePlan
    from bottega.serving.runtimes.base import Runtime

ModelKey = tuple[str, str, int]
"""(project, model, version)."""


class RoutingError(Exception):
    """A request names a version this deployment does not serve."""


@dataclass(eq=False)
class LoadedModel:
    """One model version, ready: its runtime and the feature plan built from its signature."""

    project: str
    model: str
    version: int
    runtime: Runtime
    plan: FeaturePlan
    signature: Mapping[str, Any]
    output_kind: str
    """`probability` (binary), `probabilities` (multiclass), `prediction` (regression or custom)."""
    blocking: bool = False
    """True when `predict` does I/O (custom Python models): the service calls it off the event loop."""
    classes: tuple[Any, ...] = ()
    """a multiclass model's class labels (its signature's), in the order of its probabilities."""

    @property
    def key(self) -> ModelKey:
        return (self.project, self.model, self.version)

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class Route:
    """One online deployment at one revision: weighted targets, shadows and routing."""

    project: str
    name: str
    revision: int
    targets: tuple[LoadedModel, ...]
    weights: tuple[int, ...]
    shadows: tuple[LoadedModel, ...] = ()
    sticky_key: str | None = None
    _bounds: tuple[int, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.weights) or not self.targets:
            raise ValueError(f"deployment {self.name!r}: one weight per target, at least one target")
        running, bounds = 0, []
        for weight in self.weights:
            running += weight
            bounds.append(running)
        object.__setattr__(self, "_bounds", tuple(bounds))

    @property
    def models(self) -> tuple[LoadedModel, ...]:
        return self.targets + self.shadows

    def choose(self, pinned: str | None = None, routing_key: str | None = None) -> LoadedModel:
        if pinned is not None:
            return self.pinned(pinned)
        if len(self.targets) == 1:
            return self.targets[0]
        total = self._bounds[-1]
        if routing_key is not None:
            digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") % total
        else:
            point = int(random.random() * total)  # traffic splitting, not security
        return self.targets[min(bisect_right(self._bounds, point), len(self.targets) - 1)]

    def pinned(self, text: str) -> LoadedModel:
        model, _, number = text.strip().rpartition(":")
        if not number.isdigit():
            raise RoutingError(f"X-Bottega-Version: {text!r} is not a version number (`3` or `model:3`)")
        version = int(number)
        found = [m for m in self.models if m.version == version and (not model or m.model == model)]
        if len(found) == 1:
            return found[0]
        served = ", ".join(m.label for m in self.models)
        if not found:
            raise RoutingError(f"deployment {self.name!r} does not serve {text!r}; it serves {served}")
        raise RoutingError(f"X-Bottega-Version: {text!r} is ambiguous here ({served}): write `model:version`")


@dataclass(frozen=True)
class ServingState:
    """Every route a replica serves, by (project, deployment name)."""

    routes: Mapping[tuple[str, str], Route] = field(default_factory=dict)
    sequence: int | None = None
    by_name: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, routes: Mapping[tuple[str, str], Route], sequence: int | None) -> ServingState:
        by_name: dict[str, list[Route]] = {}
        for route in routes.values():
            by_name.setdefault(route.name, []).append(route)
        return cls(dict(routes), sequence, {name: tuple(found) for name, found in by_name.items()})

    def find(self, name: str, project: str | None = None) -> Route | None:
        """The route called `name` (in `project` when given); None when unknown.

        Raises RoutingError when the name is served for several projects and none was given."""
        if project is not None:
            return self.routes.get((project, name))
        found = self.by_name.get(name, ())
        if len(found) > 1:
            projects = ", ".join(sorted(r.project for r in found))
            raise RoutingError(
                f"deployment {name!r} exists in several projects ({projects}): "
                f"call /v1/projects/<project>/models/{name}:predict"
            )
        return found[0] if found else None

    def models(self) -> dict[ModelKey, LoadedModel]:
        return {m.key: m for route in self.routes.values() for m in route.models}


def sticky_value(rows: Sequence[Mapping[str, Any]], key: str | None) -> str | None:
    """The routing key a sticky deployment hashes when no header gives one: its key field in the first row."""
    if key is None or not rows:
        return None
    value = rows[0].get(key)
    return None if value is None else str(value)
