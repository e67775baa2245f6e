"""One DDP process of a distributed PyTorch run; torchrun and Spark's TorchDistributor both start it.

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m bottega.training.torch.worker JOB_DIR

The launcher sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Each process uses one thread, joins the
group (gloo on CPU, nccl when CUDA is available), reads the job folder (`bottega.training.torch.job`), builds the
same initial network from the seed and trains its share of each epoch; rank 0 logs each epoch to `epochs.jsonl`,
then writes `model.pt` and `result.json`. `run_rank` (everything after joining the group) is shared with the
Horovod worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from bottega.training.torch.job import JOB, RESULT, STATE, append_epoch, read_part
from bottega.training.torch.loop import Collective, LoopConfig, Rank, fit
from bottega.training.torch.nets import NetConfig, seeded_net


def _tensors(folder: Path, name: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    features, label = read_part(folder / f"{name}.parquet")
    return (
        torch.from_numpy(features.astype("float32")).to(device),
        torch.from_numpy(label.astype("float32")).to(device),
    )


def run_rank(folder: Path, where: Rank, backend: str, collective: Collective | None = None) -> None:
    """Read the job, train this rank's share; rank 0 logs each epoch and writes `model.pt` and `result.json`.
    Shared by the DDP worker and the Horovod worker (`collective` says how the ranks talk; DDP when None)."""
    document = json.loads((folder / JOB).read_text())
    config = NetConfig.from_dict(document["net"])
    loop = LoopConfig(**document["loop"])
    net = seeded_net(config, loop.seed, where.rank).to(where.device)
    train, held = _tensors(folder, "train", where.device), _tensors(folder, "eval", where.device)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        append_epoch(folder, epoch, metrics)

    result = fit(net, loop, train, held, where, on_epoch, collective)
    if where.rank == 0:
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch.save(state, folder / STATE)
        summary = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "history": result.history,
            "world_size": where.world,
            "backend": backend,
        }
        (folder / RESULT).write_text(json.dumps(summary))


def main(job_dir: str) -> None:
    """Train as one rank of the group the launcher set up; rank 0 writes the results into `job_dir`."""
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank % torch.cuda.device_count()}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend)
    try:
        run_rank(Path(job_dir), Rank(rank, world, device), backend)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bottega.training.torch.worker JOB_DIR")
    main(sys.argv[1])
