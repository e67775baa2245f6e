"""`train(spec)` with PyTorch end to end through the API (in-process app on SQLite, DuckDB offline store): a
point-in-time training set, the local MLP with per-epoch metrics, a registered version with a validated ONNX flavor,
a user module, reproducibility, DDP with torchrun and with Spark's TorchDistributor (2 processes each, reaching the
single-process quality), and invalid torch specs refused before any run exists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import ApiHarness, harness, migrated_sqlite
from customer_stats import customer_stats_schema, register_customer_stats

from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.training.runner import TrainResult, train
from bottega.training.spec import SpecError
from bottega.training.torch.artifacts import load_model
from bottega.training.torch.nets import predict

# 4 store features (`shop:customer_stats:f0..f3`, f0 with nulls) and 2 request features (x4, x5) from
# make_classification; binary label `label`. Rows are a minute apart; the cut leaves the last quarter for eval.
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 2000
CUT = T0 + timedelta(minutes=int(ROWS * 0.75))
STORE_FEATURES = [f"shop:customer_stats:f{i}" for i in range(4)]
INPUTS = ["x4", "x5", *(f"customer_stats__f{i}" for i in range(4))]
SCHEMA = customer_stats_schema()
DDP_TOLERANCE = 0.02
"""A 2-process DDP run's eval AUC and log loss stay within this of the single-process run on the same data."""


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    root: Path
    offline: Path
    labels: Path

    def spec(self, name: str, **over: Any) -> dict[str, Any]:
        """A binary pytorch spec; keyword arguments replace top-level fields."""
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": name,
            "seed": 7,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "timestamp_column": "timestamp",
                "label_column": "label",
                "features": STORE_FEATURES,
                "request_features": ["x4", "x5"],
                "offline_root": str(self.offline),
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {
                "type": "pytorch",
                "task": "binary",
                "architecture": {"kind": "mlp", "hidden": [16, 8], "activation": "relu"},
                "epochs": 6,
                "batch_size": 64,
                "lr": 0.01,
                "early_stopping_patience": 3,
            },
            "evaluation": {"permutation_repeats": 1},
            "gates": ["auc >= 0.85"],
        }
        base.update(over)
        return base


def generate(root: Path) -> tuple[Path, Path]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=6, n_informative=4, n_redundant=1, class_sep=1.2, random_state=3
    )
    ids = np.arange(ROWS, dtype=np.int64)
    at = [T0 + timedelta(minutes=i) for i in range(ROWS)]
    f0 = x[:, 0] * 50.0 + 200.0  # far from standard scale: the network standardizes it
    f0[::17] = np.nan
    offline = root / "offline"
    columns: dict[str, Any] = {"customer_id": ids}
    columns.update({f"f{i}": pa.array(x[:, i] if i else f0, from_pandas=True) for i in range(4)})
    columns["event_time"] = pa.array([t - timedelta(hours=1) for t in at], pa.timestamp("us", tz="UTC"))
    OfflineStore(offline).upsert(SCHEMA, pa.table(columns))
    labels = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "x4": x[:, 4],
            "x5": x[:, 5],
            "label": y.astype(np.int64),
        }
    )
    path = root / "labels.parquet"
    pq.write_table(labels, path)
    return offline, path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("torch-training")
    url = migrated_sqlite(root)
    with harness(url, root / "home") as api:
        sdk = api.sdk(api.project("shop"))
        register_customer_stats(sdk)
        offline, labels = generate(root)
        yield World(api=api, sdk=sdk, root=root, offline=offline, labels=labels)


@pytest.fixture(scope="module")
def local(world: World) -> TrainResult:
    """The single-process run every other run is compared with."""
    return train(world.sdk, world.spec("churn-mlp"))


ARTIFACTS = {
    "model.pt",
    "model.json",
    "model.onnx",
    "evaluation.json",
    "feature_report.json",
    "history.json",
    "spec.yaml",
}


def test_local_mlp_registers_a_validated_onnx_version(world: World, local: TrainResult, tmp_path: Path) -> None:
    sdk = world.sdk
    assert local.candidate, local.gates
    assert local.flavor == "onnx"
    run = sdk.runs.get("shop", local.run_id)
    assert run.status == "finished"
    assert run.tags["trainer"] == "pytorch"
    assert run.params["model.architecture.hidden"] == "[16, 8]"
    assert run.params["compute.kind"] == "local"
    assert run.params["model.lr"] == "0.01"
    history = sdk.runs.metric_history("shop", local.run_id, "eval.auc")
    assert [p.step for p in history] == list(range(local.rounds_run))
    assert len(sdk.runs.metric_history("shop", local.run_id, "train.loss")) == local.rounds_run
    assert {a.path for a in sdk.runs.list_artifacts("shop", local.run_id).items} == ARTIFACTS

    version = sdk.models.get_version("shop", "churn-mlp", local.version)
    assert version.flavor == "onnx"
    assert version.lineage["flavors"] == {"torch": "model.pt", "onnx": "model.onnx"}
    assert version.lineage["trainer"] == "pytorch"
    assert version.signature.store_features == STORE_FEATURES
    assert [(f.name, f.type) for f in version.signature.inputs] == [("x4", "float64"), ("x5", "float64")]
    evaluation = version.evaluation
    assert evaluation["trainer"] == "pytorch"
    assert evaluation["onnx"]["valid"]
    assert evaluation["onnx"]["max_abs_diff"] <= 1e-5
    assert set(evaluation["importance"]["permutation"]) == set(INPUTS)
    assert evaluation["network"]["parameters"] == 6 * 16 + 16 + 16 * 8 + 8 + 8 + 1
    assert sdk.models.get("shop", "churn-mlp").aliases["candidate"] == local.version

    files = sdk.models.download("shop", "churn-mlp", local.version, tmp_path)
    net = load_model(files["model.pt"].parent)
    rows = np.random.default_rng(0).normal(size=(300, 6))
    rows[:, 2] = rows[:, 2] * 50.0 + 200.0
    rows[::5, 2] = np.nan  # a missing store value: imputed with the training mean
    session = ort.InferenceSession(str(files["model.onnx"]), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"input": rows.astype(np.float32)})[1][:, 1]
    assert np.abs(predict(net, rows) - exported).max() <= 1e-5


def test_same_spec_and_seed_give_the_same_metrics(world: World, local: TrainResult) -> None:
    again = train(world.sdk, world.spec("churn-mlp"))
    assert again.run_id != local.run_id
    assert again.metrics == local.metrics
    assert again.best_iteration == local.best_iteration
    a = world.sdk.runs.metric_history("shop", local.run_id, "eval.loss")
    b = world.sdk.runs.metric_history("shop", again.run_id, "eval.loss")
    assert [p.value for p in a] == [p.value for p in b]


USER_MODULE = """
import torch
from torch import nn


class Gated(nn.Module):
    def __init__(self, n_inputs, n_outputs, width=8):
        super().__init__()
        self.value = nn.Linear(n_inputs, width)
        self.gate = nn.Linear(n_inputs, width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x):
        return self.out(torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x)))
"""


def test_a_user_module_trains_and_registers(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"shop_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = world.spec("churn-gated", gates=["auc >= 0.8"])
    spec["model"] = {**spec["model"], "architecture": {"module": f"{name}:Gated", "params": {"width": 12}}}
    result = train(world.sdk, spec)
    assert result.candidate, result.gates
    assert result.flavor == "onnx", result.warnings
    run = world.sdk.runs.get("shop", result.run_id)
    assert run.params["model.architecture.module"] == f"{name}:Gated"
    assert run.params["model.architecture.params.width"] == "12"
    evaluation = world.sdk.models.get_version("shop", "churn-gated", result.version).evaluation
    assert evaluation["network"]["architecture"]["module"] == f"{name}:Gated"


def _check_distributed(world: World, local: TrainResult, result: TrainResult, kind: str) -> None:
    assert abs(result.metrics["auc"] - local.metrics["auc"]) <= DDP_TOLERANCE, (result.metrics, local.metrics)
    assert abs(result.metrics["log_loss"] - local.metrics["log_loss"]) <= DDP_TOLERANCE
    assert result.flavor == "onnx", result.warnings
    run = world.sdk.runs.get("shop", result.run_id)
    assert (run.params["compute.kind"], run.params["compute.processes"]) == (kind, "2")
    history = world.sdk.runs.metric_history("shop", result.run_id, "eval.auc")
    assert [p.step for p in history] == list(range(result.rounds_run))  # rank 0's epochs, logged as they came
    evaluation = world.sdk.models.get_version("shop", result.model, result.version).evaluation
    assert evaluation["compute"]["kind"] == kind
    assert evaluation["compute"]["backend"] in ("gloo", "nccl")


def test_torchrun_with_two_processes_reaches_the_local_quality(world: World, local: TrainResult) -> None:
    result = train(world.sdk, world.spec("churn-ddp", compute={"kind": "torchrun", "processes": 2}))
    _check_distributed(world, local, result, "torchrun")


@pytest.mark.spark
def test_torch_distributor_with_two_processes_reaches_the_local_quality(
    world: World, local: TrainResult, spark: Any
) -> None:
    result = train(world.sdk, world.spec("churn-spark", compute={"kind": "torch_distributor", "processes": 2}))
    _check_distributed(world, local, result, "torch_distributor")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": {"hidden": [16, -1]}}, "model.architecture.mlp.hidden[1]"),
        ({"optimizer": "lbfgs"}, "model.optimizer"),
        ({"epochs": 0}, "model.epochs"),
        ({"architecture": "no_such_nets_pkg.tab:Net"}, "model.architecture.module: cannot import 'no_such_nets_pkg"),
        ({"num_boost_round": 3}, "model.num_boost_round: Extra inputs are not permitted"),
    ],
)
def test_invalid_torch_specs_fail_before_any_run(world: World, change: dict[str, Any], message: str) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    spec = world.spec("never")
    spec["model"] = {**spec["model"], **change}
    with pytest.raises(SpecError) as caught:
        train(world.sdk, spec)
    assert message in caught.value.detail
    with pytest.raises(SpecError, match=r"compute\.processes: Input should be greater than or equal to 1"):
        train(world.sdk, world.spec("never", compute={"kind": "torchrun", "processes": 0}))
    assert world.sdk.runs.list("shop", limit=200).total == before
