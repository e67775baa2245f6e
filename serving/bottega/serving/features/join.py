"""The online feature join: request rows -> one concurrent multi-get -> policies -> on-demand transforms -> the
model's input matrix (float64, NaN = missing) in signature order.

Per store (or on-demand) feature and row, a status flag:
- FRESH: read within its group's max age (a stored null is served as NaN, still FRESH);
- STALE: older than max age: served as null (NaN), as a training set has it (policy `on_stale: null`, the
  default), or served as stored (`on_stale: serve`), or defaulted without a default value;
- MISSING: not stored, expired, unreadable or not read in time (the store's timeout), served as NaN;
- DEFAULT: missing or stale and replaced by the policy's declared default.
A policy `reject` turns a missing (or stale) value into RequestError(422) naming the feature and the entity.

With `as_of` (a replay of history), the stored features are read from the offline store instead, point in time (the
latest value at or before `as_of`, judged against `as_of` as training and batch scoring judge it), and flagged the
same way; the online store is not read.

On-demand features run `OnDemandTransform.compute` (the code training runs) on the request features and their
stored inputs, read in the same multi-get; as in a training set, an input that is not FRESH is None to the function.
An output that is None is MISSING; one computed from an input that was not FRESH is STALE; otherwise FRESH.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bottega.feature_store.online.base import FeatureValue, ReadResult, Status, missing
from bottega.serving.features.decode import RequestError, shown
from bottega.serving.features.plan import FeaturePlan, OnDemandStep, StoreColumn

if TYPE_CHECKING:
    import numpy

    from bottega.feature_store.offline.store import OfflineStore
    from bottega.feature_store.online.base import OnlineStore

FRESH, STALE, MISSING, DEFAULT = "FRESH", "STALE", "MISSING", "DEFAULT"
NO_STORE = missing("no online store")
AS_OF = "__bottega_as_of"


@dataclass
class Assembled:
    matrix: numpy.ndarray  # float64, rows x inputs, signature order (NaN: missing)
    status: list[dict[str, str]]  # per row: store/on-demand feature -> FRESH/STALE/MISSING/DEFAULT
    store_ms: float

    @property
    def vectors(self) -> list[list[float | None]]:
        """The served vector per row, JSON-able (None for NaN)."""
        return [[None if v != v else v for v in row] for row in self.matrix.tolist()]


class FeatureJoiner:
    def __init__(self, store: OnlineStore | None, *, timeout_s: float, offline: OfflineStore | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.store = store
        self.timeout_s = timeout_s
        self.offline = offline

    async def assemble(
        self, plan: FeaturePlan, rows: list[dict[str, Any]], *, as_of: datetime | None = None
    ) -> Assembled:
        """The model inputs of decoded rows (see `decode_instances`); `as_of`: read the store features point in
        time from the offline store instead of the online store."""
        import numpy as np

        store_ms = 0.0
        read: list[dict[Any, FeatureValue]] | None = None
        if plan.read_refs:
            started = time.perf_counter()
            if as_of is None:
                read = (await self._read(plan, rows)).rows
            else:
                read = await asyncio.to_thread(self._read_as_of, plan, rows, as_of)
            store_ms = (time.perf_counter() - started) * 1000.0
        computed = _on_demand(plan, rows, read) if plan.on_demand else ()
        matrix = np.full((len(rows), plan.n_inputs), np.nan, dtype=np.float64)
        getter = plan.request_getter
        if getter is not None:  # the request features are the first columns; None becomes NaN
            matrix[:, : len(plan.request_columns)] = [getter(row) for row in rows]
        statuses: list[dict[str, str]] = []
        for index, row in enumerate(rows):
            status: dict[str, str] = {}
            if read is not None:
                values = read[index]
                for spec in plan.stored:
                    fv = values[spec.ref]
                    served = _serve(spec, fv.status, fv.value, status, index, row)
                    if served is not None:
                        matrix[index, spec.column] = served
            for step, outputs, complete in computed:
                for name, spec in step.outputs:
                    value = outputs[index][name]
                    flag = Status.MISSING if value is None else Status.FRESH if complete[index] else Status.STALE
                    if flag is Status.STALE and spec.policy.on_stale == "null":  # computed from nulls, as in training
                        status[spec.name] = STALE
                        served = _number(value)
                    else:
                        served = _serve(spec, flag, value, status, index, row)
                    if served is not None:
                        matrix[index, spec.column] = served
            statuses.append(status)
        return Assembled(matrix=matrix, status=statuses, store_ms=store_ms)

    def _read_as_of(
        self, plan: FeaturePlan, rows: list[dict[str, Any]], as_of: datetime
    ) -> list[dict[Any, FeatureValue]]:
        """The offline point-in-time join of the rows' entities at `as_of`, as online reads (value and status)."""
        import pyarrow as pa

        from bottega.feature_store.offline.pit_duckdb import column_name, point_in_time_join, status_column
        from bottega.feature_store.offline.store import ARROW_TYPES

        if self.offline is None:
            raise RequestError(422, "as_of", "as_of: this service has no offline store to replay history from")
        types = {k: ARROW_TYPES[t.value] for schema in plan.schemas for k, t in schema.entity_keys}
        labels = {key: pa.array([row.get(key) for row in rows], types[key]) for key in plan.entity_keys}
        labels[AS_OF] = pa.array([as_of] * len(rows), pa.timestamp("us", tz="UTC"))
        schemas = {schema.key: schema for schema in plan.schemas}
        joined = point_in_time_join(
            self.offline, pa.table(labels), list(plan.read_refs), schemas, timestamp_column=AS_OF, with_status=True
        )
        values = {ref: joined.column(column_name(ref)).to_pylist() for ref in plan.read_refs}
        statuses = {ref: joined.column(status_column(ref.group)).to_pylist() for ref in plan.read_refs}
        return [
            {ref: FeatureValue(values[ref][i], None, Status(statuses[ref][i])) for ref in plan.read_refs}
            for i in range(len(rows))
        ]

    async def _read(self, plan: FeaturePlan, rows: list[dict[str, Any]]) -> ReadResult:
        if self.store is None:
            return ReadResult(rows=[dict.fromkeys(plan.read_refs, NO_STORE) for _ in rows])
        return await self.store.read_async(rows, plan.read_refs, timeout=self.timeout_s)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _serve(
    spec: StoreColumn, status: Status, value: Any, flags: dict[str, str], index: int, row: dict[str, Any]
) -> float | None:
    """The served value of one feature under its policy, flagging it; RequestError when the policy rejects it."""
    policy = spec.policy
    if status is Status.FRESH:
        flags[spec.name] = FRESH
        return _number(value)
    if status is Status.STALE:
        if policy.on_stale == "null":
            flags[spec.name] = STALE
            return None
        if policy.on_stale == "serve":
            flags[spec.name] = STALE
            return _number(value)
        if policy.on_stale == "reject":
            raise _rejected(spec, "stale", index, row)
    elif policy.on_missing == "reject":
        raise _rejected(spec, "missing", index, row)
    flags[spec.name] = DEFAULT if policy.default is not None else status.value
    return policy.default


def _rejected(spec: StoreColumn, what: str, index: int, row: dict[str, Any]) -> RequestError:
    entity = ", ".join(f"{key}={shown(row.get(key))}" for key in spec.keys) or "this row"
    return RequestError(
        422, f"instances[{index}]", f"instances[{index}]: feature {spec.name} is {what} for {entity} (policy: reject)"
    )


def _on_demand(
    plan: FeaturePlan, rows: list[dict[str, Any]], read: list[dict[Any, FeatureValue]] | None
) -> list[tuple[OnDemandStep, list[dict[str, Any]], list[bool]]]:
    """Each transform's outputs for every row, and whether all of a row's stored inputs were FRESH."""
    out = []
    for step in plan.on_demand:
        arguments: list[dict[str, Any]] = []
        complete: list[bool] = []
        for index, row in enumerate(rows):
            values = read[index] if read is not None else {}
            given: dict[str, Any] = {}
            fresh_row = True
            for alias, ref in step.inputs:
                fv = values.get(ref, NO_STORE)
                fresh = fv.status is Status.FRESH
                fresh_row = fresh_row and fresh
                given[alias] = fv.value if fresh else None
            for name in step.request:
                given[name] = row.get(name)
            arguments.append(given)
            complete.append(fresh_row)
        out.append((step, step.transform.compute(step.function, arguments), complete))
    return out
