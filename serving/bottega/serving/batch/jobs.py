"""The job type `serving.batch_score` (entry point `bottega.job_types`: `serving`).

Params name a batch deployment of the job's project (`deployment`: its current spec says the model version, the
input, the output and, in `params`, the options below), or say it all directly (`model` with `version` or `alias`,
`input`, `output`). Options given to the job win over the deployment's:

| option | default | meaning |
|---|---|---|
| `engine` | `local` | `local` (pyarrow + DuckDB) or `spark` (`BOTTEGA_SPARK_MASTER` picks the cluster) |
| `timestamp_column` | `timestamp` | the input column store features are joined as of |
| `chunk_size` | 50000 | rows per prediction call (local: also per read and join) |
| `keep` | entity keys + timestamp | input columns copied to the output |
| `offline_root` | `BOTTEGA_OFFLINE_URL` | the offline store |
| `key_columns` | the signature's | join key -> the input column holding it, e.g. `{user_id: userId}` |

`{date}` (UTC, YYYY-MM-DD) and `{run_id}` in `output` are replaced, so a schedule can keep every run's output.
The result: rows scored, output, model, version, seconds, engine (and the deployment and its revision).
Artifacts are cached under `BOTTEGA_SERVE_CACHE` (default `$BOTTEGA_HOME/serving/models`), as for online serving.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bottega.api.jobs.types import JobContext, JobType
from bottega.core.names import ALIAS_PATTERN, BATCH_SCORE_JOB, MODEL_NAME_PATTERN, PROJECT_PATTERN
from bottega.serving.batch.plan import DEFAULT_CHUNK_SIZE, BatchInputError, ScoreRequest

if TYPE_CHECKING:
    from bottega.sdk import Client

JOB_TYPE = BATCH_SCORE_JOB
Engine = Literal["local", "spark"]


class Options(BaseModel):
    """Scoring options: from a deployment's `params`, or from the job's params."""

    model_config = ConfigDict(extra="ignore")

    engine: Engine | None = Field(default=None, description="local (default) or spark")
    timestamp_column: str | None = Field(default=None, min_length=1, description="default: timestamp")
    chunk_size: int | None = Field(default=None, ge=1, le=10_000_000, description=f"default: {DEFAULT_CHUNK_SIZE}")
    keep: list[str] | None = Field(default=None, description="input columns copied to the output")
    offline_root: str | None = Field(default=None, min_length=1, description="default: BOTTEGA_OFFLINE_URL")
    key_columns: dict[str, str] | None = Field(
        default=None, description="join key -> the input column holding it (default: the signature's key_columns)"
    )


class BatchScoreParams(Options):
    model_config = ConfigDict(extra="forbid")

    deployment: str | None = Field(
        default=None, pattern=PROJECT_PATTERN, description="a batch deployment of the project"
    )
    model: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN, description="without a deployment: the model")
    version: int | None = Field(default=None, ge=1, description="its version number")
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN, description="or an alias such as champion")
    input: str | None = Field(default=None, min_length=1, description="without a deployment: Parquet or CSV")
    output: str | None = Field(default=None, min_length=1, description="without a deployment: where to write")

    @model_validator(mode="after")
    def _deployment_or_model(self) -> BatchScoreParams:
        direct = {"model": self.model, "input": self.input, "output": self.output}
        if self.deployment is not None:
            given = [k for k in (*direct, "version", "alias") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"give a `deployment` or {', '.join(given)}, not both")
            return self
        missing = [k for k, v in direct.items() if v is None]
        if self.version is None and self.alias is None:
            missing.append("version (or alias)")
        if missing:
            raise ValueError(f"give a `deployment`, or {', '.join(missing)} to score without one")
        return self


def _options(params: BatchScoreParams, spec_params: dict[str, Any]) -> Options:
    try:
        base = Options.model_validate(spec_params)
    except ValidationError as exc:
        raise BatchInputError(f"the deployment's params are not valid scoring options: {exc}") from exc
    given = params.model_dump(include=set(Options.model_fields), exclude_none=True)
    return base.model_copy(update=given)


def _target(client: Client, project: str, params: BatchScoreParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what to score: model, version, input, output; facts for the result) from a deployment or the params."""
    if params.deployment is None:
        assert params.model is not None
        version = params.version
        if version is None:
            version = client.models.get_version(project, params.model, str(params.alias)).version
        target = {"model": params.model, "version": version, "input": params.input, "output": params.output}
        return target, {}
    deployment = client.deployments.get(project, params.deployment)
    if deployment.kind != "batch":
        raise BatchInputError(f"deployment {params.deployment!r} is an online deployment, not a batch one")
    if not deployment.active:
        raise BatchInputError(f"deployment {params.deployment!r} is undeployed (revision {deployment.revision})")
    spec = deployment.spec
    target = {k: spec[k] for k in ("model", "version", "input", "output")}
    target["params"] = dict(spec.get("params") or {})
    return target, {"deployment": deployment.name, "revision": deployment.revision}


def request_for(
    client: Client, project: str, params: BatchScoreParams, run_id: str
) -> tuple[ScoreRequest, Engine, dict[str, Any]]:
    """The resolved request, the engine and facts for the result."""
    target, facts = _target(client, project, params)
    options = _options(params, target.pop("params", {}))
    output = str(target["output"]).replace("{date}", datetime.now(UTC).date().isoformat()).replace("{run_id}", run_id)
    request = ScoreRequest(
        project=project,
        model=str(target["model"]),
        version=int(target["version"]),
        input=str(target["input"]),
        output=output,
        timestamp_column=options.timestamp_column or "timestamp",
        chunk_size=options.chunk_size or DEFAULT_CHUNK_SIZE,
        keep=tuple(options.keep) if options.keep is not None else None,
        offline_root=options.offline_root,
        key_columns=options.key_columns,
    )
    return request, options.engine or "local", facts


def run_batch_score(ctx: JobContext[BatchScoreParams]) -> dict[str, Any]:
    from bottega.serving.runtimes.loader import ArtifactCache
    from bottega.serving.settings import ServingSettings

    with ctx.client() as client:
        request, engine, facts = request_for(client, ctx.project, ctx.params, ctx.run_id)
        ctx.log.info(
            "scoring %s with %s:%d on %s into %s", request.input, request.model, request.version, engine, request.output
        )
        cache = ArtifactCache(ServingSettings().cache_dir, client)
        ctx.check_cancelled()
        if engine == "spark":
            from bottega.feature_store.spark_session import spark_session
            from bottega.serving.batch.spark import score_spark

            with spark_session(f"bottega-score-{ctx.project}-{request.model}") as spark:
                result = score_spark(spark, client, request, cache)
        else:
            from bottega.serving.batch.local import score_local

            result = score_local(client, request, cache)
    ctx.log.info("scored %d rows in %.1f s", result.rows, result.seconds)
    return {**result.as_dict(), **facts}


def job_types() -> list[JobType[Any]]:
    """The entry point `bottega.job_types:serving`."""
    return [
        JobType(
            JOB_TYPE,
            "Score an input table with a model version (a batch deployment's, or given) and write Parquet.",
            run_batch_score,
            BatchScoreParams,
        )
    ]
