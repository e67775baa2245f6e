"""The snippets of docs/feature_store.md and docs/serving.md run, as written, against a real `bottega server` and a
real `bottega serve`, so the pages cannot rot.

A newcomer's workspace: HOME is a fresh folder (so the pages' `~/.bottega/...` is the server's home), the working
directory holds the data the pages read (`data/orders.parquet` of restaurant orders in November 2026, as pandas
writes it, and `labels.parquet`), and the model the serving page serves (`late_delivery`, versions 1 to 4 on the
page's features) is registered between the two pages, as training would. The blocks run in page order following
the rules of tests/support/doc_snippets.py; URLs of the pages' default ports point at the processes started here,
and `curl` fails on an HTTP error (`--fail-with-body`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from doc_snippets import Snippet, snippets
from live_server import BIN, LiveServer, live_server
from live_serving import live_serving
from serving_models import ensure_model, train_tiny, write_tree_files

from bottega.sdk import Client
from bottega.serving.predlog.spool import read_spool

DOCS = Path(__file__).resolve().parents[2] / "docs"
PRELUDE = 'curl() { command curl --fail-with-body --silent --show-error "$@"; }\n'
SIGNATURE: dict[str, Any] = {
    "inputs": [{"name": "distance_km", "type": "float64"}, {"name": "hour", "type": "int64"}],
    "store_features": ["eats:daily_prep:avg_prep", "eats:daily_prep:n_orders"],
    "outputs": [{"name": "probability", "type": "float64"}],
}


@dataclass
class Workspace:
    home: Path
    work: Path
    api: LiveServer
    urls: dict[str, str] = field(default_factory=dict)
    """page text -> what it becomes here (the pages' default ports)."""

    def env(self) -> dict[str, str]:
        return {
            **self.api.env(),
            "HOME": str(self.home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **({"BOTTEGA_SERVE_URL": self.urls["http://127.0.0.1:8701"]} if self.urls else {}),
        }

    def text(self, snippet: Snippet) -> str:
        text = snippet.text
        for written, actual in self.urls.items():
            text = text.replace(written, actual)
        return text


def write_data(work: Path) -> None:
    """Orders of 20 restaurants from 2026-10-25 to 2026-11-09 and late-delivery labels in November (UTC, ns)."""
    rng = np.random.default_rng(7)
    n = 4000
    start = pd.Timestamp("2026-10-25", tz="UTC")
    orders = pd.DataFrame(
        {
            "restaurant_id": rng.integers(1, 21, n),
            "ordered_at": start + pd.to_timedelta(rng.integers(0, 15 * 24 * 3600, n), unit="s"),
            "prep_time": rng.gamma(4.0, 4.0, n).round(1),
        }
    )
    (work / "data").mkdir(parents=True)
    orders.to_parquet(work / "data" / "orders.parquet")
    labels = pd.DataFrame(
        {
            "restaurant_id": rng.integers(1, 21, 300),
            "timestamp": pd.Timestamp("2026-11-02", tz="UTC") + pd.to_timedelta(rng.integers(0, 6 * 86400, 300), "s"),
            "late": rng.random(300) < 0.3,
        }
    )
    labels.to_parquet(work / "labels.parquet")


def register_late_delivery(ws: Workspace) -> None:
    """Versions 1-4 of `late_delivery` on the pages' features; `candidate` -> 3."""
    with Client(ws.api.url, ws.api.token) as client:
        ensure_model(client, "eats", "late_delivery")
        for seed in range(4):
            files = write_tree_files(train_tiny("binary", n_features=4, seed=seed), ws.home / f"model-{seed}")
            client.models.register_version(
                "eats",
                "late_delivery",
                "onnx",
                {name: str(path) for name, path in files.items()},
                signature=SIGNATURE,
                evaluation={"task": "binary"},
                lineage={"flavors": {"onnx": "model.onnx", "xgboost": "model.ubj"}},
            )
        client.models.set_alias("eats", "late_delivery", "candidate", 3)


def run_page(
    ws: Workspace, page: str, patch: pytest.MonkeyPatch, before: Callable[[Snippet], None] | None = None
) -> tuple[dict[str, Any], list[Snippet]]:
    """Run the page's blocks; returns the page's Python namespace and the blocks that ran."""
    namespace: dict[str, Any] = {"__name__": f"docs.{page}"}
    ran: list[Snippet] = []
    for key in [k for k in os.environ if k.startswith("BOTTEGA_")]:
        patch.delenv(key)
    for key, value in ws.env().items():
        patch.setenv(key, value)
    patch.chdir(ws.work)
    for snippet in snippets(DOCS / page):
        if snippet.kind == "file":
            target = ws.work / str(snippet.file)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(snippet.text)
        if snippet.kind != "run":
            continue
        if before is not None:
            before(snippet)
        text = ws.text(snippet)
        if snippet.lang == "bash":
            run_bash(ws, snippet, text)
        else:
            try:
                exec(compile(text, snippet.where, "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{snippet.where} failed: {exc!r}\n{text}") from exc
        ran.append(snippet)
    return namespace, ran


def run_bash(ws: Workspace, snippet: Snippet, text: str) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", PRELUDE + text],
        cwd=ws.work,
        env=ws.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{snippet.where} exited {done.returncode}\n{text}\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    work = tmp_path / "work"
    write_data(work)
    with live_server(tmp_path / ".bottega") as api:
        yield Workspace(home=tmp_path, work=work, api=api)


def test_feature_store_and_serving_pages_run_as_written(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace
    features, ran = run_page(ws, "feature_store.md", monkeypatch)
    assert len(ran) >= 10, [s.where for s in ran]
    training = features["training"]
    assert training.num_rows == 300
    assert training.column("daily_prep__avg_prep").null_count < 300
    assert (
        features["joined"].column("daily_prep__avg_prep").to_pylist()
        == training.column("daily_prep__avg_prep").to_pylist()
    )
    assert (ws.home / ".bottega" / "offline").is_dir()
    assert not (ws.work / "~").exists()

    register_late_delivery(ws)
    with live_serving(ws.api, ws.home / "serve") as serving:
        host = serving.url.removeprefix("http://")
        ws.urls = {"http://127.0.0.1:8701": serving.url, "localhost:8701": host, "http://127.0.0.1:8700": ws.api.url}
        started = datetime.now(UTC) - timedelta(seconds=1)
        page, ran = run_page(ws, "serving.md", monkeypatch, before=lambda s: caught_up(ws, serving.url, s))
    assert len(ran) >= 6, [s.where for s in ran]
    # the replay joins the offline values the feature-store page wrote: fresh at 2026-11-07T19:00Z
    assert page["replay"].as_of is not None
    assert page["replay"].feature_status == [dict.fromkeys(SIGNATURE["store_features"], "FRESH")]
    records = list(read_spool(ws.home / ".bottega" / "serving" / "spool"))
    assert {r["deployment"] for r in records} == {"late-delivery"}
    assert min(r["ts_us"] for r in records) >= started.timestamp() * 1e6
    assert sum(r["as_of_us"] is not None for r in records) >= 3  # curl, `bottega predict` and the SDK replay


def caught_up(ws: Workspace, serve_url: str, snippet: Snippet) -> None:
    """Before a block that calls the service: wait until it serves every deployment the API has."""
    if not any(mark in snippet.text for mark in (":8701", "bottega predict", "PredictionClient(")):
        return
    with Client(ws.api.url, ws.api.token) as client:
        wanted = sorted(f"eats/{d.name}" for d in client.deployments.list("eats", kind="online").items)
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while datetime.now(UTC) < deadline:
        served = httpx.get(f"{serve_url}/readyz", timeout=5).json().get("deployments", [])
        if served == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"bottega serve did not pick up {wanted} before {snippet.where}")
