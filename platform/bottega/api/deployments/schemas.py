"""Wire schemas of deployments (pydantic and the standard library only: the SDK imports them).

A deployment is a named, revisioned spec. Online specs split traffic between model versions by integer weights
that sum to 100 and may mirror traffic to shadow versions; batch specs score an input on a cron schedule. Model
versions are named by number or by alias; aliases are resolved to numbers when a revision is written and the
revision keeps both, so every revision says exactly which versions it served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bottega.api.auth.schemas import NAME_PATTERN
from bottega.api.registry.schemas import FEATURE_REF_PATTERN
from bottega.core.names import ALIAS_PATTERN, MODEL_NAME_PATTERN

# The registry's own grammars: every reference must resolve to a registered model (and alias) when a revision is
# written, so stored specs already satisfy them; they only make a bad name a clear 422 before the lookup.
MODEL_NAME = Field(pattern=MODEL_NAME_PATTERN, description="a registered model's name")
MAX_TARGETS = 32
MAX_REASON = 2_000
WATCH_MAX_TIMEOUT_S = 30.0


class ModelRef(BaseModel):
    """A model version by number, by alias, or both.

    With an alias alone the alias is resolved when the revision is written. With both, the version is the one
    served and the alias is kept as where it came from (this is how a stored spec is sent back unchanged).
    """

    model_config = ConfigDict(extra="forbid")

    model: str = MODEL_NAME
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="a version number")
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN, description="an alias such as `champion`")

    @model_validator(mode="after")
    def _version_or_alias(self) -> ModelRef:
        if self.version is None and self.alias is None:
            raise ValueError(f"model {self.model!r}: give a `version` number or an `alias`")
        return self

    def label(self) -> str:
        if self.version is not None:
            return f"{self.model}:{self.version}"
        return f"{self.model}@{self.alias}"


class Target(ModelRef):
    weight: int = Field(ge=0, le=100, description="percent of the traffic; the weights of all targets sum to 100")


class Routing(BaseModel):
    """How a request picks a target: at random by weight, or sticky by hashing a request field."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["random", "sticky"] = "random"
    key: str | None = Field(
        default=None, min_length=1, max_length=127, description="sticky only: the request field to hash (user_id)"
    )

    @model_validator(mode="after")
    def _key_for_sticky(self) -> Routing:
        if self.strategy == "sticky" and self.key is None:
            raise ValueError("sticky routing needs a `key`: the request field whose hash picks the target")
        if self.strategy == "random" and self.key is not None:
            raise ValueError("`key` only applies to sticky routing")
        return self


def _duplicates(refs: list[ModelRef]) -> list[str]:
    seen: set[tuple[str, str]] = set()
    dups: list[str] = []
    for ref in refs:
        key = (ref.model, str(ref.version) if ref.version is not None else "@" + str(ref.alias))
        if key in seen:
            dups.append(ref.label())
        seen.add(key)
    return dups


class FeaturePolicy(BaseModel):
    """What the prediction service does when a store feature is missing or older than its max age."""

    model_config = ConfigDict(extra="forbid")

    on_missing: Literal["default", "reject"] = Field(
        default="default", description="`default`: serve `default` (NaN when unset) and flag it; `reject`: 422"
    )
    on_stale: Literal["serve", "default", "reject"] = Field(
        default="serve", description="`serve` the old value flagged STALE, replace it by `default`, or 422"
    )
    default: float | None = Field(default=None, description="the value served instead; unset: NaN (missing)")


class OnlineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[Target] = Field(min_length=1, max_length=MAX_TARGETS)
    shadows: list[ModelRef] = Field(default_factory=list, max_length=MAX_TARGETS)
    routing: Routing | None = None
    features: dict[Annotated[str, Field(pattern=FEATURE_REF_PATTERN)], FeaturePolicy] = Field(
        default_factory=dict,
        max_length=10_000,
        description="freshness policy per store feature reference (`project:group:feature`); others use the default",
    )

    @model_validator(mode="after")
    def _weights_and_duplicates(self) -> OnlineSpec:
        total = sum(t.weight for t in self.targets)
        if total != 100:
            raise ValueError(f"target weights must sum to 100, not {total}")
        dups = _duplicates(list(self.targets)) + _duplicates(list(self.shadows))
        if dups:
            raise ValueError(f"duplicate model version: {', '.join(dups)}")
        return self


class BatchSpec(ModelRef):
    input: str = Field(min_length=1, max_length=2048, description="a URI or a table to score")
    output: str = Field(min_length=1, max_length=2048, description="where the predictions are written (URI)")
    schedule: str = Field(min_length=1, max_length=255, description="a cron expression, e.g. `0 3 * * *`")
    params: dict[str, Any] = Field(default_factory=dict, description="free-form job parameters")


Reason = Annotated[str, Field(max_length=MAX_REASON, description="why: kept with the revision and the audit event")]


class OnlineDeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, `_ . -`; at most 63 chars")
    kind: Literal["online"]
    spec: OnlineSpec
    reason: Reason = ""


class BatchDeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, `_ . -`; at most 63 chars")
    kind: Literal["batch"]
    spec: BatchSpec
    reason: Reason = ""


DeploymentCreate = Annotated[OnlineDeploymentCreate | BatchDeploymentCreate, Field(discriminator="kind")]


class DeploymentUpdate(BaseModel):
    """A new spec for revision N+1. The current revision must be given, here or as `If-Match: "N"`."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="an online or batch spec, matching the deployment's kind")
    reason: Reason = ""
    expected_revision: int | None = Field(default=None, ge=1, description="the revision this change is based on")


class DeploymentRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = ""
    to_revision: int | None = Field(default=None, ge=1, description="default: the revision before the current one")
    expected_revision: int | None = Field(default=None, ge=1)


class RevisionRead(BaseModel):
    revision: int
    sequence: int = Field(description="the global change sequence of this revision (see the watch endpoint)")
    active: bool
    spec: dict[str, Any] = Field(description="the spec with every alias resolved to a version number")
    reason: str
    rolled_back_from: int | None = Field(description="set on a rollback: the revision whose spec it restored")
    created_by: str
    created_at: datetime


class DeploymentRead(BaseModel):
    project: str
    name: str
    kind: Literal["online", "batch"]
    revision: int
    sequence: int
    active: bool
    spec: dict[str, Any]
    reason: str = Field(description="why the current revision was made")
    rolled_back_from: int | None = Field(description="set when the current revision is a rollback: its source")
    updated_by: str = Field(description="who made the current revision")
    updated_at: datetime
    created_by: str
    created_at: datetime


class WatchChange(BaseModel):
    sequence: int
    project: str
    name: str
    kind: Literal["online", "batch"]
    revision: int
    active: bool
    spec: dict[str, Any]
    created_by: str
    created_at: datetime


class WatchResult(BaseModel):
    sequence: int = Field(description="pass it as `since` next time (it is also the ETag)")
    changes: list[WatchChange]
    snapshot: bool = Field(default=False, description="true: `changes` is the current state of every deployment")
    more: bool = Field(default=False, description="true: more changes are waiting; ask again at once")
    resync: bool = Field(
        default=False,
        description="true: `since` is ahead of the server (a restored database): `changes` is a fresh snapshot",
    )
