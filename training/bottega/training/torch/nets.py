"""The networks: the built-in tabular MLP, user modules, and `TabularNet`, the wrapper every model is trained,
saved, exported and served as.

`TabularNet` takes raw input rows (float32, NaN = missing): a missing value becomes the training mean of its column,
each column is standardized with the training mean and std, then the core network gives raw scores. `outputs` turns
scores into what the model predicts: P(class 1) (binary), class probabilities (multiclass) or the value (regression,
the core predicts the standardized target). The means, stds and target scaling are buffers of the wrapper, so they
travel in the state dict and in the ONNX graph, and `NetConfig` (model.json) lists them for other runtimes.

This module imports torch; import it only where torch is needed.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bottega.training.spec import SpecError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}
PREDICT_BATCH = 65_536
CONFIG_FORMAT = "bottega.torch/1"


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild the network (model.json): the state dict fills in the weights."""

    task: str
    n_inputs: int
    n_outputs: int
    architecture: dict[str, Any]
    feature_names: list[str]
    classes: list[str] | None
    mean: list[float]
    """per input: the training mean, also what a missing value is imputed with."""
    std: list[float]
    """per input: the training standard deviation (1 for a constant or empty column)."""
    target_mean: float = 0.0
    target_std: float = 1.0
    """regression: the core predicts (y - target_mean) / target_std."""

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


def standardization(train: np.ndarray) -> tuple[list[float], list[float]]:
    """Column means and standard deviations over the present values; 0 / 1 where they are undefined or 0."""
    present = ~np.isnan(train)
    counts = present.sum(axis=0)
    filled = np.where(present, train, 0.0)
    mean = np.divide(filled.sum(axis=0), counts, out=np.zeros(train.shape[1]), where=counts > 0)
    centered = np.where(present, train - mean, 0.0)
    var = np.divide((centered**2).sum(axis=0), counts, out=np.zeros(train.shape[1]), where=counts > 0)
    std = np.sqrt(var)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return [float(v) for v in mean], [float(v) for v in std]


def target_scaling(label: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(label))
    std = float(np.std(label))
    return mean, std if math.isfinite(std) and std > 1e-12 else 1.0


def mlp(n_inputs: int, n_outputs: int, hidden: list[int], dropout: float, activation: str) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def resolve_module(path: str) -> type[nn.Module]:
    """The class of `package.module:ClassName`; a SpecError naming `model.architecture.module` otherwise."""
    where = "model.architecture.module"
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"{where}: cannot import {module_name!r} ({exc}); is it on the trainer's Python path?") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise SpecError(f"{where}: {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise SpecError(f"{where}: {path!r} is not a torch.nn.Module subclass")
    return cls


def build_core(architecture: dict[str, Any], n_inputs: int, n_outputs: int) -> nn.Module:
    if architecture["kind"] == "mlp":
        return mlp(n_inputs, n_outputs, architecture["hidden"], architecture["dropout"], architecture["activation"])
    cls = resolve_module(architecture["module"])
    try:
        return cls(n_inputs, n_outputs, **architecture.get("params", {}))
    except TypeError as exc:
        raise SpecError(
            f"model.architecture: {architecture['module']}(n_inputs, n_outputs, **params) failed: {exc}"
        ) from exc


class TabularNet(nn.Module):
    """Impute, standardize, score; `outputs` maps scores to probabilities or values."""

    mean: torch.Tensor
    std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, core: nn.Module, config: NetConfig) -> None:
        super().__init__()
        self.core = core
        self.task = config.task
        self.n_outputs = config.n_outputs
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32))
        self.register_buffer("target_mean", torch.tensor(config.target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(config.target_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores (rows x n_outputs): logits, or the standardized regression target."""
        x = torch.where(torch.isnan(x), self.mean, x)
        scores: torch.Tensor = self.core((x - self.mean) / self.std)
        return scores.reshape(x.shape[0], self.n_outputs)

    def outputs(self, scores: torch.Tensor) -> torch.Tensor:
        """P(class 1) per row (binary), rows x K probabilities (multiclass) or values per row (regression)."""
        if self.task == "binary":
            return torch.sigmoid(scores[:, 0])
        if self.task == "multiclass":
            return torch.softmax(scores, dim=1)
        return scores[:, 0] * self.target_std + self.target_mean


class OnnxHead(nn.Module):
    """What the ONNX graph computes, shaped like the XGBoost exports: (label, probabilities) for classifiers
    (probabilities rows x K, K = 2 for binary), (variable,) rows x 1 for regression."""

    def __init__(self, net: TabularNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net.outputs(self.net(x))
        if self.net.task == "regression":
            return (out.reshape(-1, 1),)
        probs = torch.stack([1.0 - out, out], dim=1) if self.net.task == "binary" else out
        return torch.argmax(probs, dim=1), probs


def build_net(config: NetConfig, state: dict[str, torch.Tensor] | None = None) -> TabularNet:
    """A network for `config`, with the weights of `state` when given (randomly initialised otherwise)."""
    net = TabularNet(build_core(config.architecture, config.n_inputs, config.n_outputs), config)
    if state is not None:
        net.load_state_dict(state)
    return net


def seeded_net(config: NetConfig, seed: int, rank: int) -> TabularNet:
    """The network initialised from `seed` (the same on every rank), then torch's global generator reseeded for
    this rank's dropout. Seeds torch's global generator: callers in a shared process wrap it in `fork_rng`."""
    torch.manual_seed(seed)
    net = build_net(config)
    torch.manual_seed(seed + 1 + rank)
    return net


def check_core(net: TabularNet) -> None:
    """Fail clearly when a user module does not map rows x n_inputs to rows x n_outputs."""
    probe = torch.zeros(3, len(net.mean))
    try:
        with torch.no_grad():
            out = net.core(probe)
    except Exception as exc:
        raise SpecError(f"model.architecture: forward(x) failed on a 3 x {len(net.mean)} batch: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.numel() != 3 * net.n_outputs:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(
            f"model.architecture: forward(x) must return rows x {net.n_outputs} scores; got {shape} for 3 rows"
        )


def predict(net: TabularNet, features: np.ndarray) -> np.ndarray:
    """The model's predictions (float64) for raw feature rows, in batches, on the CPU."""
    net = net.cpu().eval()
    parts = []
    with torch.no_grad():
        for start in range(0, max(len(features), 1), PREDICT_BATCH):
            rows = torch.from_numpy(np.ascontiguousarray(features[start : start + PREDICT_BATCH], dtype=np.float32))
            parts.append(net.outputs(net(rows)).numpy().astype(np.float64))
    return np.concatenate(parts)
