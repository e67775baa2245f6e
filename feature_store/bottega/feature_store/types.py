"""Feature value types and feature references (`project:group:feature`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from numbers import Real
from typing import Any

from bottega.core.names import CATALOG_NAME_PATTERN, PROJECT_PATTERN, describe_pattern

NAME_RE = re.compile(CATALOG_NAME_PATTERN)
PROJECT_RE = re.compile(PROJECT_PATTERN)


class ValueType(StrEnum):
    """The value types a feature or an entity key can have."""

    int = "int"
    float = "float"
    string = "string"
    bool = "bool"

    def coerce(self, value: Any) -> Any:
        """The value as this type (None stays None); raises ValueError/TypeError when it cannot be."""
        if value is None:
            return None
        if self in (ValueType.int, ValueType.float) and (isinstance(value, bool) or not isinstance(value, Real)):
            raise TypeError(f"{value!r} is not a number")
        if self is ValueType.int:
            if not float(value).is_integer():
                raise TypeError(f"{value!r} is not an integer")
            return int(value)
        if self is ValueType.float:
            return float(value)
        if self is ValueType.bool:
            if not isinstance(value, bool):
                raise TypeError(f"{value!r} is not a boolean")
            return value
        if not isinstance(value, str):
            raise TypeError(f"{value!r} is not a string")
        return value


TTL_MULTIPLIER = 2.0  # online stores keep a value this many max ages after its event time (then: MISSING)


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"{kind} name {name!r} must match {NAME_RE.pattern} (lowercase, digits, underscores)")
    return name


@dataclass(frozen=True, order=True)
class FeatureRef:
    """A feature reference `project:group:feature`, e.g. `eats:restaurant_stats:prep_time_2w`."""

    project: str
    group: str
    feature: str

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"feature reference {text!r} must look like project:group:feature")
        project, group, feature = parts
        if not PROJECT_RE.match(project):
            raise ValueError(f"feature reference {text!r}: the project must be {describe_pattern(PROJECT_PATTERN)}")
        return cls(project, check_name("group", group), check_name("feature", feature))

    @property
    def group_key(self) -> tuple[str, str]:
        return (self.project, self.group)

    def __str__(self) -> str:
        return f"{self.project}:{self.group}:{self.feature}"


@dataclass(frozen=True)
class GroupSchema:
    """What an online store needs to know of a feature group."""

    project: str
    name: str
    entity_keys: tuple[tuple[str, ValueType], ...]
    features: tuple[tuple[str, ValueType], ...]
    max_age: timedelta

    def __post_init__(self) -> None:
        check_name("group", self.name)
        if not self.project:
            raise ValueError("a feature group needs a project")
        if not self.entity_keys:
            raise ValueError(f"feature group {self.name!r} needs at least one entity key")
        names = [n for n, _ in self.entity_keys] + [n for n, _ in self.features]
        for name in names:
            check_name("column", name)
        if len(set(names)) != len(names) or "event_time" in names:
            raise ValueError(f"feature group {self.name!r} has duplicate column names (or one called event_time)")
        if self.max_age <= timedelta(0):
            raise ValueError(f"feature group {self.name!r} needs a positive max_age")

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.name)

    @property
    def key_names(self) -> list[str]:
        return [name for name, _ in self.entity_keys]

    @property
    def feature_types(self) -> dict[str, ValueType]:
        return dict(self.features)

    def table_name(self, limit: int = 48) -> str:
        """A storage-safe table name, unique per (project, group), at most `limit` characters."""
        digest = hashlib.sha256(f"{self.project}:{self.name}".encode()).hexdigest()[:10]
        readable = re.sub(r"[^a-z0-9_]", "_", f"{self.project}__{self.name}")
        return f"fg_{readable[: limit - 15]}_{digest}"

    def ref(self, feature: str) -> FeatureRef:
        return FeatureRef(self.project, self.name, feature)
