"""The prediction service end to end: a real `bottega server` and a real `bottega serve` process following it.

Deploys, traffic changes, pins, sticky keys, shadows, rollbacks and undeploys take effect without a restart and
without failing a request in flight; bad requests get problem+json naming the field; a corrupt artifact is refused
while the previous version keeps serving.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from live_server import BIN, LiveServer, live_server
from live_serving import LiveServing, live_serving
from serving_models import TinyModel, register_pyml, register_tree, train_tiny, write_pyml

from bottega.core.errors import InvalidInput, NotFound
from bottega.sdk import Client
from bottega.sdk.predict import PredictionClient
from bottega.serving.predlog.spool import read_spool

PROJECT = "eats"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path / "home") as server:
        yield server


@pytest.fixture
def client(api: LiveServer) -> Iterator[Client]:
    with Client(api.url, api.token) as sdk:
        sdk.projects.create(PROJECT)
        yield sdk


def rows(model: TinyModel, n: int) -> list[dict[str, Any]]:
    values = np.nan_to_num(model.features[:n], nan=0.0)
    return [{f"f{j}": float(v) for j, v in enumerate(row)} for row in values]


def served_version(serving: LiveServing, deployment: str, instance: dict[str, Any]) -> int | None:
    response = serving.predict(deployment, [instance])
    return int(response.json()["version"]) if response.status_code == 200 else None


class Hammer:
    """Background requests during changes: every answer must be a 200."""

    def __init__(self, serving: LiveServing, deployment: str, instance: dict[str, Any]) -> None:
        self.serving, self.deployment, self.instance = serving, deployment, instance
        self.codes: Counter[int] = Counter()
        self.versions: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            url = f"{self.serving.url}/v1/models/{self.deployment}:predict"
            while not self._stop.is_set():
                response = http.post(url, json={"instances": [self.instance]})
                self.codes[response.status_code] += 1
                if response.status_code == 200:
                    self.versions[response.json()["version"]] += 1

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def test_deploy_route_shadow_roll_back_and_undeploy_live(api: LiveServer, client: Client, tmp_path: Path) -> None:
    models = [train_tiny("binary", seed=s) for s in (0, 1, 2)]
    for i, model in enumerate(models):
        assert register_tree(client, PROJECT, "eta", model, tmp_path / f"v{i + 1}").version == i + 1
    spool = tmp_path / "spool"
    env = {"BOTTEGA_SPOOL_DIR": str(spool), "BOTTEGA_SERVE_CACHE": str(tmp_path / "cache")}
    with live_serving(api, tmp_path / "serve", extra_env=env) as serving:
        serving.wait_for(lambda s: s.ready()["ready"] is True, what="ready")  # nothing deployed: ready, serving nothing
        assert serving.predict("eta", rows(models[0], 1)).status_code == 404

        client.deployments.create(PROJECT, "eta", {"targets": [{"model": "eta", "version": 1, "weight": 100}]})
        took = serving.wait_for(lambda s: served_version(s, "eta", rows(models[0], 1)[0]) == 1, what="v1 served")
        assert took < 10

        batch = rows(models[0], 20)
        response = serving.predict("eta", batch, x_request_id="req-1")
        assert response.status_code == 200
        body = response.json()
        assert (body["deployment"], body["model"], body["version"], body["request_id"]) == ("eta", "eta", 1, "req-1")
        assert response.headers["x-bottega-version"] == "eta:1"
        matrix = np.array([[r[f"f{j}"] for j in range(models[0].n_features)] for r in batch])
        np.testing.assert_allclose(body["predictions"], models[0].native(matrix), atol=1e-5)
        assert body["feature_status"] == [{}] * 20

        instance = batch[0]
        with Hammer(serving, "eta", instance) as hammer:
            client.deployments.set_traffic(PROJECT, "eta", {"eta:1": 50, "eta:2": 50}, reason="canary")
            serving.wait_for(lambda s: len(hammer.versions) == 2, what="both versions served")
            assert serving.predict("eta", [instance], x_bottega_version="2").json()["version"] == 2
            sticky = {serving.predict("eta", [instance], x_bottega_routing_key="user-7").json()["version"]
                      for _ in range(20)}  # fmt: skip
            assert len(sticky) == 1

            current = client.deployments.get(PROJECT, "eta")
            spec = {**current.spec, "shadows": [{"model": "eta", "version": 3}]}
            client.deployments.update(PROJECT, "eta", spec, expected_revision=current.revision, reason="shadow v3")
            serving.wait_for(
                lambda s: s.predict("eta", [instance], x_bottega_version="eta:3").status_code == 200, what="shadow"
            )
            shadowed = serving.predict("eta", [instance], x_request_id="shadowed-1")
            assert shadowed.json()["version"] in (1, 2)  # a shadow's answer is never returned

            client.deployments.rollback(PROJECT, "eta", reason="back to the canary without shadow")
            client.deployments.set_traffic(PROJECT, "eta", {"eta:2": 100}, reason="promote v2")
            serving.wait_for(lambda s: s.ready()["deployments"] == ["eats/eta"] and all(
                served_version(s, "eta", instance) == 2 for _ in range(10)), what="v2 only")  # fmt: skip
        assert set(hammer.codes) == {200}, hammer.codes
        assert sum(hammer.codes.values()) > 20

        metrics = httpx.get(f"{serving.url}/metrics").text
        assert 'bottega_predict_requests_total{code="200",deployment="eta",version="eta:2"}' in metrics
        assert "bottega_predict_latency_seconds_bucket" in metrics

        client.deployments.undeploy(PROJECT, "eta", reason="done")
        serving.wait_for(lambda s: s.predict("eta", [instance]).status_code == 404, what="undeployed")

    records = list(read_spool(spool))
    logged = [r for r in records if r["request_id"] == "shadowed-1"]
    assert sorted(r["shadow"] for r in logged) == [False, True]
    assert {r["version"] for r in logged if r["shadow"]} == {3}
    first = next(r for r in records if r["request_id"] == "req-1:0")
    assert first["features"] == pytest.approx(list(batch[0].values()))  # the served vector, in input order
    assert (first["deployment"], first["version"]) == ("eta", 1)
    assert first["latency_us"] > 0


def test_bad_requests_get_problems_naming_the_field(api: LiveServer, client: Client, tmp_path: Path) -> None:
    model = train_tiny("binary")
    register_tree(client, PROJECT, "eta", model, tmp_path / "v1")
    client.deployments.create(PROJECT, "eta", {"targets": [{"model": "eta", "version": 1, "weight": 100}]})
    env = {"BOTTEGA_SPOOL_DIR": str(tmp_path / "spool"), "BOTTEGA_SERVE_MAX_ROWS": "5"}
    with live_serving(api, tmp_path / "serve", extra_env=env) as serving:
        serving.wait_for(lambda s: s.ready()["ready"] and s.ready()["deployments"] == ["eats/eta"], what="ready")
        good = rows(model, 1)[0]
        url = f"{serving.url}/v1/models/eta:predict"

        def problem(response: httpx.Response, status: int) -> dict[str, Any]:
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == "application/problem+json"
            body: dict[str, Any] = response.json()
            return body

        assert "f3" in problem(serving.predict("eta", [{k: v for k, v in good.items() if k != "f3"}]), 422)["field"]
        mistyped = problem(serving.predict("eta", [{**good, "f1": "abc"}]), 422)
        assert "instances[0].f1" in mistyped["field"]
        problem(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
        problem(httpx.post(url, json={"rows": [good]}), 400)
        problem(serving.predict("eta", [good] * 6), 413)
        assert "served: eta" in problem(serving.predict("nope", [good]), 404)["detail"]
        problem(serving.predict("eta", [good], x_bottega_version="9"), 404)
        problem(httpx.get(url), 405)
        assert serving.predict("eta", [good]).status_code == 200

        # the SDK raises the API's error classes; the CLI prints the field to fix
        with PredictionClient(serving.url) as service:
            answer = service.predict("eta", [good], version="eta:1", request_id="sdk-1")
            assert (answer.version, answer.request_id, len(answer.predictions)) == (1, "sdk-1", 1)
            with pytest.raises(InvalidInput) as caught:
                service.predict("eta", [{**good, "f2": "x"}])
            assert caught.value.extra["field"] == "instances[0].f2"
            with pytest.raises(NotFound):
                service.predict("nope", [good])
            replay = service.predict("eta", [good], as_of=datetime(2026, 11, 1, 9, tzinfo=UTC))
            assert replay.as_of == "2026-11-01T09:00:00+00:00"  # no store features here: echoed, nothing joined
            assert replay.predictions == answer.predictions
            assert service.predict("eta", [good]).as_of is None
            with pytest.raises(InvalidInput) as caught:
                service.predict("eta", [good], as_of="yesterday")
            assert caught.value.extra["field"] == "as_of"
        env_cli = {**api.env(), "BOTTEGA_SERVE_URL": serving.url}
        done = subprocess.run(
            [str(BIN / "bottega"), "predict", "eta", "-i", json.dumps([good])], env=env_cli, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["version"] == 1
        replayed = subprocess.run(
            [str(BIN / "bottega"), "predict", "eta", "-i", json.dumps([good]), "--as-of", "2026-11-01T09:00:00Z"],
            env=env_cli, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["as_of"] == "2026-11-01T09:00:00+00:00"
        bad = subprocess.run(
            [str(BIN / "bottega"), "predict", "eta", "-i", json.dumps([{**good, "f2": "x"}])], env=env_cli,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert bad.returncode == 2
        assert "instances[0].f2" in bad.stderr


def test_a_corrupt_artifact_is_refused_and_the_old_version_keeps_serving(
    api: LiveServer, client: Client, tmp_path: Path
) -> None:
    good, bad = train_tiny("binary", seed=0), train_tiny("binary", seed=1)
    register_tree(client, PROJECT, "eta", good, tmp_path / "v1")
    v2 = register_tree(client, PROJECT, "eta", bad, tmp_path / "v2")
    onnx = next(a for a in v2.artifacts if a.path == "model.onnx")
    blob = api.home / "artifacts" / "blobs" / onnx.sha256[:2] / onnx.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))  # same size, different bytes

    client.deployments.create(PROJECT, "eta", {"targets": [{"model": "eta", "version": 1, "weight": 100}]})
    env = {"BOTTEGA_SPOOL_DIR": str(tmp_path / "spool"), "BOTTEGA_SERVE_CACHE": str(tmp_path / "cache")}
    with live_serving(api, tmp_path / "serve", extra_env=env) as serving:
        instance = rows(good, 1)[0]
        serving.wait_for(lambda s: served_version(s, "eta", instance) == 1, what="v1 served")
        client.deployments.set_traffic(PROJECT, "eta", {"eta:2": 100}, reason="bad upload")
        serving.wait_for(lambda s: "eats/eta" in s.ready()["errors"], what="the load error reported")
        ready = serving.ready()
        assert "model.onnx" in ready["errors"]["eats/eta"]
        assert ready["ready"] is True  # the deployment still has a loaded revision
        time.sleep(0.5)
        assert {served_version(serving, "eta", instance) for _ in range(10)} == {1}
        assert "bottega_model_load_failures_total" in httpx.get(f"{serving.url}/metrics").text

        client.deployments.rollback(PROJECT, "eta", reason="back to v1")
        serving.wait_for(lambda s: "eats/eta" not in s.ready()["errors"], what="the error cleared")


PYML = """
import json, os

def load(path):
    return json.loads(open(os.path.join(path, "weights.json")).read())

def predict(rows):
    return [2.0 * row["a"] + row["b"] for row in rows]
"""


def test_a_custom_python_model_crash_fails_only_that_model(api: LiveServer, client: Client, tmp_path: Path) -> None:
    import psutil

    tree = train_tiny("binary")
    register_tree(client, PROJECT, "eta", tree, tmp_path / "v1")
    folder = write_pyml(tmp_path / "pyml", PYML, extra={"weights.json": b"{}"})
    register_pyml(client, PROJECT, "custom", folder, [("a", "float64"), ("b", "int64")])
    client.deployments.create(PROJECT, "eta", {"targets": [{"model": "eta", "version": 1, "weight": 100}]})
    client.deployments.create(PROJECT, "custom", {"targets": [{"model": "custom", "version": 1, "weight": 100}]})
    env = {"BOTTEGA_SPOOL_DIR": str(tmp_path / "spool"), "BOTTEGA_SERVE_CACHE": str(tmp_path / "cache")}
    with live_serving(api, tmp_path / "serve", extra_env=env) as serving:
        serving.wait_for(lambda s: len(s.ready()["deployments"]) == 2, timeout=60, what="both deployments")
        answer = serving.predict("custom", [{"a": 1.5, "b": 2}, {"a": -1.0, "b": 0}])
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [5.0, -2.0]

        workers = [
            p
            for p in psutil.Process(serving.process.pid).children(recursive=True)
            if "pyml_worker" in " ".join(p.cmdline())
        ]
        assert len(workers) == 1, "one isolated worker process for the custom model"
        workers[0].kill()
        codes: Counter[int] = Counter()
        tree_codes: Counter[int] = Counter()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            codes[serving.predict("custom", [{"a": 1.0, "b": 1}]).status_code] += 1
            tree_codes[serving.predict("eta", rows(tree, 1)).status_code] += 1
        assert set(tree_codes) == {200}, tree_codes  # the other model never noticed
        assert set(codes) <= {200, 503}, codes
        assert serving.predict("custom", [{"a": 1.0, "b": 1}]).json()["predictions"] == [3.0]  # restarted
