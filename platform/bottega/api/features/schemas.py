"""Wire schemas of the feature catalog (pydantic and the standard library only: the SDK imports this module).

The definition models mirror `bottega.feature_store.definitions` field for field (same names, same YAML shape), so
`Definitions.model_dump(mode="json")` of a group, or a YAML definitions file, can be posted as it is. Durations are
accepted as `90s`, `15m`, `1h`, `14d`, `2w`, a number of seconds or an ISO 8601 duration (`P2D`, pydantic's JSON
form of a timedelta); they must be whole seconds and are written back in the short form (`2d`, `2w`, `90s`).

Rules the schemas enforce (each failure is a 422 naming the field): names of entities, join keys, groups,
features and aggregations match `NAME_PATTERN`; a group lists each feature once; a stream group's features are
exactly its aggregations, and every aggregated field is in its event schema; tag keys match `TAG_KEY_PATTERN`.
The server checks what needs the database: the entity exists, no feature is named like a join key or
`event_time`, and the batch schedule is a valid cron expression.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from bottega.api.features.durations import Duration, PositiveDuration
from bottega.core.keys import COLUMN_MAX, check_key_columns
from bottega.core.names import (
    CATALOG_NAME_PATTERN,
    CATALOG_REF_PATTERN,
    FUNCTION_PATTERN,
    PROJECT_PATTERN,
    SHA256_PATTERN,
    TAG_KEY_PATTERN,
)

NAME_PATTERN = CATALOG_NAME_PATTERN
REF_PATTERN = CATALOG_REF_PATTERN
RESERVED_COLUMNS = frozenset({"event_time"})
DESCRIPTION_MAX = 10_000
MAX_TAGS = 100
MAX_FEATURES = 1_000
MAX_JOIN_KEYS = 16
MAX_RESOLVE = 1_000
STATS_FIELDS = ("rows_offline", "rows_online", "last_event_time", "last_run_at", "freshness_seconds")


class ValueType(StrEnum):
    """The value types a feature or an entity key can have (as in `bottega.feature_store.types`)."""

    int = "int"
    float = "float"
    string = "string"
    bool = "bool"


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
TagKey = Annotated[str, Field(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=1024)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)]
KeyColumn = Annotated[str, Field(min_length=1, max_length=COLUMN_MAX)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
Outcome = Literal["created", "updated", "unchanged"]
GroupKind = Literal["batch", "stream", "on_demand"]


class _Definition(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- entities ------------------------------------------------------------------------------------------------------


class EntityPut(_Definition):
    """Create or update an entity. Its join keys (ordered) cannot change while a feature group uses it."""

    join_keys: dict[Name, ValueType] = Field(min_length=1, max_length=MAX_JOIN_KEYS)
    description: Description = ""


class EntityDef(EntityPut):
    """An entity as written in a definitions file."""

    name: Name


class EntityRead(BaseModel):
    name: str
    join_keys: dict[str, ValueType]
    description: str
    groups: list[str] = Field(description="the feature groups of the project about this entity")
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class EntityWritten(EntityRead):
    outcome: Outcome


class EntityKeys(BaseModel):
    name: str
    join_keys: dict[str, ValueType]


# -- feature groups ------------------------------------------------------------------------------------------------


class FeatureDef(_Definition):
    name: Name
    dtype: ValueType
    description: Description = ""
    tags: Tags = Field(default_factory=dict)


class SourceDef(_Definition):
    """A table to compute from: Parquet or CSV files (a path or glob, any fsspec URL for Spark)."""

    path: str = Field(min_length=1, max_length=4096)
    format: Literal["parquet", "csv"] = "parquet"
    timestamp_column: str = Field(default="event_time", min_length=1, max_length=255)


class _GroupBase(_Definition):
    name: Name
    entity: Name
    features: list[FeatureDef] = Field(min_length=1, max_length=MAX_FEATURES)
    description: Description = ""
    owner: str = Field(default="", max_length=255)
    tags: Tags = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _unique_features(cls, value: list[FeatureDef]) -> list[FeatureDef]:
        names = [f.name for f in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"the group lists feature {twice[0]!r} twice")
        return value


class _GroupDef(_GroupBase):
    """A group whose values are stored (offline, and online unless `online` is false)."""

    max_age: PositiveDuration
    online: bool = True
    key_columns: dict[Name, KeyColumn] = Field(
        default_factory=dict,
        max_length=MAX_JOIN_KEYS,
        description="join key -> the column holding it in your data (a batch transform's result, a stream's events) "
        "when it is named otherwise, e.g. {user_id: userId}",
        exclude_if=lambda value: not value,  # absent rather than {}: definitions stored before it stay unchanged
    )

    @field_validator("key_columns")
    @classmethod
    def _key_columns(cls, value: dict[str, str]) -> dict[str, str]:
        check_key_columns(value, value, "key_columns")  # the join keys themselves are checked with the entity
        return value


class BatchGroupDef(_GroupDef):
    """Computed from a source table, on a schedule, by a SQL transform (over the table named `source`) or a Python
    function (`package.module:function`, given the source as a DataFrame): exactly one of the two."""

    kind: Literal["batch"] = "batch"
    source: SourceDef
    transform_sql: str | None = Field(default=None, min_length=1, max_length=100_000)
    transform: str | None = Field(default=None, pattern=FUNCTION_PATTERN, max_length=512)
    schedule: str | None = Field(default=None, max_length=255, description="cron (UTC) for the platform scheduler")

    @model_validator(mode="after")
    def _one_transform(self) -> BatchGroupDef:
        if (self.transform_sql is None) == (self.transform is None):
            raise ValueError(f"batch group {self.name!r}: give exactly one of transform_sql and transform")
        return self


class AggregationDef(_Definition):
    """An aggregate of one event field over a sliding window, e.g. sum of `amount` over 1h."""

    function: Literal["count", "sum", "mean", "min", "max", "last"]
    field: str | None = Field(default=None, min_length=1, max_length=255)
    window: PositiveDuration
    name: Name

    @model_validator(mode="after")
    def _needs_field(self) -> AggregationDef:
        if self.function != "count" and not self.field:
            raise ValueError(f"aggregation {self.name!r}: {self.function} needs a field")
        return self


class StreamGroupDef(_GroupDef):
    """Maintained from a Kafka topic by windowed aggregations; written online and offline."""

    kind: Literal["stream"] = "stream"
    topic: str = Field(min_length=1, max_length=249)
    event_schema: dict[Annotated[str, Field(min_length=1, max_length=255)], ValueType] = Field(max_length=1_000)
    timestamp_field: str = Field(default="event_time", min_length=1, max_length=255)
    aggregations: list[AggregationDef] = Field(min_length=1, max_length=MAX_FEATURES)
    allowed_lateness: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _aggregations_match_features(self) -> StreamGroupDef:
        declared = {f.name for f in self.features}
        produced = [a.name for a in self.aggregations]
        if len(set(produced)) != len(produced):
            raise ValueError("two aggregations share a name")
        if declared != set(produced):
            raise ValueError(f"features {sorted(declared)} must be exactly the aggregations {sorted(produced)}")
        for agg in self.aggregations:
            if agg.field and agg.field not in self.event_schema:
                raise ValueError(f"aggregation {agg.name!r} reads {agg.field!r}, which the event schema lacks")
        return self


class RequestFeatureDef(_Definition):
    """A value the caller supplies at prediction time (declared in files; a model's signature lists its own)."""

    name: Name
    dtype: ValueType


class OnDemandGroupDef(_GroupBase):
    """Features computed when they are read, by a pure Python function of request features and stored features.

    The same function runs when a training set is built and when the prediction service answers a request, so
    offline and online values agree. `function` is `package.module:function`, importable where it runs; `inputs`
    maps the names the function sees to stored features (`project:group:feature` of batch or stream groups);
    `request_features` are supplied by the caller (and by the label table in training). In `row` mode the function
    takes one dict and returns a dict of every declared feature; in `pandas` mode it takes and returns a DataFrame.
    `code_sha256` fingerprints the function's source when the definition is applied from the SDK or CLI: a
    runtime that loads different code refuses to run it.
    """

    kind: Literal["on_demand"] = "on_demand"
    function: str = Field(pattern=FUNCTION_PATTERN, max_length=512)
    mode: Literal["row", "pandas"] = "row"
    inputs: dict[Name, Annotated[str, Field(pattern=REF_PATTERN)]] = Field(default_factory=dict, max_length=1_000)
    request_features: list[RequestFeatureDef] = Field(default_factory=list, max_length=1_000)
    code_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)

    @model_validator(mode="after")
    def _inputs(self) -> OnDemandGroupDef:
        requested = [r.name for r in self.request_features]
        if not self.inputs and not requested:
            raise ValueError(f"on-demand group {self.name!r} needs inputs or request_features (or both)")
        if len(set(requested)) != len(requested):
            raise ValueError(f"on-demand group {self.name!r} lists a request feature twice")
        both = sorted(set(requested) & set(self.inputs))
        if both:
            raise ValueError(f"on-demand group {self.name!r}: {both[0]!r} is both an input and a request feature")
        return self


def _kind_of(value: Any) -> str | None:
    """The discriminator: `kind`, or (when a definition leaves it out) stream for a group with a topic, on_demand
    for one with a function."""
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind is None:
            return "stream" if "topic" in value else "on_demand" if "function" in value else "batch"
        return kind if isinstance(kind, str) else None
    kind = getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


GroupDefinition = Annotated[
    Annotated[BatchGroupDef, Tag("batch")]
    | Annotated[StreamGroupDef, Tag("stream")]
    | Annotated[OnDemandGroupDef, Tag("on_demand")],
    Discriminator(_kind_of),
]


class BatchGroupRegister(BatchGroupDef):
    new_version: bool = Field(default=False, description="accept a breaking change as a new version")


class StreamGroupRegister(StreamGroupDef):
    new_version: bool = Field(default=False, description="accept a breaking change as a new version")


class OnDemandGroupRegister(OnDemandGroupDef):
    new_version: bool = Field(default=False, description="accept a breaking change as a new version")


GroupRegister = Annotated[
    Annotated[BatchGroupRegister, Tag("batch")]
    | Annotated[StreamGroupRegister, Tag("stream")]
    | Annotated[OnDemandGroupRegister, Tag("on_demand")],
    Discriminator(_kind_of),
]


class DefinitionsApply(_Definition):
    """A definitions file (`Definitions` of the feature store), applied in one transaction: entities, then groups.

    Top-level `request_features` are accepted so a file can be posted as it is; the catalog keeps the request
    features that on-demand groups declare (a model's signature lists its own).
    """

    project: str | None = Field(default=None, pattern=PROJECT_PATTERN, description="must match the URL's project")
    entities: list[EntityDef] = Field(default_factory=list, max_length=1_000)
    batch_groups: list[BatchGroupDef] = Field(default_factory=list, max_length=1_000)
    stream_groups: list[StreamGroupDef] = Field(default_factory=list, max_length=1_000)
    on_demand_groups: list[OnDemandGroupDef] = Field(default_factory=list, max_length=1_000)
    request_features: list[RequestFeatureDef] = Field(default_factory=list, max_length=10_000)
    new_version: bool = Field(default=False, description="accept breaking changes as new versions")

    @model_validator(mode="after")
    def _unique_names(self) -> DefinitionsApply:
        entities = [e.name for e in self.entities]
        if len(set(entities)) != len(entities):
            raise ValueError("two entities share a name")
        groups = [g.name for g in [*self.batch_groups, *self.stream_groups, *self.on_demand_groups]]
        if len(set(groups)) != len(groups):
            raise ValueError("two feature groups share a name")
        return self


class GroupStats(BaseModel):
    """What the pipelines last reported of a group (each value as last reported; null if never)."""

    rows_offline: int | None = None
    rows_online: int | None = None
    last_event_time: datetime | None = None
    last_run_at: datetime | None = None
    freshness_seconds: float | None = None
    reported_by: str
    reported_at: datetime


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StatsReport(_Definition):
    """Latest statistics of a group, sent by its pipeline after each run; values left out keep what was there.

    Times without a timezone are taken as UTC."""

    rows_offline: int | None = Field(default=None, ge=0, le=2**63 - 1)
    rows_online: int | None = Field(default=None, ge=0, le=2**63 - 1)
    last_event_time: datetime | None = None
    last_run_at: datetime | None = None
    freshness_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("last_event_time", "last_run_at")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _something(self) -> StatsReport:
        values = (self.rows_offline, self.rows_online, self.last_event_time, self.last_run_at, self.freshness_seconds)
        if all(value is None for value in values):
            raise ValueError(f"report at least one of {', '.join(STATS_FIELDS)}")
        return self


class GroupRead(BaseModel):
    """The current version of a feature group."""

    project: str
    name: str
    kind: GroupKind
    version: int = Field(description="the current (latest) version")
    entity: EntityKeys
    definition: GroupDefinition
    refs: list[str] = Field(description="`project:group:feature` of every feature, in definition order")
    stats: GroupStats | None
    created_by: str
    created_at: datetime
    updated_by: str = Field(description="who registered the current version")
    updated_at: datetime


class GroupRegistered(GroupRead):
    outcome: Outcome = Field(description="created (version 1), updated (a new version) or unchanged")
    breaking: bool = Field(description="the new version breaks readers of the previous one")
    changes: list[str] = Field(description="what differs from the previous version")


class GroupVersionRead(BaseModel):
    """One immutable version of a group, with the entity's join keys as they were when it was registered."""

    project: str
    name: str
    version: int
    kind: GroupKind
    breaking: bool
    changes: list[str]
    entity: EntityKeys
    definition: GroupDefinition
    refs: list[str]
    created_by: str
    created_at: datetime


class AppliedEntity(BaseModel):
    name: str
    outcome: Outcome


class AppliedGroup(BaseModel):
    name: str
    kind: GroupKind
    outcome: Outcome
    version: int
    breaking: bool
    changes: list[str]


class DefinitionsApplied(BaseModel):
    project: str
    entities: list[AppliedEntity]
    groups: list[AppliedGroup]


# -- catalog search and resolution ---------------------------------------------------------------------------------


class FeatureHit(BaseModel):
    """One feature of the catalog, with its group's facts and the model versions that use it."""

    ref: str
    project: str
    group: str
    name: str
    dtype: ValueType
    description: str
    tags: dict[str, str] = Field(description="the group's tags overlaid with the feature's own")
    kind: GroupKind
    group_version: int
    entity: EntityKeys
    owner: str
    max_age: str
    max_age_seconds: int
    online: bool
    stats: GroupStats | None
    used_by: list[str] = Field(description="`project/model/version` of model versions whose signature uses it")
    used_by_hidden: int = Field(description="how many more model versions use it in projects you cannot read")


class ResolvedFeature(BaseModel):
    ref: str
    project: str
    group: str
    feature: str
    dtype: ValueType
    group_version: int
    kind: GroupKind
    entity: EntityKeys
    max_age: str
    max_age_seconds: int
    online: bool


class OnDemandSpec(BaseModel):
    """How to compute an on-demand group: its function, the stored inputs (resolved in the same `Resolution`) and
    the request features the caller supplies."""

    function: str
    mode: Literal["row", "pandas"]
    inputs: dict[str, str]
    request_features: dict[str, ValueType]
    code_sha256: str | None


class ResolvedGroup(BaseModel):
    """What a store needs to read a group (a `GroupSchema`): entity keys in order and every feature's type.

    An on-demand group carries `on_demand`; the groups its inputs read are listed in the same resolution."""

    project: str
    group: str
    version: int
    kind: GroupKind
    entity: EntityKeys
    features: dict[str, ValueType]
    max_age: str
    max_age_seconds: int
    online: bool
    on_demand: OnDemandSpec | None = None


class Resolution(BaseModel):
    features: list[ResolvedFeature] = Field(description="one per requested reference, in the order asked")
    groups: list[ResolvedGroup] = Field(
        description="each group the references point into, once, then the stored groups on-demand inputs read"
    )


def parse_ref(text: str) -> tuple[str, str, str]:
    """(project, group, feature) of a `project:group:feature` reference; ValueError when it is not one."""
    if not re.match(REF_PATTERN, text):
        raise ValueError(f"{text!r} is not a feature reference `project:group:feature`")
    project, group, feature = text.split(":")
    return project, group, feature
