"""Pure sliding-window aggregation state for one event stream (one Kafka partition); no I/O.

Semantics (times are integer epoch microseconds):
- Sliding windows: the value of an aggregation with window W for an entity at time T aggregates that entity's
  accepted events with `T - W < ts <= T` (the start is exclusive, the end inclusive).
- On each accepted event at `ts` a row is emitted for its entity at `event_time = ts` with every aggregation
  evaluated at `T = ts`. Functions skip null field values: `count` counts events (or, with a field, its non-null
  values; 0 when none), `sum`/`min`/`max`/`mean` are null when there is no non-null value (float sums use
  `math.fsum`, so they do not depend on arrival order), `last` is the field of the latest event in the window
  (by event time, then arrival order; it may be null).
- Watermark = (max event time accepted) - allowed_lateness. An event with `ts < watermark` is late: it is rejected
  (`AddResult.late`) and changes nothing. Before any event there is no watermark.
- An out-of-order event (`ts` before the newest one, but not late) is inserted and the rows of its entity at its own
  `ts` AND at every later event time `T` with `ts <= T < ts + W_max` (W_max = the longest window) are recomputed and
  emitted again: these are corrections. Each row carries a `revision`: the number of its entity's events with
  `T - W_max < ts' <= T` that arrived after the first event at `T`, i.e. how many times the row was corrected. It is
  a function of the state, so a replay rebuilds the same revisions (the processor writes a corrected row online at
  `event_time + revision` microseconds so that it replaces the previous version; see `processor`).
- Two events of an entity at the same `ts` give one row at `ts` (the second emission, with revision 1, replaces the
  first); both count in the windows.
- State is pruned per entity to events newer than `watermark - W_max`: nothing older can enter a future window,
  since every future row is at `T >= watermark`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bottega.feature_store.definitions import StreamingFeatureGroup
from bottega.feature_store.types import ValueType

NUMERIC = (ValueType.int, ValueType.float)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class AggSpec:
    """One aggregation: output `name` of type `dtype` = `function` of `field` over a window of `window_us`."""

    name: str
    function: str
    field: str | None
    window_us: int
    dtype: ValueType


@dataclass(frozen=True)
class WindowSpec:
    """What an aggregator computes: the aggregations, and how late an event may be."""

    aggregations: tuple[AggSpec, ...]
    lateness_us: int

    def __post_init__(self) -> None:
        if not self.aggregations:
            raise ValueError("a window spec needs at least one aggregation")
        if self.lateness_us < 0 or any(a.window_us <= 0 for a in self.aggregations):
            raise ValueError("windows must be positive and the allowed lateness not negative")

    @property
    def max_window_us(self) -> int:
        return max(a.window_us for a in self.aggregations)

    @classmethod
    def from_group(cls, group: StreamingFeatureGroup) -> WindowSpec:
        """The spec of a streaming group, checking each aggregation's output type against its declared feature."""
        dtypes = {f.name: f.dtype for f in group.features}
        specs = []
        for agg in group.aggregations:
            field_type = group.event_schema[agg.field] if agg.field else None
            check_output(agg.name, agg.function, field_type, dtypes[agg.name])
            window_us = agg.window // MICROSECOND
            specs.append(AggSpec(agg.name, agg.function, agg.field, window_us, dtypes[agg.name]))
        return cls(tuple(specs), group.allowed_lateness // MICROSECOND)


def check_output(name: str, function: str, field_type: ValueType | None, dtype: ValueType) -> None:
    """Raise ValueError when the declared feature type cannot hold what the aggregation produces."""
    if function == "count":
        ok = dtype in NUMERIC
    elif function in ("sum", "mean"):
        int_sum = function == "sum" and dtype is ValueType.int and field_type is ValueType.int
        ok = field_type in NUMERIC and (dtype is ValueType.float or int_sum)
    else:  # min, max, last: the field's own type (an int may widen to float)
        ok = dtype is field_type or (dtype is ValueType.float and field_type is ValueType.int)
    if not ok:
        what = f"{function}({field_type.value})" if field_type else function
        raise ValueError(f"aggregation {name!r}: {what} cannot be declared as a {dtype.value} feature")


@dataclass(frozen=True)
class _Entry:
    ts: int
    seq: int
    fields: Mapping[str, Any]


def _order(entry: _Entry) -> tuple[int, int]:
    return (entry.ts, entry.seq)


def _ts(entry: _Entry) -> int:
    return entry.ts


def _window(entries: list[_Entry], at_us: int, window_us: int) -> list[_Entry]:
    """The entries with `at_us - window_us < ts <= at_us` (entries are sorted by time)."""
    return entries[bisect_right(entries, at_us - window_us, key=_ts) : bisect_right(entries, at_us, key=_ts)]


@dataclass(frozen=True)
class Row:
    """One output row: the entity's keys, its event time (epoch µs), the aggregation values, the revision."""

    keys: tuple[Any, ...]
    ts_us: int
    values: dict[str, Any]
    revision: int


@dataclass(frozen=True)
class AddResult:
    """What adding an event did: rejected as late, or accepted with the rows to (re-)emit (none when not asked)."""

    late: bool
    rows: tuple[Row, ...] = ()
    watermark_us: int | None = None


def aggregate(spec: AggSpec, entries: Sequence[_Entry]) -> Any:
    """One aggregation over the entries of a window (sorted by event time, then arrival)."""
    if spec.function == "count" and spec.field is None:
        return _cast(spec.dtype, len(entries))
    assert spec.field is not None
    if spec.function == "last":
        return _cast(spec.dtype, entries[-1].fields.get(spec.field)) if entries else None
    values = [v for e in entries if (v := e.fields.get(spec.field)) is not None]
    if spec.function == "count":
        return _cast(spec.dtype, len(values))
    if not values:
        return None
    if spec.function == "sum":
        total = sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
        return _cast(spec.dtype, total)
    if spec.function == "mean":
        return math.fsum(values) / len(values)
    return _cast(spec.dtype, min(values) if spec.function == "min" else max(values))


def _cast(dtype: ValueType, value: Any) -> Any:
    if value is None:
        return None
    if dtype is ValueType.float:
        return float(value)
    if dtype is ValueType.int:
        return int(value)
    return value


class WindowAggregator:
    """Sliding-window state for the entities of one ordered stream (a Kafka partition)."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.max_ts_us: int | None = None
        self._entities: dict[tuple[Any, ...], list[_Entry]] = {}
        self._seq = 0  # arrival order: breaks event-time ties and counts revisions

    @property
    def watermark_us(self) -> int | None:
        """Max accepted event time - allowed lateness; events before it are late (None before any event)."""
        return None if self.max_ts_us is None else self.max_ts_us - self.spec.lateness_us

    @property
    def entity_count(self) -> int:
        return len(self._entities)

    @property
    def event_count(self) -> int:
        return sum(len(entries) for entries in self._entities.values())

    def advance(self, max_ts_us: int | None) -> None:
        """Raise the max event time seen (never lowers it), e.g. to the committed one after a replay."""
        if max_ts_us is not None and (self.max_ts_us is None or max_ts_us > self.max_ts_us):
            self.max_ts_us = max_ts_us

    def add(self, keys: tuple[Any, ...], ts_us: int, fields: Mapping[str, Any], *, emit: bool = True) -> AddResult:
        """Add one event; returns whether it was late and, when `emit`, the rows to write (in event-time order)."""
        watermark = self.watermark_us
        if watermark is not None and ts_us < watermark:
            return AddResult(late=True, watermark_us=watermark)
        self._seq += 1
        entries = self._entities.setdefault(keys, [])
        insort(entries, _Entry(ts_us, self._seq, dict(fields)), key=_order)
        self.advance(ts_us)
        self._prune_entity(keys, entries)
        if not emit:
            return AddResult(late=False, watermark_us=self.watermark_us)
        upto = bisect_left(entries, ts_us + self.spec.max_window_us, key=_ts)
        times = sorted({e.ts for e in entries[bisect_left(entries, ts_us, key=_ts) : upto]})
        rows = tuple(self._row(keys, entries, t) for t in times)
        return AddResult(late=False, rows=rows, watermark_us=self.watermark_us)

    def evaluate(self, keys: tuple[Any, ...], at_us: int) -> dict[str, Any]:
        """Every aggregation of an entity evaluated at `at_us` (over the retained events)."""
        return self._values(self._entities.get(keys, []), at_us)

    def _values(self, entries: list[_Entry], at_us: int) -> dict[str, Any]:
        return {spec.name: aggregate(spec, _window(entries, at_us, spec.window_us)) for spec in self.spec.aggregations}

    def _row(self, keys: tuple[Any, ...], entries: list[_Entry], at_us: int) -> Row:
        first = entries[bisect_left(entries, at_us, key=_ts)].seq
        revision = sum(1 for e in _window(entries, at_us, self.spec.max_window_us) if e.seq > first)
        return Row(keys=keys, ts_us=at_us, values=self._values(entries, at_us), revision=revision)

    def _horizon(self) -> int | None:
        watermark = self.watermark_us
        return None if watermark is None else watermark - self.spec.max_window_us

    def _prune_entity(self, keys: tuple[Any, ...], entries: list[_Entry]) -> int:
        horizon = self._horizon()
        if horizon is None:
            return 0
        cut = bisect_right(entries, horizon, key=_ts)
        if cut:
            del entries[:cut]
        if not entries:
            del self._entities[keys]
        return cut

    def prune(self) -> int:
        """Drop, for every entity, the events at or before `watermark - W_max`; returns how many were dropped."""
        return sum(self._prune_entity(keys, entries) for keys, entries in list(self._entities.items()))

    def entities(self) -> Iterable[tuple[Any, ...]]:
        return list(self._entities)
