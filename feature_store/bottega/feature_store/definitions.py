"""Feature definitions: entities, batch and streaming feature groups, request features, on-demand transforms.

Definitions are pydantic models, written in Python or YAML (`load_definitions`), registered through the API and
turned into a `GroupSchema` for the stores. A feature is referenced as `project:group:feature`.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bottega.core.keys import check_key_columns
from bottega.core.names import FUNCTION_PATTERN, PROJECT_PATTERN
from bottega.feature_store.types import NAME_RE, FeatureRef, GroupSchema, ValueType

DURATION_RE = re.compile(r"^(\d+)(s|m|h|d|w)$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
NamePattern = Annotated[str, Field(pattern=NAME_RE.pattern)]


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """`90s`, `15m`, `1h`, `14d`, `2w`, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = DURATION_RE.match(value.strip())
    if not match:
        raise ValueError(f"duration {value!r} must look like 90s, 15m, 1h, 14d or 2w")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class _Definition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entity(_Definition):
    """What features describe (a restaurant, a user), identified by one or more typed join keys."""

    name: NamePattern
    join_keys: dict[NamePattern, ValueType] = Field(min_length=1)
    description: str = ""


class Feature(_Definition):
    name: NamePattern
    dtype: ValueType
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class _Group(_Definition):
    name: NamePattern
    entity: NamePattern
    features: list[Feature] = Field(min_length=1)
    max_age: timedelta
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    key_columns: dict[str, str] = Field(
        default_factory=dict,
        description="join key -> the column (batch: of the transform's result; stream: of the event) holding it, "
        "when your data names it otherwise (see bottega.core.keys)",
        exclude_if=lambda value: not value,
    )

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _unique_features(self) -> _Group:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature group {self.name!r} lists a feature twice")
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        return self

    def schema_for(self, project: str, entity: Entity) -> GroupSchema:
        if entity.name != self.entity:
            raise ValueError(f"feature group {self.name!r} is about {self.entity!r}, not {entity.name!r}")
        return GroupSchema(
            project=project,
            name=self.name,
            entity_keys=tuple(entity.join_keys.items()),
            features=tuple((f.name, f.dtype) for f in self.features),
            max_age=self.max_age,
        )


class Source(_Definition):
    """A table to compute from: Parquet or CSV files (a path or glob, any fsspec URL for Spark)."""

    path: str
    format: Literal["parquet", "csv"] = "parquet"
    timestamp_column: str = "event_time"


class BatchFeatureGroup(_Group):
    """Computed from a source table by a transform, on a schedule. Exactly one of:

    - `transform_sql`: a query over the table named `source`, run in the engine's SQL dialect (DuckDB or Spark SQL;
      the common subset, e.g. `date_trunc`, `INTERVAL 1 DAY`, `GROUP BY ALL`, runs on both);
    - `transform`: a Python function `package.module:function` called with the whole source as the engine's
      DataFrame (a pandas DataFrame on DuckDB, a PySpark DataFrame on Spark) that returns a DataFrame of the same
      kind (a pyarrow Table is accepted on DuckDB too); see `bottega.feature_store.batch`.

    The transform must return the entity's join keys (under the names `key_columns` gives, if any), `event_time`
    (timezone-aware) and every declared feature.
    """

    kind: Literal["batch"] = "batch"
    source: Source
    transform_sql: str | None = Field(default=None, min_length=1, exclude_if=lambda value: value is None)
    transform: str | None = Field(
        default=None,
        description="a Python transform `package.module:function` (instead of transform_sql)",
        exclude_if=lambda value: value is None,
    )
    schedule: str | None = Field(default=None, description="cron for the platform scheduler")

    @field_validator("transform")
    @classmethod
    def _function_reference(cls, value: str | None) -> str | None:
        from bottega.core.functions import FUNCTION_RE

        if value is not None and not FUNCTION_RE.match(value):
            raise ValueError(f"transform {value!r} must look like package.module:function")
        return value

    @model_validator(mode="after")
    def _one_transform(self) -> BatchFeatureGroup:
        if (self.transform_sql is None) == (self.transform is None):
            raise ValueError(f"batch group {self.name!r} needs exactly one of transform_sql and transform")
        return self

    def transform_function(self) -> Any:
        """The Python transform, imported (raises `bottega.core.functions.FunctionError` when it cannot be)."""
        from bottega.core.functions import load_function

        if self.transform is None:
            raise ValueError(f"batch group {self.name!r} has a SQL transform, not a Python one")
        return load_function(self.transform, search=Path.cwd())


class Aggregation(_Definition):
    """An aggregate of one event field over a sliding window, e.g. sum of `amount` over 1h."""

    function: Literal["count", "sum", "mean", "min", "max", "last"]
    field: str | None = None
    window: timedelta
    name: NamePattern

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _needs_field(self) -> Aggregation:
        if self.function != "count" and not self.field:
            raise ValueError(f"aggregation {self.name!r}: {self.function} needs a field")
        return self


class StreamingFeatureGroup(_Group):
    """Maintained from a Kafka topic by windowed aggregations; written online and offline."""

    kind: Literal["stream"] = "stream"
    topic: str = Field(min_length=1)
    event_schema: dict[str, ValueType]
    timestamp_field: str = "event_time"
    aggregations: list[Aggregation] = Field(min_length=1)
    allowed_lateness: timedelta = timedelta(minutes=5)

    @field_validator("allowed_lateness", mode="before")
    @classmethod
    def _lateness(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @model_validator(mode="after")
    def _aggregations_match_features(self) -> StreamingFeatureGroup:
        declared = {f.name for f in self.features}
        produced = {a.name for a in self.aggregations}
        if declared != produced:
            raise ValueError(f"features {sorted(declared)} must be exactly the aggregations {sorted(produced)}")
        for agg in self.aggregations:
            if agg.field and agg.field not in self.event_schema:
                raise ValueError(f"aggregation {agg.name!r} reads {agg.field!r}, which the event schema lacks")
        return self


class RequestFeature(_Definition):
    """A value the caller supplies at prediction time (and the label table supplies in training)."""

    name: NamePattern
    dtype: ValueType


class OnDemandFeatureGroup(_Definition):
    """Features computed when read, by one pure Python function of request features and stored features.

    The same function runs offline (training sets) and online (the prediction service). `function` is
    `package.module:function`; `inputs` maps the names the function sees to stored features
    (`project:group:feature` of batch or stream groups); `request_features` come from the caller (the label table in
    training). Mode `row`: `f(dict) -> dict` of every declared feature; mode `pandas`: `f(DataFrame) -> DataFrame`
    with those columns. Missing stored values arrive as None (NaN in pandas mode).
    """

    kind: Literal["on_demand"] = "on_demand"
    name: NamePattern
    entity: NamePattern
    features: list[Feature] = Field(min_length=1)
    function: str = Field(pattern=FUNCTION_PATTERN)
    mode: Literal["row", "pandas"] = "row"
    inputs: dict[NamePattern, str] = Field(default_factory=dict)
    request_features: list[RequestFeature] = Field(default_factory=list)
    code_sha256: str | None = None
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> OnDemandFeatureGroup:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"on-demand group {self.name!r} lists a feature twice")
        for alias, ref in self.inputs.items():
            FeatureRef.parse(ref)
            if alias in {r.name for r in self.request_features}:
                raise ValueError(f"on-demand group {self.name!r}: {alias!r} is both an input and a request feature")
        if not self.inputs and not self.request_features:
            raise ValueError(f"on-demand group {self.name!r} needs inputs or request_features (or both)")
        return self


class Definitions(_Definition):
    """A project's feature definitions, as written in a YAML file."""

    project: str = Field(pattern=PROJECT_PATTERN)
    entities: list[Entity] = Field(default_factory=list)
    batch_groups: list[BatchFeatureGroup] = Field(default_factory=list)
    stream_groups: list[StreamingFeatureGroup] = Field(default_factory=list)
    on_demand_groups: list[OnDemandFeatureGroup] = Field(default_factory=list)
    request_features: list[RequestFeature] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Definitions:
        entities = {e.name for e in self.entities}
        groups: list[_Group | OnDemandFeatureGroup] = [*self.batch_groups, *self.stream_groups, *self.on_demand_groups]
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ValueError("two feature groups share a name")
        for group in groups:
            if group.entity not in entities:
                raise ValueError(f"feature group {group.name!r} uses unknown entity {group.entity!r}")
            if isinstance(group, _Group) and group.key_columns:
                where = f"feature group {group.name!r}: key_columns"
                check_key_columns(group.key_columns, self.entity(group.entity).join_keys, where)
        return self

    def entity(self, name: str) -> Entity:
        return next(e for e in self.entities if e.name == name)

    def schemas(self) -> dict[tuple[str, str], GroupSchema]:
        out = {}
        for group in [*self.batch_groups, *self.stream_groups]:
            schema = group.schema_for(self.project, self.entity(group.entity))
            out[schema.key] = schema
        return out


URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def resolve_path(path: str, base: Path) -> str:
    """A source path made absolute: relative paths are read from `base` (the definitions file's folder), `~` is
    expanded, URLs (`s3://`, `https://`, `file://`, ...) and absolute paths are kept as written."""
    if URL_RE.match(path):
        return path
    expanded = Path(path).expanduser()
    if expanded.is_absolute():
        return str(expanded)
    return os.path.normpath(base.expanduser().resolve() / expanded)


def resolve_source_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A definitions mapping (as read from YAML/JSON) with every batch group's `source.path` resolved against
    `base` (see `resolve_path`); the catalog stores the resolved, absolute path."""
    groups = data.get("batch_groups")
    if not isinstance(groups, list):
        return data
    resolved = []
    for group in groups:
        source = group.get("source") if isinstance(group, dict) else None
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            group = {**group, "source": {**source, "path": resolve_path(source["path"], base)}}
        resolved.append(group)
    return {**data, "batch_groups": resolved}


def load_definitions(path: str | Path) -> Definitions:
    """Read a YAML definitions file (needs PyYAML); relative source paths are resolved against its folder."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError('reading YAML definitions needs PyYAML: pip install "bottega[store]"') from exc
    data = yaml.safe_load(Path(path).read_text())
    if isinstance(data, dict):
        data = resolve_source_paths(data, Path(path).parent)
    return Definitions.model_validate(data)
