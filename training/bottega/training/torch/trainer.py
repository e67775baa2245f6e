"""The PyTorch trainer as the runner calls it: checks before any run exists, run params, and the fit itself
(in this process for `compute: local`; with torchrun, TorchDistributor or horovodrun for the distributed computes).

Inputs are standardized with the training rows' means and standard deviations (a missing value becomes the mean),
regression targets with theirs; both are part of the network (see `nets.TabularNet`). `compute: local` is seeded:
the same spec, seed and data give the same weights and metrics. Distributed runs start from the same initial
weights and see the same global batch size; they reach about the local run's quality (see docs/training.md).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.core.extras import require

if TYPE_CHECKING:
    from bottega.sdk import Client
    from bottega.training.data import TrainingData
    from bottega.training.runner import Progress
    from bottega.training.spec import TrainingSpec
    from bottega.training.torch.loop import EpochCallback, LoopConfig
    from bottega.training.torch.nets import NetConfig, TabularNet


@dataclass
class TorchTrained:
    net: TabularNet
    config: NetConfig
    loop: LoopConfig
    best_iteration: int
    """the epoch whose weights were kept (the last one without early stopping)."""
    rounds_run: int
    """epochs run."""
    history: dict[str, list[float]] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)


def prepare(spec: TrainingSpec) -> None:
    """What must hold before any data is read or any run is created: the extras and the user module's class."""
    require("torch", "torch")
    require("onnx", "torch")
    require("onnxruntime", "torch")
    require("sklearn", "torch")
    if spec.compute.kind == "torch_distributor":
        require("pyspark", "spark")
    if spec.compute.kind == "horovod":
        from bottega.training.torch.launch import horovodrun_path

        horovodrun_path()
    architecture = spec.torch_model.architecture
    if architecture.kind == "module":
        from bottega.training.torch.nets import resolve_module

        resolve_module(architecture.module)


def net_config(spec: TrainingSpec, data: TrainingData) -> NetConfig:
    from bottega.training.torch.nets import NetConfig, standardization, target_scaling

    model = spec.torch_model
    mean, std = standardization(data.train.features)
    target_mean, target_std = target_scaling(data.train.label) if model.task == "regression" else (0.0, 1.0)
    classes = [str(c) for c in data.classes] if model.task == "multiclass" and data.classes else None
    return NetConfig(
        task=model.task,
        n_inputs=len(data.feature_names),
        n_outputs=len(classes) if classes else 1,
        architecture=model.architecture.model_dump(mode="json"),
        feature_names=list(data.feature_names),
        classes=classes,
        mean=mean,
        std=std,
        target_mean=target_mean,
        target_std=target_std,
    )


def loop_config(spec: TrainingSpec) -> LoopConfig:
    from bottega.training.torch.loop import LoopConfig

    model = spec.torch_model
    return LoopConfig(
        epochs=model.epochs,
        batch_size=model.batch_size,
        lr=model.lr,
        optimizer=model.optimizer,
        weight_decay=model.weight_decay,
        patience=model.early_stopping_patience,
        seed=spec.seed,
    )


def run_params(spec: TrainingSpec, data: TrainingData) -> dict[str, str | int | float | bool]:
    """The run's params: the model section flattened (`model.architecture.hidden`, `model.lr`, ...), the compute,
    the seed, the split and the row counts."""
    model = spec.torch_model
    params: dict[str, str | int | float | bool] = {
        "trainer": model.type,
        "model.task": model.task,
        "model.epochs": model.epochs,
        "model.batch_size": model.batch_size,
        "model.lr": model.lr,
        "model.optimizer": model.optimizer,
        "model.weight_decay": model.weight_decay,
        "model.early_stopping_patience": str(model.early_stopping_patience),
        "compute.kind": spec.compute.kind,
        "compute.processes": spec.compute.processes,
        "seed": spec.seed,
        "dataset.label_column": spec.dataset.label_column,
        "dataset.inputs": len(data.feature_names),
        "dataset.train_rows": data.train.rows,
        "dataset.eval_rows": data.eval.rows,
    }
    for key, value in model.architecture.model_dump(mode="json").items():
        if key == "params":
            params.update({f"model.architecture.params.{k}": _param(v) for k, v in value.items()})
        else:
            params[f"model.architecture.{key}"] = _param(value)
    for key, value in spec.split.model_dump(mode="json").items():
        params[f"split.{key}"] = value
    return params


def _param(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)


def fit_torch(client: Client, spec: TrainingSpec, data: TrainingData, run_id: str, shown: Progress) -> TorchTrained:
    """Train as the spec's compute says, logging each epoch's metrics to the run as they come."""
    from bottega.training.runner import MetricBuffer

    buffer = MetricBuffer(client, spec.project, run_id)
    total = spec.torch_model.epochs

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        shown_metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}  # a diverging loss is NaN
        buffer.add(epoch, shown_metrics)
        shown.iteration(epoch, total, shown_metrics)

    compute = spec.compute
    where = f"{compute.processes} processes with {compute.kind}" if compute.kind != "local" else "this process"
    shown.stage(f"training pytorch in {where} ({data.train.rows} train rows, {data.eval.rows} eval rows)")
    train = train_local if compute.kind == "local" else train_distributed
    trained = train(spec, data, on_epoch)
    buffer.flush()
    return trained


def train_local(spec: TrainingSpec, data: TrainingData, on_epoch: EpochCallback | None = None) -> TorchTrained:
    """Train in this process (CUDA when available), seeded without touching the caller's random state."""
    import torch

    from bottega.training.torch.loop import Rank, fit
    from bottega.training.torch.nets import check_core, seeded_net

    config, loop = net_config(spec, data), loop_config(spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def tensors(features: Any, label: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(features.astype("float32")).to(device),
            torch.from_numpy(label.astype("float32")).to(device),
        )

    with torch.random.fork_rng(devices=[]):
        net = seeded_net(config, loop.seed, 0)
        check_core(net)
        net = net.to(device)
        result = fit(
            net,
            loop,
            tensors(data.train.features, data.train.label),
            tensors(data.eval.features, data.eval.label),
            Rank(device=device),
            on_epoch,
        )
    return TorchTrained(
        net=net.cpu(),
        config=config,
        loop=loop,
        best_iteration=result.best_epoch,
        rounds_run=result.epochs_run,
        history=result.history,
        compute={"kind": "local", "processes": 1, "device": device},
    )


def _ignoring_stop(on_epoch: EpochCallback | None) -> Callable[[int, dict[str, float]], None] | None:
    """The callback for the launchers, which report the workers' epochs but cannot stop them (tuning trains
    locally)."""
    if on_epoch is None:
        return None
    callback = on_epoch

    def deliver(epoch: int, metrics: dict[str, float]) -> None:
        callback(epoch, metrics)

    return deliver


def train_distributed(spec: TrainingSpec, data: TrainingData, on_epoch: EpochCallback | None = None) -> TorchTrained:
    """Hand the data to `compute.processes` DDP or Horovod workers as Parquet in a temporary folder and read back
    rank 0's state dict."""
    import torch

    from bottega.training.torch.job import STATE, write_job
    from bottega.training.torch.launch import launch
    from bottega.training.torch.nets import build_net, check_core

    config, loop = net_config(spec, data), loop_config(spec)
    with torch.random.fork_rng(devices=[]):
        check_core(build_net(config))  # a user module that does not fit fails here, not in every worker
    compute = spec.compute
    with tempfile.TemporaryDirectory(prefix="bottega-torch-") as tmp:
        folder = Path(tmp)
        parts = {"train": (data.train.features, data.train.label), "eval": (data.eval.features, data.eval.label)}
        write_job(folder, {"net": config.to_dict(), "loop": loop.to_dict()}, parts)
        result = launch(compute.kind, compute.processes, folder, _ignoring_stop(on_epoch))
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    return TorchTrained(
        net=build_net(config, state),
        config=config,
        loop=loop,
        best_iteration=int(result["best_epoch"]),
        rounds_run=int(result["epochs_run"]),
        history=result["history"],
        compute={
            "kind": compute.kind,
            "processes": compute.processes,
            "backend": result["backend"],
            "world_size": int(result["world_size"]),  # as the workers saw it
        },
    )
