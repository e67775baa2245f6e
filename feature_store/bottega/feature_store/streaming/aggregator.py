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
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from heapq import heappop, heappush
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


def _cast(dtype: ValueType, value: Any) -> Any:
    if value is None:
        return None
    if dtype is ValueType.float:
        return float(value)
    if dtype is ValueType.int:
        return int(value)
    return value


def evaluator(spec: AggSpec) -> Callable[[list[Mapping[str, Any]]], Any]:
    """A function of a window's event fields (sorted by event time, then arrival) computing one aggregation."""
    function, name, dtype = spec.function, spec.field, spec.dtype
    if function == "count" and name is None:
        return lambda window: _cast(dtype, len(window))
    assert name is not None
    field = name
    if function == "last":
        return lambda window: _cast(dtype, window[-1].get(field)) if window else None

    def evaluate(window: list[Mapping[str, Any]]) -> Any:
        values = [v for f in window if (v := f.get(field)) is not None]
        if function == "count":
            return _cast(dtype, len(values))
        if not values:
            return None
        if function == "sum":
            total = sum(values) if all(isinstance(v, int) for v in values) else math.fsum(values)
            return _cast(dtype, total)
        if function == "mean":
            return math.fsum(values) / len(values)
        return _cast(dtype, min(values) if function == "min" else max(values))

    return evaluate


class _Events:
    """One entity's retained events as parallel lists sorted by (event time, arrival): times, arrival numbers,
    fields (parallel lists bisect on plain ints, with no key function)."""

    __slots__ = ("fields", "seqs", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.seqs: list[int] = []
        self.fields: list[Mapping[str, Any]] = []

    def __getstate__(self) -> tuple[list[int], list[int], list[Mapping[str, Any]]]:
        return self.times, self.seqs, self.fields

    def __setstate__(self, state: tuple[list[int], list[int], list[Mapping[str, Any]]]) -> None:
        self.times, self.seqs, self.fields = state

    def insert(self, ts_us: int, seq: int, fields: Mapping[str, Any]) -> None:
        if not self.times or ts_us >= self.times[-1]:  # in order (the usual case): append
            self.times.append(ts_us)
            self.seqs.append(seq)
            self.fields.append(fields)
            return
        at = bisect_right(self.times, ts_us)  # after the events at the same time: they arrived earlier
        self.times.insert(at, ts_us)
        self.seqs.insert(at, seq)
        self.fields.insert(at, fields)

    def drop_until(self, horizon_us: int) -> int:
        """Drop the events at or before `horizon_us`; returns how many."""
        cut = bisect_right(self.times, horizon_us)
        if cut:
            del self.times[:cut], self.seqs[:cut], self.fields[:cut]
        return cut


class WindowAggregator:
    """Sliding-window state for the entities of one ordered stream (a Kafka partition).

    Cost per accepted in-order event: an append and one evaluation of the aggregations over its windows; state is
    pruned through a heap of (event time, arrival, entity), so `prune` touches only entities that have something to
    drop instead of walking every entity."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.max_ts_us: int | None = None
        self._entities: dict[tuple[Any, ...], _Events] = {}
        self._seq = 0  # arrival order: breaks event-time ties and counts revisions
        self._expiry: list[tuple[int, int, tuple[Any, ...]]] = []  # heap: (event time, arrival, entity) per event
        self._max_window_us = spec.max_window_us
        self._windows = sorted({a.window_us for a in spec.aggregations})
        self._plan = [(a.name, self._windows.index(a.window_us), evaluator(a)) for a in spec.aggregations]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_plan"]  # closures: rebuilt from the spec
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._plan = [(a.name, self._windows.index(a.window_us), evaluator(a)) for a in self.spec.aggregations]

    @property
    def watermark_us(self) -> int | None:
        """Max accepted event time - allowed lateness; events before it are late (None before any event)."""
        return None if self.max_ts_us is None else self.max_ts_us - self.spec.lateness_us

    @property
    def entity_count(self) -> int:
        return len(self._entities)

    @property
    def event_count(self) -> int:
        return sum(len(events.times) for events in self._entities.values())

    def advance(self, max_ts_us: int | None) -> None:
        """Raise the max event time seen (never lowers it), e.g. to the committed one after a replay."""
        if max_ts_us is not None and (self.max_ts_us is None or max_ts_us > self.max_ts_us):
            self.max_ts_us = max_ts_us

    def add(self, keys: tuple[Any, ...], ts_us: int, fields: Mapping[str, Any], *, emit: bool = True) -> AddResult:
        """Add one event; returns whether it was late and, when `emit`, the rows to write (in event-time order)."""
        max_ts = self.max_ts_us
        if max_ts is not None and ts_us < max_ts - self.spec.lateness_us:
            return AddResult(late=True, watermark_us=max_ts - self.spec.lateness_us)
        self._seq += 1
        events = self._entities.get(keys)
        if events is None:
            events = self._entities[keys] = _Events()
        in_order = not events.times or ts_us >= events.times[-1]
        events.insert(ts_us, self._seq, dict(fields))
        heappush(self._expiry, (ts_us, self._seq, keys))
        if max_ts is None or ts_us > max_ts:
            self.max_ts_us = max_ts = ts_us
        watermark = max_ts - self.spec.lateness_us
        if events.times[0] <= watermark - self._max_window_us:
            events.drop_until(watermark - self._max_window_us)
        if not emit:
            return AddResult(late=False, watermark_us=watermark)
        if in_order:  # nothing after it: only its own row
            return AddResult(late=False, rows=(self._row(keys, events, ts_us),), watermark_us=watermark)
        times = events.times
        upto = bisect_left(times, ts_us + self._max_window_us)
        later = sorted(set(times[bisect_left(times, ts_us) : upto]))
        rows = tuple(self._row(keys, events, t) for t in later)
        return AddResult(late=False, rows=rows, watermark_us=watermark)

    def evaluate(self, keys: tuple[Any, ...], at_us: int) -> dict[str, Any]:
        """Every aggregation of an entity evaluated at `at_us` (over the retained events)."""
        events = self._entities.get(keys) or _Events()
        return self._values(events, at_us, bisect_right(events.times, at_us))

    def _values(self, events: _Events, at_us: int, hi: int) -> dict[str, Any]:
        times, fields = events.times, events.fields
        windows = [fields[bisect_right(times, at_us - w, 0, hi) : hi] for w in self._windows]
        return {name: evaluate(windows[index]) for name, index, evaluate in self._plan}

    def _row(self, keys: tuple[Any, ...], events: _Events, at_us: int) -> Row:
        times, seqs = events.times, events.seqs
        hi = bisect_right(times, at_us)
        first = seqs[bisect_left(times, at_us)]
        lo = bisect_right(times, at_us - self._max_window_us, 0, hi)
        revision = 0 if hi - lo == 1 else sum(1 for s in seqs[lo:hi] if s > first)
        return Row(keys=keys, ts_us=at_us, values=self._values(events, at_us, hi), revision=revision)

    def prune(self) -> int:
        """Drop, for every entity, the events at or before `watermark - W_max`; returns how many were dropped."""
        watermark = self.watermark_us
        if watermark is None:
            return 0
        horizon = watermark - self._max_window_us
        expiry, dropped = self._expiry, 0
        while expiry and expiry[0][0] <= horizon:
            keys = heappop(expiry)[2]
            events = self._entities.get(keys)
            if events is None:
                continue
            dropped += events.drop_until(horizon)
            if not events.times:
                del self._entities[keys]
        return dropped

    def entities(self) -> Iterable[tuple[Any, ...]]:
        return list(self._entities)
