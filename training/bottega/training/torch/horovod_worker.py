"""One Horovod process of a distributed PyTorch run; horovodrun starts it.

    horovodrun -np 2 -H localhost:2 --gloo python -m bottega.training.torch.horovod_worker JOB_DIR

The same job folder, network, seeds and training loop as the DDP worker (`bottega.training.torch.worker.run_rank`);
only the way the ranks talk differs: `hvd.DistributedOptimizer` averages the gradients, rank 0's weights and
optimizer state are broadcast before the first step, each rank trains its `DistributedSampler` share
(`num_replicas=hvd.size()`, `rank=hvd.rank()`), and the epoch's loss totals and rank 0's early-stopping decision go
through Horovod's allreduce and broadcast. Rank 0 logs each epoch to `epochs.jsonl`, then writes `model.pt` and
`result.json`. Tensors stay on the CPU unless this Horovod was built with NCCL and a GPU is present (the wheel of
`deploy/horovod/build-wheel.sh` has Gloo CPU operations only).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch

from bottega.training.torch.loop import Collective, LoopConfig, Rank, make_optimizer
from bottega.training.torch.nets import TabularNet
from bottega.training.torch.worker import run_rank


class HorovodCollective(Collective):
    """Horovod's allreduce, broadcast and DistributedOptimizer (`hvd` is the initialised `horovod.torch`)."""

    def __init__(self, hvd: Any) -> None:
        self.hvd = hvd

    def wrap(self, net: TabularNet, loop: LoopConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        hvd = self.hvd
        optimizer = hvd.DistributedOptimizer(
            make_optimizer(net.parameters(), loop), named_parameters=net.named_parameters()
        )
        hvd.broadcast_parameters(net.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        wrapped: torch.optim.Optimizer = optimizer
        return net, wrapped

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.hvd.allreduce(tensor, op=self.hvd.Sum)
        return out

    def from_rank0(self, tensor: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.hvd.broadcast(tensor, root_rank=0)
        return out


def main(job_dir: str) -> None:
    """Train as one rank of the Horovod job horovodrun started; rank 0 writes the results into `job_dir`."""
    hvd: Any = importlib.import_module("horovod.torch")
    hvd.init()
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available() and bool(hvd.nccl_built())
    device = f"cuda:{hvd.local_rank() % torch.cuda.device_count()}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    try:
        where = Rank(hvd.rank(), hvd.size(), device)
        run_rank(Path(job_dir), where, "nccl" if cuda else "gloo", HorovodCollective(hvd))
        hvd.barrier()
    finally:
        hvd.shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: horovodrun -np N -H localhost:N --gloo python -m bottega.training.torch.horovod_worker DIR")
    main(sys.argv[1])
