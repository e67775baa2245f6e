"""A model that a live deployment serves cannot be deleted until it is undeployed."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict


@pytest.mark.parametrize("kind", ["online", "batch"])
def test_model_in_use_by_a_deployment_cannot_be_deleted(api: ApiHarness, kind: str, tmp_path: Path) -> None:
    sdk = api.sdk(api.project("eats", owner="alice"))
    sdk.models.create("eats", "eta")
    sdk.models.create("eats", "other")
    (tmp_path / "model.py").write_text("def predict(rows):\n    return [0.0 for _ in rows]\n")
    version = sdk.models.register_version("eats", "eta", "python", files={"model.py": tmp_path / "model.py"}).version
    if kind == "online":
        spec: dict[str, object] = {"targets": [{"model": "eta", "version": version, "weight": 100}]}
    else:
        spec = {"model": "eta", "version": version, "input": "s3://in", "output": "s3://out", "schedule": "0 3 * * *"}
    sdk.deployments.create("eats", "eta-live", spec, reason="first")
    with pytest.raises(Conflict, match="used by deployments eta-live"):
        sdk.models.delete("eats", "eta")
    sdk.models.delete("eats", "other")  # an unused model still goes
    sdk.deployments.undeploy("eats", "eta-live", reason="retired")
    sdk.models.delete("eats", "eta")
