"""On-demand transforms: one pure Python function of request features and stored features, run the same way when
a training set is built (over a whole table) and when the prediction service answers (over the request's rows).

Both paths go through `OnDemandTransform.compute`, so the values agree: offline, the stored inputs come from the
point-in-time join and the request features from the label table; online, from the online store and the request.
Outputs are checked against the declared types; a function that returns something else fails with the group and
the feature named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bottega.core.functions import load_checked
from bottega.feature_store.types import FeatureRef, ValueType

Row = dict[str, Any]


class OnDemandError(ValueError):
    """An on-demand transform that cannot run, or returned values that do not match its declaration."""


@dataclass(frozen=True)
class OnDemandTransform:
    project: str
    name: str
    function: str
    outputs: tuple[tuple[str, ValueType], ...]
    inputs: Mapping[str, FeatureRef] = field(default_factory=dict)
    request_features: Mapping[str, ValueType] = field(default_factory=dict)
    mode: Literal["row", "pandas"] = "row"
    code_sha256: str | None = None

    @classmethod
    def from_resolved(cls, group: Any) -> OnDemandTransform:
        """From a `ResolvedGroup` of the API's resolution (one with `on_demand` set)."""
        spec = group.on_demand
        if spec is None:
            raise OnDemandError(f"{group.project}:{group.group} is not an on-demand group")
        return cls(
            project=group.project,
            name=group.group,
            function=spec.function,
            outputs=tuple((name, ValueType(dtype)) for name, dtype in group.features.items()),
            inputs={alias: FeatureRef.parse(ref) for alias, ref in spec.inputs.items()},
            request_features={name: ValueType(dtype) for name, dtype in spec.request_features.items()},
            mode=spec.mode,
            code_sha256=spec.code_sha256,
        )

    @property
    def label(self) -> str:
        return f"{self.project}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """The function (importable, or in the working directory), refusing code that differs from the registered
        fingerprint."""
        try:
            return load_checked(self.function, self.code_sha256, search=Path.cwd())
        except ValueError as exc:
            raise OnDemandError(f"on-demand group {self.label}: {exc}") from exc

    def compute(self, function: Callable[..., Any], rows: Sequence[Row]) -> list[Row]:
        """Outputs for each row; a row holds every input alias and request feature (missing values are None)."""
        if self.mode == "pandas":
            return self._compute_pandas(function, rows)
        out = []
        for row in rows:
            try:
                result = function(dict(row))
            except Exception as exc:
                raise OnDemandError(f"on-demand group {self.label}: {self.function} raised {exc!r}") from exc
            if not isinstance(result, Mapping):
                raise OnDemandError(
                    f"on-demand group {self.label}: {self.function} must return a dict, not {type(result).__name__}"
                )
            out.append(self._checked(result))
        return out

    def _compute_pandas(self, function: Callable[..., Any], rows: Sequence[Row]) -> list[Row]:
        import pandas as pd

        names = [*self.inputs, *self.request_features]
        frame = pd.DataFrame([{name: row.get(name) for name in names} for row in rows], columns=names)
        try:
            result = function(frame)
        except Exception as exc:
            raise OnDemandError(f"on-demand group {self.label}: {self.function} raised {exc!r}") from exc
        if not isinstance(result, pd.DataFrame) or len(result) != len(rows):
            raise OnDemandError(
                f"on-demand group {self.label}: {self.function} must return a DataFrame with one row per input row"
            )
        records = result.astype(object).where(result.notna(), None).to_dict("records")
        return [self._checked(record) for record in records]

    def _checked(self, result: Mapping[str, Any]) -> Row:
        row = {}
        for name, dtype in self.outputs:
            if name not in result:
                raise OnDemandError(f"on-demand group {self.label}: {self.function} returned no {name!r}")
            value = result[name]
            if isinstance(value, float) and value != value:  # NaN means missing
                value = None
            try:
                row[name] = dtype.coerce(_plain(value))
            except (TypeError, ValueError) as exc:
                raise OnDemandError(
                    f"on-demand group {self.label}: feature {name!r} must be {dtype.value}: {exc}"
                ) from exc
        return row

    def check_request(self, columns: Sequence[str], where: str) -> None:
        missing = [name for name in self.request_features if name not in columns]
        if missing:
            raise OnDemandError(f"on-demand group {self.label} needs request features {missing}, which {where} lacks")


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (pandas mode hands them back)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def add_on_demand_columns(
    table: Any, transforms: Sequence[tuple[OnDemandTransform, list[str]]], column_of: Callable[[FeatureRef], str]
) -> Any:
    """A training set with the requested outputs of each transform as `<group>__<feature>` columns.

    `table` holds the stored inputs (named by `column_of`) and the label table's columns (request features)."""
    import pyarrow as pa

    for transform, wanted in transforms:
        transform.check_request(table.column_names, "the label table")
        sources = {alias: column_of(ref) for alias, ref in transform.inputs.items()}
        sources.update({name: name for name in transform.request_features})
        columns = {alias: table.column(column).to_pylist() for alias, column in sources.items()}
        rows = [{alias: values[i] for alias, values in columns.items()} for i in range(table.num_rows)]
        values = transform.compute(transform.load(), rows)
        types = dict(transform.outputs)
        for name in wanted:
            arrow_type = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_()}
            array = pa.array([row[name] for row in values], type=arrow_type[types[name].value])
            table = table.append_column(f"{transform.name}__{name}", array)
    return table
