"""The ASGI app in process: a failing shadow never touches the response nor the served version's error count, and
its failure is counted as a shadow error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from serving_models import signature, train_tiny, write_tree_files

from bottega.serving.app import ServingApp
from bottega.serving.features.join import FeatureJoiner
from bottega.serving.features.plan import FeaturePlan
from bottega.serving.metrics import ServingMetrics
from bottega.serving.routing import LoadedModel, Route, ServingState
from bottega.serving.runtimes.base import PredictionFailed, Runtime
from bottega.serving.runtimes.onnx import OnnxRuntime
from bottega.serving.settings import ServingSettings


class Broken(Runtime):
    """A model whose every prediction fails (what a buggy custom model does)."""

    flavor: ClassVar[str] = "python"

    def __init__(self, n_inputs: int) -> None:
        self.n_inputs = n_inputs

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        raise PredictionFailed("predict raised ValueError: boom")

    def close(self) -> None:
        return None


def call(app: ServingApp, body: bytes) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/v1/models/eta:predict", "method": "POST", "headers": []}
        await app(scope, receive, send)
        await asyncio.gather(*app._shadows)  # let the shadow finish before the loop closes

    asyncio.run(run())
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_a_failing_shadow_is_counted_apart_and_never_answers(tmp_path: Path) -> None:
    model = train_tiny("binary")
    sig = signature("binary", model.n_features)
    files = write_tree_files(model, tmp_path / "v1")
    plan = FeaturePlan.build(sig, None, {})
    served = LoadedModel("p", "eta", 1, OnnxRuntime(files["model.onnx"], task="binary", signature=sig), plan, sig,
                         "probability")  # fmt: skip
    shadow = LoadedModel("p", "eta", 2, Broken(model.n_features), plan, sig, "probability", blocking=True)
    app = ServingApp(ServingSettings())
    app.metrics = ServingMetrics()
    app.joiner = FeatureJoiner(None, timeout_s=0.05)
    app.state = ServingState.of({("p", "eta"): Route("p", "eta", 1, (served,), (100,), (shadow,))}, 1)
    row = {f"f{i}": float(v) for i, v in enumerate(np.nan_to_num(model.features[0]))}

    status, body = call(app, json.dumps({"instances": [row]}).encode())

    assert status == 200
    assert body["version"] == 1
    errors = app.metrics.errors
    assert errors.labels("eta", "shadow-error")._value.get() == 1
    assert errors.labels("eta", "model-error")._value.get() == 0


def test_a_multiclass_answer_names_the_classes_and_each_rows_most_probable(tmp_path: Path) -> None:
    """The signature's classes (in the label's own type) come back with the probabilities, and per row the label of
    the most probable class; a signature without classes answers as before."""
    model = train_tiny("multiclass")
    files = write_tree_files(model, tmp_path / "v1")
    rows = [{f"f{i}": float(v) for i, v in enumerate(np.nan_to_num(r))} for r in model.features[:8]]
    bodies = {}
    for named in (True, False):
        sig = signature("multiclass", model.n_features)
        if named:
            sig["outputs"][0]["classes"] = [0.5, 1.0, 1.5]
        runtime = OnnxRuntime(files["model.onnx"], task="multiclass", signature=sig)
        served = LoadedModel("p", "eta", 1, runtime, FeaturePlan.build(sig, None, {}), sig, "probabilities",
                             classes=(0.5, 1.0, 1.5) if named else ())  # fmt: skip
        app = ServingApp(ServingSettings())
        app.metrics = ServingMetrics()
        app.joiner = FeatureJoiner(None, timeout_s=0.05)
        app.state = ServingState.of({("p", "eta"): Route("p", "eta", 1, (served,), (100,))}, 1)
        status, bodies[named] = call(app, json.dumps({"instances": rows}).encode())
        assert status == 200
    body = bodies[True]
    assert body["classes"] == [0.5, 1.0, 1.5]
    expected = [[0.5, 1.0, 1.5][int(np.argmax(p))] for p in body["predictions"]]
    assert body["predicted_classes"] == expected
    assert len(set(expected)) > 1  # the rows do not all land in one class
    assert "classes" not in bodies[False]
    assert "predicted_classes" not in bodies[False]
