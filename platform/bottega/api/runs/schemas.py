"""Wire schemas of runs (pydantic and the standard library only: the SDK imports this module)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from bottega.core.names import TRACKING_RUN_ID_PATTERN

RUN_ID_PATTERN = TRACKING_RUN_ID_PATTERN
# Keys of params, metrics and tags: letters, digits, `_ - . /` and spaces (MLflow's alphabet), at most 255 chars.
KEY_PATTERN = r"^[A-Za-z0-9_\-./ ]{1,255}$"
NAME_MAX = 255
DESCRIPTION_MAX = 10_000
PARAM_VALUE_MAX = 6_000
TAG_VALUE_MAX = 8_000
MAX_PARAMS_PER_CALL = 1_000
MAX_TAGS_PER_CALL = 1_000
MAX_METRICS_PER_CALL = 10_000
ARTIFACT_PATH_MAX = 1024
COMPARE_MIN = 2
COMPARE_MAX = 20
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
ParamValue = StrictStr | StrictBool | StrictInt | StrictFloat


class RunStatus(StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"
    killed = "killed"


def param_text(value: str | bool | int | float) -> str:
    """The stored text of a param value: strings as they are, numbers and booleans the way Python prints them
    (`str(value)`, as MLflow does: 0.1 -> "0.1", True -> "True")."""
    return value if isinstance(value, str) else str(value)


def artifact_path_problem(path: str) -> str | None:
    """Why `path` is not a valid artifact path, or None. Valid: relative `/`-separated names, none empty, none `.`
    or `..`, no backslashes or control characters, at most ARTIFACT_PATH_MAX characters."""
    if not path:
        return "the artifact path is empty"
    if len(path) > ARTIFACT_PATH_MAX:
        return f"the artifact path has {len(path)} characters; the limit is {ARTIFACT_PATH_MAX}"
    if path.startswith("/"):
        return "the artifact path must be relative (no leading `/`)"
    if "\\" in path:
        return "the artifact path must use `/` as its separator"
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return "the artifact path contains control characters"
    segments = path.split("/")
    if any(segment == "" for segment in segments):
        return "the artifact path has an empty segment (`//` or a trailing `/`)"
    if any(segment in (".", "..") for segment in segments):
        return "the artifact path may not contain `.` or `..` segments"
    return None


def _check_params(params: dict[str, ParamValue]) -> dict[str, str]:
    if len(params) > MAX_PARAMS_PER_CALL:
        raise ValueError(f"at most {MAX_PARAMS_PER_CALL} params per call, got {len(params)}")
    out: dict[str, str] = {}
    for key, raw in params.items():
        text = param_text(raw)
        if len(text) > PARAM_VALUE_MAX:
            raise ValueError(f"the value of param {key!r} has {len(text)} characters; the limit is {PARAM_VALUE_MAX}")
        out[key] = text
    return out


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS_PER_CALL:
        raise ValueError(f"at most {MAX_TAGS_PER_CALL} tags per call, got {len(tags)}")
    for key, value in tags.items():
        if len(value) > TAG_VALUE_MAX:
            raise ValueError(f"the value of tag {key!r} has {len(value)} characters; the limit is {TAG_VALUE_MAX}")
    return tags


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=NAME_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    tags: dict[Key, str] = Field(default_factory=dict)
    params: dict[Key, ParamValue] = Field(
        default_factory=dict, description="strings; numbers and booleans are stored as text"
    )
    parent_run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, ParamValue]) -> dict[str, str]:
        return _check_params(value)


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    status: RunStatus | None = Field(
        default=None, description="leaving `running` sets end_time; a finished run cannot go back to running"
    )


class ParamsLog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[Key, ParamValue] = Field(description="params are immutable: the same value again is accepted")

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, ParamValue]) -> dict[str, str]:
        return _check_params(value)


class MetricPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Key
    value: float = Field(allow_inf_nan=False)
    step: int = Field(default=0, ge=INT64_MIN, le=INT64_MAX)
    timestamp: datetime | None = Field(default=None, description="when it was measured (default: when it arrives)")


class MetricsLog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricPoint] = Field(min_length=1, max_length=MAX_METRICS_PER_CALL)


class MetricsLogged(BaseModel):
    logged: int


class TagsPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: dict[Key, str] = Field(description="merged into the run's tags (a key given again is overwritten)")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)


class LatestMetric(BaseModel):
    value: float
    step: int
    timestamp: datetime


class MetricPointRead(BaseModel):
    step: int
    value: float
    timestamp: datetime


class MetricHistory(BaseModel):
    key: str
    points: list[MetricPointRead]


class ArtifactRead(BaseModel):
    path: str
    sha256: str
    size: int
    created_at: datetime


class ArtifactsSummary(BaseModel):
    count: int = 0
    total_size: int = 0
    items: list[ArtifactRead] = Field(
        default_factory=list, description="the first artifacts by path (GET of one run only; lists leave it empty)"
    )


class RunRead(BaseModel):
    id: str
    project: str
    name: str
    description: str
    status: RunStatus
    parent_run_id: str | None
    created_by: str
    start_time: datetime
    end_time: datetime | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, LatestMetric] = Field(description="the latest value of each metric (highest step)")
    artifacts: ArtifactsSummary


class RunBrief(BaseModel):
    id: str
    name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None


class ParamRow(BaseModel):
    key: str
    values: list[str | None] = Field(description="one per run, in the order of `runs`; null where not logged")
    differs: bool


class MetricRow(BaseModel):
    key: str
    values: list[float | None] = Field(description="latest value per run, in the order of `runs`")
    differs: bool


class RunComparison(BaseModel):
    runs: list[RunBrief]
    params: list[ParamRow]
    metrics: list[MetricRow]
