"""Start a distributed PyTorch run on this machine and follow it: torchrun, Spark's TorchDistributor or horovodrun.

torchrun and TorchDistributor start `compute.processes` copies of `bottega.training.torch.worker` with
torch.distributed's standalone rendezvous (a free local port, so runs never collide); horovodrun (`--gloo`, next to
this interpreter) starts copies of `bottega.training.torch.horovod_worker`. Children get PYTHONPATH set to this
process's `sys.path`: TorchDistributor's children do not see the project folders (nor a user module's folder)
otherwise. While the processes train, the epochs rank 0 appends to the job folder are passed to `on_epoch` as they
arrive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bottega.core.errors import OperationFailed
from bottega.core.extras import MissingExtra
from bottega.training.torch.job import RESULT, EpochFollower

WORKER = "bottega.training.torch.worker"
HOROVOD_WORKER = "bottega.training.torch.horovod_worker"
LAUNCHERS = {"torchrun": "torchrun", "horovod": "horovodrun"}
"""compute kind -> the launcher program (its output goes to `<program>.log` in the job folder)."""
_HOROVOD_PREFIX = re.compile(r"^\[(\d+)\]<std(?:out|err)>:")
POLL_SECONDS = 0.2
LOG_TAIL_LINES = 40

EpochCallback = Callable[[int, dict[str, float]], None]


class TrainingFailed(OperationFailed):
    """A distributed run ended without a model; the message carries the end of the processes' output."""


def child_pythonpath() -> str:
    """This process's import path (the project folders, a user module's folder, ...) for child processes."""
    entries: list[str] = []
    for entry in [*sys.path, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]:
        path = entry or os.getcwd()
        if path not in entries and Path(path).is_dir():
            entries.append(path)
    return os.pathsep.join(entries)


@contextlib.contextmanager
def pythonpath_env() -> Iterator[None]:
    """PYTHONPATH set for children started from `os.environ` (TorchDistributor), restored afterwards."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = child_pythonpath()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def torchrun_command(processes: int, folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={processes}",
        "-m",
        WORKER,
        str(folder),
    ]


def horovodrun_path() -> Path:
    """`horovodrun` next to this interpreter; MissingExtra (saying how to build it) when Horovod is not installed."""
    import importlib.util

    path = Path(sys.executable).parent / "horovodrun"
    if not path.is_file() or importlib.util.find_spec("horovod") is None:
        raise MissingExtra(
            f"compute 'horovod' needs Horovod with PyTorch support, and there is no horovodrun next to "
            f"{sys.executable}: run make setup (it builds Horovod)"
        )
    return path


def horovodrun_command(processes: int, folder: Path) -> list[str]:
    return [
        str(horovodrun_path()),
        "-np",
        str(processes),
        "-H",
        f"localhost:{processes}",
        "--gloo",
        sys.executable,
        "-m",
        HOROVOD_WORKER,
        str(folder),
    ]


def worker_error(output: str) -> str:
    """The part of the processes' output that says what went wrong: the traceback of the first rank that printed
    one (torch prefixes each worker's lines with `[rankN]:`, horovodrun with `[N]<stdout>:` or `[N]<stderr>:`), else
    the last lines."""
    lines = [_HOROVOD_PREFIX.sub(r"[rank\1]:", line) for line in output.splitlines()]
    tagged = [line for line in lines if line.startswith("[rank")]
    if tagged:
        failing = [line for line in tagged if "Traceback" in line]
        first = (failing or tagged)[0].split(":", 1)[0]
        lines = [line.split(":", 1)[1] for line in tagged if line.startswith(f"{first}:")]
        return f"{first} " + "\n".join(lines[-LOG_TAIL_LINES:]).lstrip()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _tail(path: Path) -> str:
    return worker_error(path.read_text(errors="replace")) if path.exists() else ""


def _deliver(follower: EpochFollower, on_epoch: EpochCallback | None) -> None:
    for epoch, metrics in follower.new():
        if on_epoch is not None:
            on_epoch(epoch, metrics)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the launcher and the workers it started (their own process group) when this process stops early."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_launcher(
    kind: str, processes: int, command: list[str], folder: Path, on_epoch: EpochCallback | None = None
) -> None:
    """Run a launcher command (torchrun, horovodrun) in its own process group with its output in the job folder's
    log, passing rank 0's epochs to `on_epoch` while it runs; TrainingFailed when it exits with an error."""
    name = LAUNCHERS[kind]
    log = folder / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": child_pythonpath(), "OMP_NUM_THREADS": "1"}
    follower = EpochFollower(folder)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        try:
            while proc.poll() is None:
                time.sleep(POLL_SECONDS)
                _deliver(follower, on_epoch)
        finally:
            if proc.poll() is None:
                _stop(proc)
    _deliver(follower, on_epoch)
    if proc.returncode != 0:
        raise TrainingFailed(f"{name} with {processes} processes exited with {proc.returncode}:\n{_tail(log)}")


def run_torchrun(processes: int, folder: Path, on_epoch: EpochCallback | None = None) -> None:
    """`torchrun --standalone --nproc-per-node N -m bottega.training.torch.worker folder`; output in torchrun.log."""
    run_launcher("torchrun", processes, torchrun_command(processes, folder), folder, on_epoch)


def run_horovod(processes: int, folder: Path, on_epoch: EpochCallback | None = None) -> None:
    """`horovodrun -np N -H localhost:N --gloo python -m bottega.training.torch.horovod_worker folder`; output in
    horovodrun.log."""
    run_launcher("horovod", processes, horovodrun_command(processes, folder), folder, on_epoch)


def spark_session() -> tuple[Any, bool]:
    """The active Spark session, or a new local one (and True: the caller stops it)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    master = os.environ.get("BOTTEGA_SPARK_MASTER", "local[1]")
    builder: Any = SparkSession.builder
    session = builder.master(master).appName("bottega-torch").config("spark.ui.enabled", "false").getOrCreate()
    return session, True


def run_distributor(processes: int, folder: Path, on_epoch: EpochCallback | None = None) -> None:
    """Spark's TorchDistributor(num_processes, local_mode=True, use_gpu=False) running the worker's `main`."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from bottega.training.torch.worker import main

    session, owned = spark_session()
    follower = EpochFollower(folder)
    try:
        distributor = TorchDistributor(num_processes=processes, local_mode=True, use_gpu=False)
        with pythonpath_env(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-distributor") as pool:
            future = pool.submit(distributor.run, main, str(folder))
            while not future.done():
                time.sleep(POLL_SECONDS)
                _deliver(follower, on_epoch)
            _deliver(follower, on_epoch)
            try:
                future.result()
            except Exception as exc:
                detail = worker_error(str(exc))
                raise TrainingFailed(f"TorchDistributor with {processes} processes failed:\n{detail}") from exc
    finally:
        if owned:
            session.stop()


def launch(kind: str, processes: int, folder: Path, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Run the job in `folder` with `kind` (torchrun | torch_distributor | horovod); rank 0's result.json."""
    if kind == "torchrun":
        run_torchrun(processes, folder, on_epoch)
    elif kind == "horovod":
        run_horovod(processes, folder, on_epoch)
    elif kind == "torch_distributor":
        run_distributor(processes, folder, on_epoch)
    else:
        raise ValueError(f"unknown distributed launcher {kind!r}")
    result = folder / RESULT
    if not result.exists():
        log = folder / f"{LAUNCHERS.get(kind, 'torchrun')}.log"
        raise TrainingFailed(f"{kind} finished but rank 0 wrote no {RESULT}:\n{_tail(log)}")
    document: dict[str, Any] = json.loads(result.read_text())
    return document
