"""How a new definition of a feature group differs from its current version, and whether that breaks readers.

Pure functions over the canonical JSON form of two definitions (`GroupDefinition.model_dump(mode="json")`).

Breaking (a reader of the old version, a model or a training set, may fail or silently change meaning):
a different kind or entity, a feature removed or its dtype changed, a shorter `max_age` (values that were fresh
become stale), `online` turned off (online reads stop), and for on-demand groups a request feature added or
retyped (callers would have to send it). Everything else is compatible: added features, descriptions, tags, owner,
schedule, source and transform, stream topic, schema and aggregations, a longer `max_age`, `online` turned on, a
different feature order, an on-demand group's function, mode, inputs or code, a request feature removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bottega.api.features.durations import duration_seconds

# Compared field by field (in this order) after kind, entity, features, max_age and online.
OTHER_FIELDS = (
    "description",
    "owner",
    "tags",
    "source",
    "transform_sql",
    "transform",
    "schedule",
    "topic",
    "event_schema",
    "timestamp_field",
    "aggregations",
    "allowed_lateness",
    "function",
    "mode",
    "inputs",
    "code_sha256",
)


@dataclass
class Diff:
    breaking: list[str] = field(default_factory=list)
    compatible: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.breaking or self.compatible)

    @property
    def changes(self) -> list[str]:
        return [*self.breaking, *self.compatible]


def _features(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in definition.get("features", [])}


def _compare_features(old: dict[str, Any], new: dict[str, Any], diff: Diff) -> None:
    before, after = _features(old), _features(new)
    for name, feature in before.items():
        if name not in after:
            diff.breaking.append(f"feature {name} removed")
        elif after[name]["dtype"] != feature["dtype"]:
            diff.breaking.append(f"feature {name} dtype {feature['dtype']} -> {after[name]['dtype']}")
    for name in after:
        if name not in before:
            diff.compatible.append(f"feature {name} added ({after[name]['dtype']})")
    for name, feature in after.items():
        if name not in before:
            continue
        for key in ("description", "tags"):
            if feature.get(key) != before[name].get(key):
                diff.compatible.append(f"feature {name} {key} changed")
    kept_before = [name for name in before if name in after]
    kept_after = [name for name in after if name in before]
    if kept_before != kept_after:
        diff.compatible.append("features reordered")


def _compare_request_features(old: dict[str, Any], new: dict[str, Any], diff: Diff) -> None:
    before = {r["name"]: r["dtype"] for r in old.get("request_features", [])}
    after = {r["name"]: r["dtype"] for r in new.get("request_features", [])}
    for name, dtype in after.items():
        if name not in before:
            diff.breaking.append(f"request feature {name} added ({dtype})")
        elif before[name] != dtype:
            diff.breaking.append(f"request feature {name} dtype {before[name]} -> {dtype}")
    for name in before:
        if name not in after:
            diff.compatible.append(f"request feature {name} removed")


def _compare_max_age(old: dict[str, Any], new: dict[str, Any], diff: Diff) -> None:
    if "max_age" not in old or "max_age" not in new:
        return  # on-demand groups have none (a kind change is reported already)
    before, after = duration_seconds(old["max_age"]), duration_seconds(new["max_age"])
    if after < before:
        diff.breaking.append(f"max_age shortened {old['max_age']} -> {new['max_age']}")
    elif after > before:
        diff.compatible.append(f"max_age lengthened {old['max_age']} -> {new['max_age']}")


def compare(old: dict[str, Any], new: dict[str, Any]) -> Diff:
    """What changes from `old` to `new` (both canonical definitions of the same group)."""
    diff = Diff()
    if old.get("kind") != new.get("kind"):
        diff.breaking.append(f"kind {old.get('kind')} -> {new.get('kind')}")
    if old["entity"] != new["entity"]:
        diff.breaking.append(f"entity {old['entity']} -> {new['entity']}")
    _compare_features(old, new, diff)
    _compare_max_age(old, new, diff)
    _compare_request_features(old, new, diff)
    if old.get("online", True) != new.get("online", True):
        if new.get("online", True):
            diff.compatible.append("online turned on")
        else:
            diff.breaking.append("online turned off")
    for key in OTHER_FIELDS:
        if old.get(key) != new.get(key):
            diff.compatible.append(f"{key} changed")
    return diff
