"""Wire schemas of the model DB: models, immutable versions, their artifacts, aliases and blobs.

Pydantic and the standard library only: the SDK imports this module on the light base install.

Rules the schemas enforce (each failure is a 422 naming the field):
- model names: lowercase letters, digits and `_ . -`, at most 127 characters;
- alias names: a lowercase letter then letters, digits, `_ -` (never a number, so `{version}` in a path is either a
  version number or an alias); `latest` is reserved and always means the highest version;
- signature types: one of `SIGNATURE_TYPES`; store features are references `project:group:feature`;
- artifact paths: relative POSIX paths without `.`/`..` segments, backslashes or control characters;
- metrics: finite numbers; evaluation documents: JSON up to `EVALUATION_MAX_BYTES`; lineage up to
  `LINEAGE_MAX_BYTES`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from bottega.core.keys import COLUMN_MAX, check_key_columns
from bottega.core.names import (
    CATALOG_REF_PATTERN,
    COLUMN_PATTERN,
    EVALUATION_NAME_PATTERN,
    MODEL_NAME_PATTERN,
    SHA256_PATTERN,
    SIGNATURE_REF_PATTERN,
    TAG_KEY_PATTERN,
    describe_pattern,
)

LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})
FEATURE_REF_PATTERN = SIGNATURE_REF_PATTERN
FIELD_NAME_PATTERN = COLUMN_PATTERN
EVALUATION_MAX_BYTES = 1024 * 1024
LINEAGE_MAX_BYTES = 64 * 1024
MAX_ARTIFACTS = 10_000
MAX_TAGS = 100
SERVER_LINEAGE_KEYS = ("created_by", "created_at", "run_id")
TRAINING_EVALUATION = "training"
"""the reserved name of the evaluation training stored with the version"""

Flavor = Literal["xgboost", "onnx", "torch", "python"]
SignatureType = Literal[
    "bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64", "string", "bytes", "datetime"
]
SIGNATURE_TYPES: tuple[str, ...] = get_args(SignatureType)
FLAVORS: tuple[str, ...] = get_args(Flavor)
TagKey = Annotated[str, Field(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=1024)]
FeatureRef = Annotated[str, Field(pattern=FEATURE_REF_PATTERN, description="`project:group:feature`")]
MetricValue = Annotated[float, Field(allow_inf_nan=False)]
MetricKey = Annotated[str, Field(min_length=1, max_length=255)]
KeyColumn = Annotated[str, Field(min_length=1, max_length=COLUMN_MAX)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_artifact_path(path: str, *, allow_dir: bool = False) -> str:
    """A relative POSIX path inside a version (`model/model.onnx`); with `allow_dir`, `dir/` selects a folder."""
    if not path or len(path) > 1024:
        raise ValueError("an artifact path has 1 to 1024 characters")
    if _CONTROL.search(path) or "\\" in path:
        raise ValueError(f"artifact path {path!r} has a control character or a backslash")
    if path.startswith("/"):
        raise ValueError(f"artifact path {path!r} must be relative (no leading '/')")
    body = path[:-1] if allow_dir and path.endswith("/") else path
    if any(part in ("", ".", "..") for part in body.split("/")):
        raise ValueError(f"artifact path {path!r} has an empty, '.' or '..' segment")
    return path


def json_size(value: Any, limit: int, what: str) -> int:
    """The size of `value` as JSON; ValueError when it is over `limit` or holds NaN/Infinity."""
    try:
        size = len(json.dumps(value, allow_nan=False, separators=(",", ":")).encode())
    except ValueError as exc:
        raise ValueError(f"{what} must be plain JSON without NaN or Infinity") from exc
    if size > limit:
        raise ValueError(f"{what} is {size} bytes as JSON; the limit is {limit}")
    return size


def _check_selector(path: str) -> str:
    return check_artifact_path(path, allow_dir=True)


ArtifactPath = Annotated[str, AfterValidator(check_artifact_path)]
ArtifactSelector = Annotated[str, AfterValidator(_check_selector)]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MODEL_NAME_PATTERN, description="unique in the project")
    description: str = Field(default="", max_length=10_000)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)


class ModelUpdate(BaseModel):
    """A merge patch: `description` replaces; `tags` sets the given keys and removes those given as null."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=10_000)
    tags: dict[TagKey, TagValue | None] | None = Field(default=None, max_length=MAX_TAGS)


class ModelRead(BaseModel):
    name: str
    description: str
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = Field(description="the highest version number; null before the first version")
    aliases: dict[str, int] = Field(description="alias -> version number")


class SignatureField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FIELD_NAME_PATTERN)
    type: SignatureType
    shape: list[Annotated[int, Field(ge=-1)]] | None = Field(
        default=None, max_length=8, description="tensor shape; -1 for a dynamic dimension; null for a scalar"
    )
    classes: list[StrictBool | StrictInt | StrictFloat | StrictStr] | None = Field(
        default=None,
        max_length=10_000,
        description="a classifier's class labels, in the label's own type, in the order of its probabilities",
        exclude_if=lambda value: value is None,  # absent rather than null: older clients forbid unknown fields
    )

    @model_validator(mode="after")
    def _classes_fit_the_shape(self) -> SignatureField:
        if self.classes is None:
            return self
        if len(set(map(repr, self.classes))) != len(self.classes):
            raise ValueError(f"{self.name}.classes lists a class twice")
        if self.shape and self.shape[-1] not in (-1, len(self.classes)):
            raise ValueError(f"{self.name}.classes has {len(self.classes)} classes but its shape is {self.shape}")
        return self


def _unique_names(fields: list[SignatureField], where: str) -> list[SignatureField]:
    seen: set[str] = set()
    for item in fields:
        if item.name in seen:
            raise ValueError(f"{where} has the name {item.name!r} twice")
        seen.add(item.name)
    return fields


class Signature(BaseModel):
    """What the model takes and returns: request features, features joined from the store, outputs."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[SignatureField] = Field(default_factory=list, max_length=10_000)
    store_features: list[FeatureRef] = Field(default_factory=list, max_length=10_000)
    outputs: list[SignatureField] = Field(default_factory=list, max_length=1_000)
    key_columns: dict[Annotated[str, Field(min_length=1, max_length=COLUMN_MAX)], KeyColumn] = Field(
        default_factory=dict,
        max_length=64,
        description="join key -> the field that carries it in requests and batch-scoring inputs, when named "
        "otherwise (as in the label table the model was trained on)",
        exclude_if=lambda value: not value,  # absent rather than {}: older clients forbid unknown fields
    )

    @field_validator("key_columns")
    @classmethod
    def _key_columns(cls, value: dict[str, str]) -> dict[str, str]:
        check_key_columns(value, value, "key_columns")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs_unique(cls, value: list[SignatureField]) -> list[SignatureField]:
        return _unique_names(value, "inputs")

    @field_validator("outputs")
    @classmethod
    def _outputs_unique(cls, value: list[SignatureField]) -> list[SignatureField]:
        return _unique_names(value, "outputs")

    @field_validator("store_features")
    @classmethod
    def _features_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("store_features lists a feature twice")
        return value


class ArtifactRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: ArtifactPath
    sha256: str = Field(pattern=SHA256_PATTERN, description="of a blob uploaded to this project")


def _check_lineage(value: dict[str, Any]) -> dict[str, Any]:
    json_size(value, LINEAGE_MAX_BYTES, "lineage")
    refs = value.get("feature_refs")
    if refs is not None:
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise ValueError("lineage.feature_refs must be a list of `project:group:feature` strings")
        bad = [r for r in refs if not re.match(FEATURE_REF_PATTERN, r)]
        if bad:
            raise ValueError(f"lineage.feature_refs: {bad[0]!r} is not a `project:group:feature` reference")
    return value


def _check_evaluation(value: dict[str, Any]) -> dict[str, Any]:
    json_size(value, EVALUATION_MAX_BYTES, "evaluation")
    return value


class VersionCreate(BaseModel):
    """A new immutable version. Artifacts come from `artifacts` (blobs uploaded to the project), from the run's
    artifacts (`from_run_artifacts`: true for all of them, or a list of paths; a path ending in `/` takes a folder),
    or both. The server fills `lineage.created_by`, `lineage.created_at` and `lineage.run_id`."""

    model_config = ConfigDict(extra="forbid")

    flavor: Flavor
    run_id: str | None = Field(default=None, min_length=1, max_length=32)
    signature: Signature = Field(default_factory=Signature)
    metrics: dict[MetricKey, MetricValue] = Field(default_factory=dict, max_length=1_000)
    evaluation: Annotated[dict[str, Any], AfterValidator(_check_evaluation)] = Field(
        default_factory=dict, description=f"evaluation report, at most {EVALUATION_MAX_BYTES} bytes as JSON"
    )
    lineage: Annotated[dict[str, Any], AfterValidator(_check_lineage)] = Field(
        default_factory=dict, description="dataset, feature_refs, code_version, ... (free-form JSON)"
    )
    description: str = Field(default="", max_length=10_000)
    artifacts: list[ArtifactRef] = Field(default_factory=list, max_length=MAX_ARTIFACTS)
    from_run_artifacts: bool | Annotated[list[ArtifactSelector], Field(max_length=MAX_ARTIFACTS)] = Field(
        default=False, description="true: every artifact of the run; a list: these paths (`dir/` for a folder)"
    )

    @field_validator("signature")
    @classmethod
    def _catalog_refs(cls, value: Signature) -> Signature:
        """New versions name store features the catalog can define (reads keep the wider grammar older versions
        were stored with)."""
        bad = [ref for ref in value.store_features if not re.match(CATALOG_REF_PATTERN, ref)]
        if bad:
            raise ValueError(
                f"store_features: {bad[0]!r} is not {describe_pattern(CATALOG_REF_PATTERN)}; the catalog cannot "
                "define it"
            )
        return value

    @field_validator("artifacts")
    @classmethod
    def _paths_unique(cls, value: list[ArtifactRef]) -> list[ArtifactRef]:
        seen: set[str] = set()
        for ref in value:
            if ref.path in seen:
                raise ValueError(f"the artifact path {ref.path!r} is listed twice")
            seen.add(ref.path)
        return value

    @model_validator(mode="after")
    def _run_needed(self) -> VersionCreate:
        if self.from_run_artifacts is not False and self.run_id is None:
            raise ValueError("from_run_artifacts needs run_id")
        if not self.artifacts and self.from_run_artifacts in (False, []):
            raise ValueError("a version needs artifacts: give `artifacts` and/or `from_run_artifacts`")
        return self


class VersionUpdate(BaseModel):
    """Versions are immutable: only the description can change."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=10_000)

    @model_validator(mode="before")
    @classmethod
    def _immutable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            other = sorted(k for k in data if k != "description")
            if other:
                raise ValueError(
                    f"model versions are immutable: only `description` can change, not {', '.join(other)}; "
                    "register a new version instead"
                )
        return data


class ArtifactRead(BaseModel):
    path: str
    sha256: str
    size: int


class VersionSummary(BaseModel):
    model: str
    version: int
    run_id: str | None
    flavor: str
    signature: Signature
    metrics: dict[str, float]
    lineage: dict[str, Any]
    description: str
    created_by: str
    created_at: datetime
    aliases: list[str] = Field(description="aliases pointing at this version")


class VersionRead(VersionSummary):
    evaluation: dict[str, Any]
    artifacts: list[ArtifactRead]


class AliasPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="the version number the alias points at")


class AliasRead(BaseModel):
    alias: str
    version: int
    updated_by: str
    updated_at: datetime


class BlobRead(BaseModel):
    sha256: str
    size: int


VerifyStatus = Literal["ok", "missing", "size_mismatch", "corrupted"]


class VerifyFile(BaseModel):
    path: str
    sha256: str
    size: int
    status: VerifyStatus
    detail: str = ""


class VerifyReport(BaseModel):
    model: str
    version: int
    ok: bool
    artifacts: list[VerifyFile]


class EvaluationCreate(BaseModel):
    """A named evaluation of a version on other labelled data: the report training stores (`evaluation`), its
    scalar metrics and what it was computed on (`dataset`: labels, rows, time range, ...)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=EVALUATION_NAME_PATTERN, description="e.g. holdout-2026-12; `training` is reserved")
    metrics: dict[MetricKey, MetricValue] = Field(default_factory=dict, max_length=1_000)
    evaluation: Annotated[dict[str, Any], AfterValidator(_check_evaluation)] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict, description="what the evaluation was computed on")
    description: str = Field(default="", max_length=10_000)

    @field_validator("name")
    @classmethod
    def _not_training(cls, value: str) -> str:
        if value == TRAINING_EVALUATION:
            raise ValueError("`training` is the version's own evaluation; choose another name")
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        json_size(value, LINEAGE_MAX_BYTES, "dataset")
        return value


class EvaluationSummary(BaseModel):
    model: str
    version: int
    name: str
    metrics: dict[str, float]
    dataset: dict[str, Any]
    description: str
    created_by: str
    created_at: datetime


class EvaluationRead(EvaluationSummary):
    evaluation: dict[str, Any]
