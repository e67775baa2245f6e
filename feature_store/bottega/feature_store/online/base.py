"""The online-store contract: create a group's schema, write a batch, read many entities x many features at once.

Reads return, for every requested entity and feature, the value, its event time and a status: FRESH (within the
feature group's max age), STALE (known but older than max age) or MISSING (never written, expired, or not read in
time). A read never blocks past its timeout: what did not arrive in time is MISSING with `error="timeout"`.
Every store expires a value `ttl_multiplier` x max age (default 2) after its event time: older values read as
MISSING, younger ones past max age as STALE, on every implementation alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType


class Status(StrEnum):
    FRESH = "FRESH"
    STALE = "STALE"
    MISSING = "MISSING"


@dataclass(frozen=True)
class FeatureValue:
    value: Any
    event_time: datetime | None
    status: Status
    error: str | None = None


@dataclass
class ReadResult:
    """One mapping per requested entity row, in request order: feature reference -> FeatureValue."""

    rows: list[dict[FeatureRef, FeatureValue]] = field(default_factory=list)

    def values(self, index: int) -> dict[str, Any]:
        return {str(ref): fv.value for ref, fv in self.rows[index].items()}


def check_ttl_multiplier(multiplier: float) -> float:
    if multiplier < 1:
        raise ValueError("ttl_multiplier must be at least 1 (values must live at least their max age)")
    return multiplier


def missing(error: str | None = None) -> FeatureValue:
    return FeatureValue(None, None, Status.MISSING, error)


def judge(value: Any, event_time: datetime | None, max_age: timedelta, now: datetime) -> FeatureValue:
    if event_time is None:
        return missing()
    status = Status.FRESH if now - event_time <= max_age else Status.STALE
    return FeatureValue(value, event_time, status)


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return moment.astimezone(UTC)


PLAN_CACHE = 1024  # remembered read plans per store (feature lists)
ARROW_TYPES = {ValueType.int: "int64", ValueType.float: "float64", ValueType.string: "string", ValueType.bool: "bool"}


@dataclass(frozen=True)
class Columns:
    """A table's rows for a group as Python lists, column by column: entity keys, features, event time (epoch µs)."""

    keys: list[list[Any]]
    features: list[list[Any]]
    micros: list[int]


def table_columns(schema: GroupSchema, table: Any) -> Columns:
    """Validate a pyarrow Table against a group (as `prepare_row` does a row) and return its columns as lists.

    Entity keys must be present and non-null; features are optional (absent reads as null); numbers convert between
    int and float only when no value changes; `event_time` must be a timezone-aware timestamp column."""
    import pyarrow as pa

    def column(name: str, vtype: ValueType, required: bool) -> list[Any]:
        target = pa.type_for_alias(ARROW_TYPES[vtype])
        if name not in table.column_names:
            if required:
                raise ValueError(f"rows for {schema.name!r} lack the entity key {name!r}: {schema.key_names}")
            return [None] * table.num_rows
        values = table.column(name)
        if values.type != target:
            numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
            if not (numeric and vtype in (ValueType.int, ValueType.float)) and not pa.types.is_null(values.type):
                raise TypeError(f"column {name!r} of {schema.name!r} is {values.type}, not {vtype.value}")
            try:
                values = values.cast(target, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TypeError(f"column {name!r} of {schema.name!r} is not {vtype.value}: {exc}") from None
        if required and values.null_count:
            raise ValueError(f"rows for {schema.name!r} have a null entity key {name!r}")
        result: list[Any] = values.to_pylist()
        return result

    keys = [column(name, vtype, True) for name, vtype in schema.entity_keys]
    features = [column(name, vtype, False) for name, vtype in schema.features]
    if "event_time" not in table.column_names:
        raise ValueError(f"rows for {schema.name!r} need a timezone-aware `event_time` column")
    event_time = table.column("event_time")
    if not pa.types.is_timestamp(event_time.type) or event_time.type.tz is None or event_time.null_count:
        raise ValueError(f"`event_time` of {schema.name!r} must be a timezone-aware timestamp without nulls")
    micros = event_time.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    return Columns(keys=keys, features=features, micros=micros)


class OnlineStore(ABC):
    """The contract every online store implements (see tests/integration/feature_store/test_online_contract.py)."""

    def __init__(self) -> None:
        self.schemas: dict[tuple[str, str], GroupSchema] = {}
        self._plans: dict[tuple[FeatureRef, ...], dict[tuple[str, str], tuple[GroupSchema, list[FeatureRef]]]] = {}

    @abstractmethod
    def create_group(self, schema: GroupSchema) -> None:
        """Create (idempotently) the storage of a feature group."""

    @abstractmethod
    def write_batch(self, schema: GroupSchema, rows: Iterable[Mapping[str, Any]]) -> int:
        """Upsert rows `{<entity keys>, <features>, event_time}`; an older event never replaces a newer one.
        Returns the number of rows written."""

    def write_table(self, schema: GroupSchema, table: Any) -> int:
        """`write_batch` for a pyarrow Table with the group's columns (entity keys, features, `event_time`), such as
        the offline store's rows; stores override it with a columnar path. Returns the number of rows written."""
        return self.write_batch(schema, table.to_pylist())

    @abstractmethod
    def read(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float = 1.0,
        now: datetime | None = None,
    ) -> ReadResult:
        """For each entity row (join-key values by name) the requested features, in one call."""

    async def read_async(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[FeatureRef],
        *,
        timeout: float,
        now: datetime | None = None,
    ) -> ReadResult:
        """`read` for an asyncio caller: never blocks the event loop, bounded by `timeout` like `read` (what did not
        arrive in time is MISSING with `error="timeout"`). By default `read` runs in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.read, entities, features, timeout=timeout, now=now)

    @abstractmethod
    def drop_group(self, schema: GroupSchema) -> None:
        """Delete a feature group's storage and values."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def register(self, schema: GroupSchema) -> None:
        """Remember a group's schema so `read` can resolve its references (create_group does this too)."""
        self.schemas[schema.key] = schema

    def plan(self, features: Sequence[FeatureRef]) -> dict[tuple[str, str], tuple[GroupSchema, list[FeatureRef]]]:
        """Group requested references by feature group, checking each exists (callers must not modify the plan).

        Plans are remembered per feature list (a service asks for the same list on every request), and a
        remembered plan is used only while every group in it still has the same registered schema."""
        wanted = tuple(features)
        cached = self._plans.get(wanted)
        if cached is not None and all(self.schemas.get(k) is schema for k, (schema, _) in cached.items()):
            return cached
        plan = self._plan(wanted)
        if len(self._plans) >= PLAN_CACHE:
            self._plans.clear()
        self._plans[wanted] = plan
        return plan

    def _plan(self, features: Sequence[FeatureRef]) -> dict[tuple[str, str], tuple[GroupSchema, list[FeatureRef]]]:
        plan: dict[tuple[str, str], tuple[GroupSchema, list[FeatureRef]]] = {}
        for ref in features:
            schema = self.schemas.get(ref.group_key)
            if schema is None:
                raise KeyError(f"unknown feature group {ref.project}:{ref.group}: create or register it first")
            if ref.feature not in schema.feature_types:
                raise KeyError(f"feature group {ref.project}:{ref.group} has no feature {ref.feature!r}")
            plan.setdefault(ref.group_key, (schema, []))[1].append(ref)
        return plan

    def entity_key(self, schema: GroupSchema, entity: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The typed join-key tuple of an entity row for a group, or None when a key is absent."""
        try:
            return tuple(vtype.coerce(entity[name]) for name, vtype in schema.entity_keys)
        except KeyError:
            return None

    def prepare_row(
        self, schema: GroupSchema, row: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], datetime]:
        """Validate one row: (typed keys, typed features present in the row, event time in UTC)."""
        keys = self.entity_key(schema, row)
        if keys is None or any(k is None for k in keys):
            raise ValueError(f"row for {schema.name!r} lacks an entity key: {schema.key_names}")
        event_time = row.get("event_time")
        if not isinstance(event_time, datetime):
            raise ValueError(f"row for {schema.name!r} needs a timezone-aware datetime `event_time`")
        values = {name: vtype.coerce(row.get(name)) for name, vtype in schema.features}
        return keys, values, as_utc(event_time)
