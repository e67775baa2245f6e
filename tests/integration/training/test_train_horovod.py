"""PyTorch training with Horovod: `compute: {kind: horovod, processes: 2}` runs `horovodrun -np 2 -H localhost:2
--gloo` for real, registers a version with a validated ONNX flavor and reaches the single-process run's quality on
the same data; a failing worker's traceback reaches the caller; specs and installs that cannot work are refused
before any run exists. The API is the in-process app on SQLite; the inputs are request features (no store join)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import harness, migrated_sqlite

from bottega.core.extras import MissingExtra
from bottega.sdk import Client
from bottega.training.runner import TrainResult, train
from bottega.training.spec import SpecError
from bottega.training.torch.launch import TrainingFailed, horovodrun_path, launch

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 1600
CUT = T0 + timedelta(minutes=int(ROWS * 0.75))
INPUTS = [f"x{i}" for i in range(6)]
TOLERANCE = 0.02
"""As for DDP: a 2-process Horovod run's eval AUC and log loss stay within this of the single-process run."""


@dataclass
class World:
    sdk: Client
    labels: Path

    def spec(self, name: str, **over: Any) -> dict[str, Any]:
        """A binary pytorch spec on request features; keyword arguments replace top-level fields."""
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": name,
            "seed": 7,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "label_column": "label",
                "request_features": INPUTS,
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {
                "type": "pytorch",
                "task": "binary",
                "architecture": {"kind": "mlp", "hidden": [16, 8]},
                "epochs": 5,
                "batch_size": 64,
                "lr": 0.01,
                "early_stopping_patience": 3,
            },
            "evaluation": {"permutation_repeats": 0},
            "gates": ["auc >= 0.85"],
        }
        base.update(over)
        return base


def write_labels(path: Path) -> Path:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=6, n_informative=4, n_redundant=1, class_sep=1.2, random_state=3
    )
    x0 = x[:, 0] * 50.0 + 200.0  # far from standard scale: the network standardizes it
    x0[::17] = np.nan
    columns: dict[str, Any] = {
        "customer_id": np.arange(ROWS, dtype=np.int64),
        "timestamp": pa.array([T0 + timedelta(minutes=i) for i in range(ROWS)], pa.timestamp("us", tz="UTC")),
    }
    columns.update({name: pa.array(x0 if i == 0 else x[:, i], from_pandas=True) for i, name in enumerate(INPUTS)})
    columns["label"] = y.astype(np.int64)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("horovod-training")
    url = migrated_sqlite(root)
    with harness(url, root / "home") as api:
        yield World(sdk=api.sdk(api.project("shop")), labels=write_labels(root / "labels.parquet"))


def test_horovod_with_two_processes_reaches_the_local_quality(world: World) -> None:
    sdk = world.sdk
    local = train(sdk, world.spec("churn-local"))
    result: TrainResult = train(sdk, world.spec("churn-horovod", compute={"kind": "horovod", "processes": 2}))

    assert abs(result.metrics["auc"] - local.metrics["auc"]) <= TOLERANCE, (result.metrics, local.metrics)
    assert abs(result.metrics["log_loss"] - local.metrics["log_loss"]) <= TOLERANCE, (result.metrics, local.metrics)
    assert result.candidate, result.gates
    assert result.flavor == "onnx", result.warnings
    run = sdk.runs.get("shop", result.run_id)
    assert run.status == "finished"
    assert (run.params["compute.kind"], run.params["compute.processes"]) == ("horovod", "2")
    history = sdk.runs.metric_history("shop", result.run_id, "eval.auc")
    assert [p.step for p in history] == list(range(result.rounds_run))  # rank 0's epochs, logged as they came
    version = sdk.models.get_version("shop", "churn-horovod", result.version)
    assert version.flavor == "onnx"
    assert version.lineage["flavors"] == {"torch": "model.pt", "onnx": "model.onnx"}
    evaluation = version.evaluation
    assert evaluation["compute"] == {"kind": "horovod", "processes": 2, "backend": "gloo", "world_size": 2}
    assert evaluation["onnx"]["valid"]
    assert evaluation["onnx"]["max_abs_diff"] <= 1e-5
    assert sdk.models.get("shop", "churn-horovod").aliases["candidate"] == result.version


def test_a_failing_horovod_worker_fails_with_its_traceback(tmp_path: Path) -> None:
    """horovodrun with 2 workers on a folder without a job: the error carries one rank's traceback."""
    with pytest.raises(TrainingFailed) as caught:
        launch("horovod", 2, tmp_path)
    message = str(caught.value)
    assert message.startswith("horovodrun with 2 processes exited with 1:"), message
    assert "Traceback (most recent call last):" in message
    assert "FileNotFoundError: [Errno 2] No such file or directory" in message
    assert "job.json" in message
    assert (tmp_path / "horovodrun.log").exists()


def test_horovod_specs_that_cannot_work_fail_before_any_run(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    xgb = world.spec("never", compute={"kind": "horovod", "processes": 2})
    xgb["model"] = {"type": "xgboost", "task": "binary"}
    with pytest.raises(SpecError, match=r"compute\.kind: compute 'horovod' trains PyTorch models"):
        train(world.sdk, xgb)
    with pytest.raises(SpecError, match=r"compute\.workers: horovod takes `compute\.processes`"):
        train(world.sdk, world.spec("never", compute={"kind": "horovod", "workers": 2}))
    with pytest.raises(SpecError, match=r"compute\.processes: Input should be greater than or equal to 1"):
        train(world.sdk, world.spec("never", compute={"kind": "horovod", "processes": 0}))

    assert horovodrun_path().parent == Path(sys.executable).parent
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))  # no horovodrun next to this one
    with pytest.raises(MissingExtra, match=r"run make setup \(it builds Horovod\)"):
        train(world.sdk, world.spec("never", compute={"kind": "horovod", "processes": 2}))
    assert world.sdk.runs.list("shop", limit=200).total == before
