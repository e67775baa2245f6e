"""What a batch scoring run knows before it reads a row, shared by the local and the Spark engines.

A `ScoreRequest` says what to score (a model version, an input, an output); `build_plan` checks the input's columns
against the version's signature and returns a `Plan`: the model's inputs in signature order (request features, then
store features as `<group>__<feature>` columns), the entity keys and timestamp column the point-in-time join needs,
the input columns copied to the output, and the prediction column. Every problem with the input is found here,
before anything is written, and named (`BatchInputError`).

Output rows: the kept input columns, the prediction column, then `model`, `version` and `scored_at`. The prediction
column is named after the signature's single output (`probability`, `probabilities`, `prediction`), else
`prediction`; a multiclass model writes a list of class probabilities, a custom Python model the JSON text of each
value. A multiclass model whose signature names its classes also writes `predicted_class` (the most probable class,
as a label value of the label's own type) and one `probability_<class>` column per class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ColumnKind = Literal["number", "bool", "timestamp", "string", "other"]
PredictionKind = Literal["scalar", "vector", "json"]
COUNTS = ("features_fresh", "features_stale", "features_missing")  # per row, over the model's store features
PREDICTED_CLASS = "predicted_class"
RESERVED = ("model", "version", "scored_at", PREDICTED_CLASS, *COUNTS)
DEFAULT_CHUNK_SIZE = 50_000


class BatchInputError(ValueError):
    """The input (or the request) cannot be scored as given; the message names what to fix."""


@dataclass(frozen=True)
class ScoreRequest:
    """One batch scoring run: `version` is a number (aliases are resolved before a run starts)."""

    project: str
    model: str
    version: int
    input: str
    output: str
    timestamp_column: str = "timestamp"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    keep: tuple[str, ...] | None = None
    offline_root: str | None = None
    key_columns: Mapping[str, str] | None = None
    """join key -> the input column holding it; None: the signature's `key_columns`"""


@dataclass(frozen=True)
class ScoreResult:
    rows: int
    output: str
    model: str
    version: int
    seconds: float
    engine: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "output": self.output,
            "model": self.model,
            "version": self.version,
            "seconds": round(self.seconds, 3),
            "engine": self.engine,
            **self.extra,
        }


@dataclass(frozen=True)
class Plan:
    model: str
    version: int
    request_features: tuple[str, ...]
    store_refs: tuple[str, ...]
    store_columns: tuple[str, ...]
    entity_keys: tuple[str, ...]
    on_demand_request: tuple[str, ...]
    timestamp_column: str | None
    keep: tuple[str, ...]
    prediction: PredictionKind
    prediction_column: str
    # per store feature: (computed on demand?, the status columns of the groups it is read from / computed from)
    status_sources: tuple[tuple[bool, tuple[str, ...]], ...] = ()
    classes: tuple[Any, ...] = ()
    """a multiclass model's class labels (from its signature), in the order of its probabilities"""
    key_columns: Mapping[str, str] = field(default_factory=dict)
    """join key -> input column, for the keys the input names otherwise (`entity_keys` are the input's names)"""

    @property
    def class_columns(self) -> tuple[str, ...]:
        """`predicted_class` and one `probability_<class>` per class (multiclass models that name their classes)."""
        if not self.classes:
            return ()
        return (PREDICTED_CLASS, *(f"probability_{c}" for c in self.classes))

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's inputs in signature order (the columns of the matrix)."""
        return (*self.request_features, *self.store_columns)

    @property
    def join_columns(self) -> tuple[str, ...]:
        """The input columns the point-in-time join reads."""
        if not self.store_refs:
            return ()
        ts = (self.timestamp_column,) if self.timestamp_column else ()
        return tuple(dict.fromkeys((*self.entity_keys, *ts, *self.on_demand_request)))

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every input column a run reads."""
        return tuple(dict.fromkeys((*self.keep, *self.request_features, *self.join_columns)))

    @property
    def output_columns(self) -> tuple[str, ...]:
        counts = COUNTS if self.store_refs else ()
        return (*self.keep, self.prediction_column, *self.class_columns, *counts, "model", "version", "scored_at")


def arrow_kind(dtype: pa.DataType) -> ColumnKind:
    import pyarrow as pa

    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_null(dtype):
        return "number"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "timestamp"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return "other"


def prediction_kind(flavor: str, task: str | None) -> PredictionKind:
    """How predictions are written: JSON text for custom Python models, a list for multiclass, else a number."""
    if flavor == "python":
        return "json"
    return "vector" if task == "multiclass" else "scalar"


def class_type(classes: Sequence[Any]) -> pa.DataType:
    """The Arrow type of class labels: bool, int64, float64 or string, as the labels are."""
    import pyarrow as pa

    return pa.array(list(classes)).type


def class_arrays(probabilities: Any, classes: Sequence[Any]) -> list[pa.Array]:
    """`predicted_class` (the label of the most probable class; ties take the first) and the probability of
    each class, from rows x classes probabilities."""
    import numpy as np
    import pyarrow as pa

    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(classes):
        raise ValueError(f"the model returned shape {array.shape} for {len(classes)} classes")
    labels = pa.array(list(classes), type=class_type(classes))
    predicted = labels.take(pa.array(np.argmax(array, axis=1))) if len(array) else labels.slice(0, 0)
    return [predicted, *(pa.array(array[:, j]) for j in range(len(classes)))]


def _prediction_column(signature: Mapping[str, Any], kind: PredictionKind) -> str:
    outputs = [o for o in signature.get("outputs") or [] if isinstance(o, Mapping)]
    if len(outputs) == 1 and outputs[0].get("name"):
        return str(outputs[0]["name"])
    return "probabilities" if kind == "vector" else "prediction"


def _groups(resolution: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(entity join keys of the stored groups, request features of the on-demand groups) of a Resolution."""
    keys: list[str] = []
    request: list[str] = []
    for group in resolution.groups if resolution is not None else ():
        if group.on_demand is not None:
            request.extend(group.on_demand.request_features)
        else:
            keys.extend(group.entity.join_keys)
    return tuple(dict.fromkeys(keys)), tuple(dict.fromkeys(request))


def _status_sources(refs: Sequence[str], resolution: Any) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """Where each store feature's FRESH / STALE / MISSING comes from: its group's status column of the join, or for
    an on-demand output the status columns of the groups its inputs read (`<group>___status`)."""
    from bottega.feature_store.offline.pit_duckdb import status_column
    from bottega.feature_store.types import FeatureRef

    on_demand = {(g.project, g.group): g.on_demand for g in resolution.groups if g.on_demand is not None}
    sources: list[tuple[bool, tuple[str, ...]]] = []
    for text in refs:
        ref = FeatureRef.parse(text)
        spec = on_demand.get(ref.group_key)
        if spec is None:
            sources.append((False, (status_column(ref.group),)))
            continue
        groups = dict.fromkeys(status_column(FeatureRef.parse(str(r)).group) for r in spec.inputs.values())
        sources.append((True, tuple(groups)))
    return tuple(sources)


def _key_columns(request: ScoreRequest, signature: Mapping[str, Any], join_keys: Sequence[str]) -> dict[str, str]:
    """The request's `key_columns`, else the signature's, checked against the model's join keys."""
    from bottega.core.keys import check_key_columns

    given = request.key_columns if request.key_columns is not None else signature.get("key_columns") or {}
    mapping = {str(k): str(v) for k, v in given.items() if k in join_keys or request.key_columns is not None}
    try:
        check_key_columns(mapping, join_keys, "key_columns")
    except ValueError as exc:
        raise BatchInputError(str(exc)) from None
    return {k: v for k, v in mapping.items() if k != v}


def _check_present(columns: Mapping[str, ColumnKind], needs: Sequence[tuple[str, str]], where: str) -> None:
    missing = [(name, why) for name, why in needs if name not in columns]
    if not missing:
        return
    listed = "; ".join(f"{name!r} ({why})" for name, why in missing)
    have = ", ".join(columns) or "none"
    raise BatchInputError(f"the input {where} lacks column(s) {listed}; its columns: {have}")


def _check_types(plan: Plan, columns: Mapping[str, ColumnKind], where: str) -> None:
    for name in plan.request_features:
        if columns[name] not in ("number", "bool"):
            raise BatchInputError(
                f"input column {name!r} of {where} is {columns[name]}, but request feature {name!r} of "
                f"{plan.model}:{plan.version} must be a number or a boolean"
            )
    ts = plan.timestamp_column
    if plan.store_refs and ts is not None and columns[ts] not in ("timestamp", "string"):
        raise BatchInputError(
            f"input column {ts!r} of {where} is {columns[ts]}: the timestamp column of the point-in-time join must "
            "be a timestamp (or ISO-8601 text); name another one with the `timestamp_column` param"
        )


def _keep(
    request: ScoreRequest, columns: Mapping[str, ColumnKind], required: Sequence[str], keys: Sequence[str]
) -> tuple[str, ...]:
    if request.keep is not None:
        clash = [c for c in request.keep if c in RESERVED]
        if clash:
            raise BatchInputError(f"keep: {clash[0]!r} is an output column of its own; leave it out of `keep`")
        return tuple(dict.fromkeys(request.keep))
    if keys:
        return tuple(c for c in (*keys, request.timestamp_column) if c in columns and c not in RESERVED)
    return tuple(c for c in columns if c not in required and c not in RESERVED)


def build_plan(
    request: ScoreRequest,
    signature: Mapping[str, Any],
    resolution: Any,
    columns: Mapping[str, ColumnKind],
    *,
    prediction: PredictionKind,
    where: str = "",
) -> Plan:
    """Check the input's columns (name -> kind) against the signature; BatchInputError naming what is wrong."""
    from bottega.feature_store.offline.pit_duckdb import column_name
    from bottega.feature_store.types import FeatureRef

    where = where or repr(request.input)
    request_features = tuple(str(f["name"]) for f in signature.get("inputs") or [])
    refs = tuple(str(r) for r in signature.get("store_features") or [])
    join_keys, on_demand = _groups(resolution) if refs else ((), ())
    key_columns = _key_columns(request, signature, join_keys)
    keys = tuple(key_columns.get(k, k) for k in join_keys)
    needs = [(n, "a request feature of the model") for n in request_features]
    if refs:
        needs += [(k, "an entity key of the model's store features") for k in keys]
        needs += [(request.timestamp_column, "the timestamp of the point-in-time join; see `timestamp_column`")]
        needs += [(n, "a request feature of an on-demand feature") for n in on_demand]
    keep = _keep(request, columns, request_features, keys)
    needs += [(k, "asked for in `keep`") for k in keep]
    _check_present(columns, list(dict.fromkeys(needs)), where)
    column = _prediction_column(signature, prediction)
    from bottega.serving.runtimes.base import signature_classes

    classes = signature_classes(signature) if prediction == "vector" else ()
    for name in (column, *(f"probability_{c}" for c in classes)):
        if name in keep:
            raise BatchInputError(
                f"input column {name!r} would be overwritten by a prediction column; leave it out of `keep`"
            )
    plan = Plan(
        model=request.model,
        version=request.version,
        request_features=request_features,
        store_refs=refs,
        store_columns=tuple(column_name(FeatureRef.parse(r)) for r in refs),
        entity_keys=keys,
        on_demand_request=on_demand,
        timestamp_column=request.timestamp_column if refs else None,
        keep=keep,
        prediction=prediction,
        prediction_column=column,
        status_sources=_status_sources(refs, resolution) if refs else (),
        classes=classes,
        key_columns=key_columns,
    )
    _check_types(plan, columns, where)
    return plan


def matrix(columns: Sequence[Any]) -> np.ndarray:
    """A float64 matrix (rows x len(columns)) from pyarrow columns of numbers or booleans; nulls become NaN."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(columns[0]) if columns else 0
    out = np.empty((rows, len(columns)), dtype=np.float64)
    for j, values in enumerate(columns):
        out[:, j] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    return out


def prediction_array(values: Any, kind: PredictionKind, rows: int) -> pa.Array:
    """Predictions of a runtime as one pyarrow column: float64, list<float64> or JSON text."""
    import numpy as np
    import pyarrow as pa

    array = np.asarray(values)
    if array.shape[:1] != (rows,):
        raise ValueError(f"the model returned {array.shape[:1]} predictions for {rows} rows")
    if kind == "json":
        return pa.array([json.dumps(_plain(v)) for v in array], type=pa.string())
    if kind == "vector":
        if array.ndim != 2:
            raise ValueError(f"a multiclass model must return rows x classes probabilities, not shape {array.shape}")
        flat = pa.array(np.ascontiguousarray(array, dtype=np.float64).reshape(-1))
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(array.shape[1]))
        return pa.ListArray.from_arrays(offsets, flat)
    if array.ndim != 1:
        raise ValueError(f"the model returned shape {array.shape}; expected one value per row")
    return pa.array(array.astype(np.float64))


def prediction_type(kind: PredictionKind) -> pa.DataType:
    import pyarrow as pa

    return {"scalar": pa.float64(), "vector": pa.list_(pa.float64()), "json": pa.string()}[kind]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", 1) == 0 else value


def status_counts(joined: pa.Table, plan: Plan) -> list[pa.Array]:
    """Per row, how many of the model's store features were FRESH, STALE and MISSING, judged as online: a stored
    feature has its group's status; an on-demand output is MISSING when None, STALE when any of its inputs was not
    FRESH, FRESH otherwise (`joined` holds the join's `<group>___status` columns and the feature columns)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    zero = pa.array([0] * joined.num_rows, type=pa.int32())
    counts = dict.fromkeys(("FRESH", "STALE", "MISSING"), zero)
    for column, (computed, groups) in zip(plan.store_columns, plan.status_sources, strict=True):
        if computed:
            inputs_fresh = pa.array([True] * joined.num_rows)
            for group in groups:
                inputs_fresh = pc.and_(inputs_fresh, pc.equal(joined.column(group), "FRESH"))
            absent = pc.is_null(joined.column(column))
            status = pc.if_else(absent, "MISSING", pc.if_else(inputs_fresh, "FRESH", "STALE"))
        else:
            status = joined.column(groups[0])
        for name in counts:
            hit = pc.cast(pc.fill_null(pc.equal(status, name), False), pa.int32())
            counts[name] = pc.add(counts[name], hit)
    return [pa.array(counts[name], type=pa.int32()) for name in ("FRESH", "STALE", "MISSING")]


def output_table(
    source: pa.Table, predictions: Any, plan: Plan, scored_at: datetime, counts: list[Any] | None = None
) -> pa.Table:
    """The output rows of one chunk: kept columns, the prediction, the feature status counts (models with store
    features), model, version and scored_at."""
    import pyarrow as pa

    rows = source.num_rows
    columns = [source.column(name) for name in plan.keep]
    columns.append(prediction_array(predictions, plan.prediction, rows))
    if plan.classes:
        columns.extend(class_arrays(predictions, plan.classes))
    if plan.store_refs:
        assert counts is not None, "a model with store features needs its status counts"
        columns.extend(counts)
    columns.append(pa.array([plan.model] * rows, type=pa.string()))
    columns.append(pa.array([plan.version] * rows, type=pa.int64()))
    columns.append(pa.array([scored_at] * rows, type=pa.timestamp("us", tz="UTC")))
    return pa.table(columns, names=list(plan.output_columns))


def resolve(client: Any, signature: Mapping[str, Any]) -> Any:
    """The API's Resolution of the signature's store features, or None when it has none."""
    refs = [str(r) for r in signature.get("store_features") or []]
    return client.features.resolve(refs) if refs else None
