"""Where grammars disagreed they now agree: a deployment's and a batch-scoring job's model names and aliases follow
the registry's rules (a reference the registry could never hold is a clear 422 before any lookup)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bottega.api.deployments.schemas import ModelRef
from bottega.core.names import ALIAS_PATTERN, MODEL_NAME_PATTERN
from bottega.serving.batch.jobs import BatchScoreParams


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"model": "eta", "alias": "Champion"}, ALIAS_PATTERN),
        ({"model": "eta", "alias": "7"}, ALIAS_PATTERN),  # a number is a version, never an alias
        ({"model": "ETA model", "version": 1}, MODEL_NAME_PATTERN),
    ],
)
def test_deployment_references_follow_the_registry(fields: dict[str, object], pattern: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelRef.model_validate(fields)
    assert caught.value.errors()[0]["ctx"]["pattern"] == pattern
    assert ModelRef.model_validate({"model": "eta", "alias": "champion"}).label() == "eta@champion"


def test_batch_scoring_params_follow_the_registry() -> None:
    given = {"model": "eta", "input": "in.parquet", "output": "out.parquet"}
    assert BatchScoreParams.model_validate({**given, "alias": "production"}).alias == "production"
    with pytest.raises(ValidationError, match="alias"):
        BatchScoreParams.model_validate({**given, "alias": "Prod!"})
    with pytest.raises(ValidationError, match="deployment"):
        BatchScoreParams.model_validate({"deployment": "Nightly Scores"})
