"""No acknowledged prediction is lost: `kill -9` of a two-worker `bottega serve` under load, then a restart on the same
spool, and every request that got a 200 is in the project's Kafka topic (the real broker)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx
import numpy as np
from live_server import live_server
from live_serving import live_serving
from private_kafka import consume_keys
from serving_models import register_tree, train_tiny

from bottega.sdk import Client
from bottega.serving.predlog.log import default_topic


def test_kill_9_under_load_loses_no_acknowledged_prediction(
    tmp_path: Path, kafka_bootstrap: str, unique_name: str
) -> None:
    project = unique_name.replace("_", "-")
    model = train_tiny("binary")
    instance = {f"f{j}": float(v) for j, v in enumerate(np.nan_to_num(model.features[0]))}
    env = {
        "BOTTEGA_SPOOL_DIR": str(tmp_path / "spool"),
        "BOTTEGA_SERVE_CACHE": str(tmp_path / "cache"),
        "BOTTEGA_PREDICTION_LOG_KAFKA": kafka_bootstrap,
    }
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                request_id = uuid.uuid4().hex
                try:
                    response = http.post(url, json={"instances": [instance]}, headers={"x-request-id": request_id})
                except httpx.HTTPError:
                    continue  # the service died mid-request: not acknowledged
                if response.status_code == 200:
                    with lock:
                        acked.append(request_id)

    with live_server(tmp_path / "home") as api, Client(api.url, api.token) as client:
        client.projects.create(project)
        register_tree(client, project, "eta", model, tmp_path / "v1")
        client.deployments.create(project, "eta", {"targets": [{"model": "eta", "version": 1, "weight": 100}]})
        with live_serving(api, tmp_path / "serve", workers=2, extra_env=env) as serving:
            # each worker follows the feed on its own: wait until 20 requests in a row (spread over both) succeed
            serving.wait_for(
                lambda s: all(s.predict("eta", [instance]).status_code == 200 for _ in range(20)),
                timeout=60,
                what="eta served by both workers",
            )
            # two workers, one /metrics: the counts of both processes add up
            metrics = httpx.get(f"{serving.url}/metrics", timeout=5).text
            lines = [x for x in metrics.splitlines() if x.startswith("bottega_predict_requests_total{")]
            assert sum(float(x.rsplit(" ", 1)[1]) for x in lines) >= 20, lines
            url = f"{serving.url}/v1/models/eta:predict"
            threads = [threading.Thread(target=load, args=(url,), daemon=True) for _ in range(4)]
            for thread in threads:
                thread.start()
            serving.wait_for(lambda s: len(acked) >= 1500, timeout=60, what="1500 acknowledged predictions")
            serving.kill9()
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert len(acked) >= 1500

        # A new replica on the same spool adopts the dead workers' folders and ships them.
        with live_serving(api, tmp_path / "serve2", extra_env=env):
            keys = consume_keys(
                kafka_bootstrap, default_topic(project), expect=len(acked) + 1, group=unique_name, timeout_s=60
            )
    missing = set(acked) - set(keys)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions never reached Kafka"
