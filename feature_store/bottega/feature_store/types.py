"""Feature value types and feature references (`project:group:feature`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from numbers import Real
from typing import Any

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


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
        return cls(project, check_name("group", group), check_name("feature", feature))

    @property
    def group_key(self) -> tuple[str, str]:
        return (self.project, self.group)

    def __str__(self) -> str:
        return f"{self.project}:{self.group}:{self.feature}"
