"""The feature plan of one model version: built once when the version loads, used by every request.

From the signature (`inputs`: request features; `store_features`: `project:group:feature` references, stored or
on-demand) and the catalog's `Resolution` of those references, the plan fixes:

- `fields`: what a request row carries, typed: the entity join keys of every stored group read (required, not
  null), the signature's request features and the request features of on-demand transforms (required, null allowed:
  NaN for the model, None for a transform);
- `read_refs`: one multi-get: the stored features of the signature plus the stored inputs of its on-demand groups;
- `on_demand`: each on-demand group used, as the same `OnDemandTransform` training runs, its function loaded (and
  its code fingerprint checked) here, not per request;
- `input_names`: the model's input order: request features in signature order, then store features in signature
  order, each named by its reference (`project:group:feature`), which `Assembled.status` and the served vectors use.

`register(store)` gives the online store the `GroupSchema`s of the groups read (built by
`bottega.feature_store.training.schemas_from_resolution`, as training does).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bottega.core.keys import check_key_columns
from bottega.feature_store.on_demand import OnDemandTransform
from bottega.feature_store.training import schemas_from_resolution
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType
from bottega.serving.features.policy import FeaturePolicy

if TYPE_CHECKING:
    from bottega.feature_store.online.base import OnlineStore

SIGNATURE_TYPES = {
    **dict.fromkeys(("int8", "int16", "int32", "int64", "uint8"), ValueType.int),
    **dict.fromkeys(("float16", "float32", "float64"), ValueType.float),
    "bool": ValueType.bool,
}
NUMERIC = (ValueType.int, ValueType.float, ValueType.bool)
PYTHON_TYPES: dict[ValueType, type] = {
    ValueType.int: int,
    ValueType.float: float,
    ValueType.bool: bool,
    ValueType.string: str,
}


def tuple_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
    """A C-speed getter of `names` from a row, always returning a tuple (KeyError when one is absent)."""
    if not names:
        return None
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*names)
    return getter


@dataclass(frozen=True)
class Field:
    """One field of a request row."""

    name: str
    vtype: ValueType
    nullable: bool


@dataclass(frozen=True)
class StoreColumn:
    """A model input read from the store (or computed on demand): its column and what to do when it is not fresh."""

    name: str  # the reference as text: the input name
    ref: FeatureRef
    column: int
    policy: FeaturePolicy
    keys: tuple[str, ...]  # the entity keys that identify it, for error messages


@dataclass(frozen=True)
class OnDemandStep:
    transform: OnDemandTransform
    function: Callable[..., Any]
    inputs: tuple[tuple[str, FeatureRef], ...]  # alias -> stored feature
    request: tuple[str, ...]
    outputs: tuple[tuple[str, StoreColumn], ...]  # output feature -> its model input


@dataclass(frozen=True, eq=False)
class FeaturePlan:
    input_names: tuple[str, ...]
    entity_keys: tuple[str, ...]
    fields: tuple[Field, ...]
    request_columns: tuple[tuple[str, int], ...]
    read_refs: tuple[FeatureRef, ...]
    stored: tuple[StoreColumn, ...]
    on_demand: tuple[OnDemandStep, ...]
    schemas: tuple[GroupSchema, ...]
    key_renames: tuple[tuple[str, str], ...] = ()
    """(request field, join key) of the signature's `key_columns`: the decoder copies each field to its key."""

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    @cached_property
    def field_getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
        """Every field of a row at once (the decoder's fast path)."""
        return tuple_getter(tuple(f.name for f in self.fields))

    @cached_property
    def exact_types(self) -> tuple[type, ...]:
        """The Python type of each field's value when a row needs no conversion at all."""
        return tuple(PYTHON_TYPES[f.vtype] for f in self.fields)

    @cached_property
    def request_getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
        """The request features of a row, in input order (they are the first input columns)."""
        return tuple_getter(tuple(name for name, _ in self.request_columns))

    @classmethod
    def build(
        cls, signature: Mapping[str, Any], resolution: Any | None, policies: Mapping[str, FeaturePolicy]
    ) -> FeaturePlan:
        """The plan of a model version; ValueError naming the input, reference or policy that does not fit."""
        request = _request_inputs(signature)
        refs = [_parse_ref(text) for text in signature.get("store_features") or []]
        unused = sorted(set(policies) - {str(r) for r in refs})
        if unused:
            raise ValueError(f"features.{unused[0]}: a policy for a feature the model does not use")
        if refs and resolution is None:
            raise ValueError("the signature has store_features: a Resolution of them is needed")
        groups = {(g.project, g.group): g for g in resolution.groups} if resolution is not None else {}
        schemas = schemas_from_resolution(resolution) if resolution is not None else {}
        width = len(request)
        columns: list[StoreColumn] = []
        transforms: dict[tuple[str, str], list[tuple[str, StoreColumn]]] = {}
        for index, ref in enumerate(refs):
            group = groups.get(ref.group_key)
            if group is None or ref.feature not in group.features:
                raise ValueError(f"store_features: {ref} is not in the resolution")
            if ValueType(group.features[ref.feature]) not in NUMERIC:
                raise ValueError(f"store_features: {ref} is a {group.features[ref.feature]}; model inputs are numbers")
            keys = tuple(group.entity.join_keys)
            column = StoreColumn(str(ref), ref, width + index, policies.get(str(ref), FeaturePolicy()), keys)
            if group.on_demand is not None:
                transforms.setdefault(ref.group_key, []).append((ref.feature, column))
            else:
                columns.append(column)
        steps = tuple(_step(groups[key], outputs) for key, outputs in transforms.items())
        read_refs = tuple(dict.fromkeys([*(c.ref for c in columns), *(r for s in steps for _, r in s.inputs)]))
        read_schemas = tuple(dict.fromkeys(schemas[r.group_key] for r in read_refs))
        key_columns = _key_columns(signature, read_schemas)
        fields = _fields(read_schemas, request, steps, key_columns)
        return cls(
            input_names=(*request, *(str(r) for r in refs)),
            entity_keys=tuple(dict.fromkeys(k for schema in read_schemas for k in schema.key_names)),
            fields=tuple(fields.values()),
            request_columns=tuple((name, i) for i, name in enumerate(request)),
            read_refs=read_refs,
            stored=tuple(columns),
            on_demand=steps,
            schemas=read_schemas,
            key_renames=tuple((column, key) for key, column in key_columns.items() if column != key),
        )

    def register(self, store: OnlineStore) -> None:
        """Tell the online store the schemas of the groups this plan reads (a plan built from a newer resolution
        registers newer schemas)."""
        for schema in self.schemas:
            if store.schemas.get(schema.key) != schema:
                store.register(schema)


def _parse_ref(text: Any) -> FeatureRef:
    try:
        return FeatureRef.parse(str(text))
    except ValueError as exc:
        raise ValueError(f"store_features: {exc}") from None


def _request_inputs(signature: Mapping[str, Any]) -> dict[str, ValueType]:
    out: dict[str, ValueType] = {}
    for item in signature.get("inputs") or []:
        name, kind = item.get("name"), item.get("type")
        if kind not in SIGNATURE_TYPES:
            raise ValueError(f"inputs.{name}: type {kind!r} cannot be served (use int64, float64 or bool)")
        out[str(name)] = SIGNATURE_TYPES[kind]
    return out


def _step(group: Any, outputs: list[tuple[str, StoreColumn]]) -> OnDemandStep:
    transform = OnDemandTransform.from_resolved(group)
    return OnDemandStep(
        transform=transform,
        function=transform.load(),
        inputs=tuple(transform.inputs.items()),
        request=tuple(transform.request_features),
        outputs=tuple(outputs),
    )


def _add(fields: dict[str, Field], name: str, vtype: ValueType, nullable: bool, where: str) -> None:
    known = fields.get(name)
    if known is None:
        fields[name] = Field(name, vtype, nullable)
    elif known.vtype is not vtype:
        raise ValueError(f"{where}: {name!r} is {vtype.value} here but {known.vtype.value} elsewhere in the model")
    elif known.nullable and not nullable:
        fields[name] = Field(name, vtype, nullable)


def _key_columns(signature: Mapping[str, Any], schemas: tuple[GroupSchema, ...]) -> dict[str, str]:
    """The signature's `key_columns` (join key -> request field), checked against the keys the model reads."""
    mapping = {str(k): str(v) for k, v in (signature.get("key_columns") or {}).items()}
    keys = list(dict.fromkeys(k for schema in schemas for k in schema.key_names))
    try:
        check_key_columns(mapping, keys, "key_columns")
    except ValueError as exc:
        raise ValueError(f"signature {exc}") from None
    return mapping


def _fields(
    schemas: tuple[GroupSchema, ...],
    request: dict[str, ValueType],
    steps: tuple[OnDemandStep, ...],
    key_columns: Mapping[str, str],
) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for schema in schemas:
        for name, vtype in schema.entity_keys:
            where = f"entity keys of {schema.project}:{schema.name}"
            _add(fields, key_columns.get(name, name), vtype, False, where)
    for name, vtype in request.items():
        _add(fields, name, vtype, True, "inputs")
    for step in steps:
        for name, vtype in step.transform.request_features.items():
            _add(fields, name, vtype, True, f"request features of {step.transform.label}")
    return fields
