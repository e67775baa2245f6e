"""What the online store holds for some entities of one group: values, event time, age and status.

The read goes through the same `OnlineStore.read` serving uses (so FRESH / STALE / MISSING mean what they mean
there), with the group's schema from the catalog. Entities come as mappings of join key -> value; text values (as a
command line gives them) are parsed to the key's declared type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

if TYPE_CHECKING:
    from bottega.feature_store.online.base import OnlineStore


@dataclass
class OnlineRow:
    keys: dict[str, Any]
    status: str  # FRESH / STALE / MISSING (of the entity's stored row)
    event_time: datetime | None
    age_seconds: float | None
    values: dict[str, Any] = field(default_factory=dict)  # feature -> value (None when missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.keys,
            "status": self.status,
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "age_seconds": self.age_seconds,
            **self.values,
        }


def parse_key_value(text: str, vtype: ValueType, name: str) -> Any:
    """A join key given as text -> its declared type (`42` for an int key, `true` for a bool one)."""
    try:
        if vtype is ValueType.int:
            return int(text)
        if vtype is ValueType.float:
            return float(text)
    except ValueError:
        raise ValueError(f"key {name}={text!r}: {name} is declared {vtype.value}") from None
    if vtype is ValueType.bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError(f"key {name}={text!r}: {name} is declared bool (true or false)")
        return lowered in ("true", "1")
    return text


def _entity(schema: GroupSchema, given: dict[str, Any]) -> dict[str, Any]:
    names = schema.key_names
    where = f"{schema.project}:{schema.name}"
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a join key of {where} (keys: {', '.join(names)})")
    absent = [name for name in names if name not in given]
    if absent:
        raise ValueError(f"give every join key of {where}: missing {', '.join(absent)}")
    typed = {}
    for name, vtype in schema.entity_keys:
        value = given[name]
        if isinstance(value, str):
            typed[name] = parse_key_value(value, vtype, name)
            continue
        try:
            typed[name] = vtype.coerce(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"key {name}={value!r}: {name} is declared {vtype.value} ({exc})") from None
    return typed


def group_schema(client: Any, project: str, group: str) -> GroupSchema:
    """The store schema of a stored group (batch or stream) from the catalog; on-demand groups are not stored."""
    from bottega.feature_store.training import schemas_from_resolution

    read = client.features.group(project, group)
    if read.kind == "on_demand":
        raise ValueError(f"{project}:{group} is an on-demand group: computed per request, not stored online")
    schemas = schemas_from_resolution(client.features.resolve(list(read.refs)))
    return schemas[(project, group)]


def read_online(
    client: Any,
    store: OnlineStore,
    project: str,
    group: str,
    entities: list[dict[str, Any]],
    *,
    features: list[str] | None = None,
    now: datetime | None = None,
    timeout: float = 5.0,
) -> list[OnlineRow]:
    """The stored values of `features` (default: all) of `project:group` for each entity, as serving reads them."""
    if not entities:
        raise ValueError("give at least one entity (its join keys)")
    schema = group_schema(client, project, group)
    declared = list(schema.feature_types)
    names = list(features or declared)
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a feature of {project}:{group} (features: {', '.join(declared)})")
    typed = [_entity(schema, dict(entity)) for entity in entities]
    refs = [FeatureRef(project, group, name) for name in names]
    store.register(schema)
    moment = now or datetime.now(UTC)
    result = store.read(typed, refs, timeout=timeout, now=moment)
    rows = []
    for keys, values in zip(typed, result.rows, strict=True):
        first = values[refs[0]]  # one stored row per entity: every feature shares its event time and status
        event_time = first.event_time
        age = (moment - event_time).total_seconds() if event_time is not None else None
        rows.append(
            OnlineRow(keys, first.status.value, event_time, age, {ref.feature: values[ref].value for ref in refs})
        )
    return rows
