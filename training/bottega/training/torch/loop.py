"""The training loop, the same for one process and for each rank of a DDP or Horovod group.

Each epoch, a `DistributedSampler` (one replica when local) shuffles the training rows with the seed and the epoch,
pads them to a multiple of the world size and gives each rank its share; each rank takes `ceil(batch_size / world)`
rows per step, so one step sees about `batch_size` rows in all and DDP (or Horovod's DistributedOptimizer) averages
the gradients. Rank 0 then scores the evaluation rows (loss and one task metric), decides on early stopping (the
eval loss has not improved for `patience` epochs) and broadcasts the decision. With early stopping the weights of the
best epoch are kept.

This module imports torch; import it only where torch is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bottega.training.torch.nets import TabularNet

EpochCallback = Callable[[int, dict[str, float]], bool | None]
"""Called on rank 0 after each epoch with (epoch index, {"train.loss": ..., "eval.loss": ..., "eval.auc": ...});
returning True stops training after this epoch (tuning prunes trials this way)."""

EVAL_BATCH = 65_536


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    patience: int | None
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rank:
    """Where this copy of the loop runs: rank and world size of the DDP group (0 and 1 when local)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"


class Collective:
    """How the copies of the loop talk to each other. This base is one process alone: the network trains as it is
    and nothing is exchanged. `Ddp` is torch.distributed's; the Horovod worker brings its own."""

    def wrap(self, net: TabularNet, loop: LoopConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The module to call and the optimizer to step (gradients averaged across ranks when distributed)."""
        return net, make_optimizer(net.parameters(), loop)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over all ranks."""
        return tensor

    def from_rank0(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor`, on every rank."""
        return tensor


class Ddp(Collective):
    """DistributedDataParallel over the process group the caller started (gloo on CPU, nccl on CUDA)."""

    def __init__(self, device: str) -> None:
        self.device = device

    def wrap(self, net: TabularNet, loop: LoopConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        model = DistributedDataParallel(net, device_ids=ids)
        return model, make_optimizer(model.parameters(), loop)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        moved = tensor.to(self.device)
        dist.all_reduce(moved)
        return moved.to(tensor.device)

    def from_rank0(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        moved = tensor.to(self.device)
        dist.broadcast(moved, src=0)
        return moved.to(tensor.device)


def make_optimizer(params: Any, loop: LoopConfig) -> torch.optim.Optimizer:
    if loop.optimizer == "sgd":
        return torch.optim.SGD(params, lr=loop.lr, momentum=0.9, weight_decay=loop.weight_decay)
    if loop.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=loop.lr, weight_decay=loop.weight_decay)
    return torch.optim.Adam(params, lr=loop.lr, weight_decay=loop.weight_decay)


def loss_of(net: TabularNet, scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean loss of a batch: log loss (binary, multiclass) or squared error on the standardized target."""
    if net.task == "binary":
        return nn.functional.binary_cross_entropy_with_logits(scores[:, 0], label)
    if net.task == "multiclass":
        return nn.functional.cross_entropy(scores, label.long())
    return nn.functional.mse_loss(scores[:, 0], (label - net.target_mean) / net.target_std)


def rank_auc(label: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC from ranks (ties share their average rank), without importing scikit-learn into every worker;
    None when the rows hold one class."""
    positive = label == 1
    n_pos = int(positive.sum())
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate_epoch(net: TabularNet, features: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Eval loss and the task's metric (binary AUC, multiclass accuracy, regression RMSE in label units)."""
    net.eval()
    with torch.no_grad():
        scores = torch.cat([net(features[i : i + EVAL_BATCH]) for i in range(0, len(features), EVAL_BATCH)])
        out: dict[str, float] = {"eval.loss": float(loss_of(net, scores, label))}
        predicted = net.outputs(scores).cpu().numpy().astype(np.float64)
    truth = label.cpu().numpy()
    if net.task == "binary":
        auc = rank_auc(truth, predicted)
        if auc is not None:
            out["eval.auc"] = auc
    elif net.task == "multiclass":
        out["eval.accuracy"] = float(np.mean(predicted.argmax(axis=1) == truth))
    else:
        out["eval.rmse"] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    return out


def _train_epoch(
    model: nn.Module,
    net: TabularNet,
    optimizer: torch.optim.Optimizer,
    order: torch.Tensor,
    data: tuple[torch.Tensor, torch.Tensor],
    step_rows: int,
) -> torch.Tensor:
    """One pass over this rank's rows; returns [sum of losses x rows, rows] for the epoch's mean."""
    features, label = data
    model.train()
    total = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(order), step_rows):
        index = order[start : start + step_rows]
        optimizer.zero_grad()  # sets them to None (Horovod's takes no argument)
        loss = loss_of(net, model(features[index]), label[index])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += torch.tensor([loss.item() * len(index), len(index)], dtype=torch.float64)
    return total


def fit(
    net: TabularNet,
    loop: LoopConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    held: tuple[torch.Tensor, torch.Tensor],
    where: Rank | None = None,
    on_epoch: EpochCallback | None = None,
    collective: Collective | None = None,
) -> FitResult:
    """Train `net` in place (on `where.device`); the caller seeds torch and, when distributed, starts the group.
    Without a `collective`, a world of one trains alone and a larger one with DDP."""
    from torch.utils.data import DistributedSampler, TensorDataset

    where = where or Rank()
    talk = collective or (Ddp(where.device) if where.world > 1 else Collective())
    model, optimizer = talk.wrap(net, loop)
    sampler: DistributedSampler[Any] = DistributedSampler(
        TensorDataset(train[0]), num_replicas=where.world, rank=where.rank, shuffle=True, seed=loop.seed
    )
    step_rows = max(1, math.ceil(loop.batch_size / where.world))
    history: dict[str, list[float]] = {}
    best_loss, best_epoch, best_state = math.inf, 0, None
    epoch = 0
    for epoch in range(loop.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long, device=train[0].device)
        totals = talk.sum(_train_epoch(model, net, optimizer, order, train, step_rows))
        stop = torch.zeros(1, dtype=torch.int64)
        if where.rank == 0:
            metrics = {"train.loss": float(totals[0] / max(float(totals[1]), 1.0)), **evaluate_epoch(net, *held)}
            for key, value in metrics.items():
                history.setdefault(key, []).append(value)
            asked_to_stop = on_epoch is not None and bool(on_epoch(epoch, metrics))
            if metrics["eval.loss"] < best_loss:
                best_loss, best_epoch = metrics["eval.loss"], epoch
                if loop.patience is not None:
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            elif loop.patience is not None and epoch - best_epoch >= loop.patience:
                stop[0] = 1
            if asked_to_stop:
                stop[0] = 1
        if int(talk.from_rank0(stop)[0]):
            break
    epochs_run = epoch + 1
    if best_state is not None:
        net.load_state_dict(best_state)
        return FitResult(best_epoch=best_epoch, epochs_run=epochs_run, history=history)
    return FitResult(best_epoch=epochs_run - 1, epochs_run=epochs_run, history=history)
