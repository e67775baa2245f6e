"""PyTorch training with 2 processes against 1: DDP (torchrun, Spark's TorchDistributor) and Horovod against the
in-process trainer, on the same data, spec and seed: wall time and the final holdout AUC.

    .venv/bin/python bench/training/torch_sides.py                             # 200k x 50, 10 epochs
    .venv/bin/python bench/training/torch_sides.py --rows 20000 --epochs 3     # quick
    .venv/bin/python bench/training/torch_sides.py --sides local,torchrun      # a subset

Each side calls the trainer `bottega train` runs for its compute (`trainer.train_local`, or `train_distributed`,
which writes the job folder and starts the real launcher: torchrun, TorchDistributor on a local[N] session, or
horovodrun --gloo) in a fresh process, on the training set `build_dataset` builds from the generated file (the
XGBoost benchmark's generator: float64 inputs, 2% missing in x0, a nonlinear binary label; the first 80% of the
timestamps train). `seconds` is the trainer call: for the distributed sides it includes writing the job's Parquet
files, starting the processes (interpreter, torch import, rendezvous) and reading the state dict back; `process s`
is the child's whole life. The AUC is the kept network's on the holdout rows. Results are saved as JSON under
`bench/.data/training/results/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".data" / "training"
SIDES = ("local", "torchrun", "torch_distributor", "horovod")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512, help="the global batch (split across processes)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the distributed sides")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated: {','.join(SIDES)}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the generated data and the results")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per side")
    args = parser.parse_args(argv)
    unknown = set(args.sides.split(",")) - set(SIDES)
    if unknown:
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))}; use {', '.join(SIDES)}")
    return args


def make_spec(path: Path, job: dict[str, Any], side: str) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import xgb_sides

    compute: dict[str, Any] = {"kind": side}
    if side != "local":
        compute["processes"] = job["processes"]
    return {
        "project": xgb_sides.PROJECT,
        "model_name": f"torch-{side}",
        "seed": job["seed"],
        "dataset": {
            "labels": str(path),
            "entity_keys": ["id"],
            "timestamp_column": "timestamp",
            "label_column": "label",
            "request_features": [f"x{j}" for j in range(job["features"])],
        },
        "split": {"kind": "time", "cut": xgb_sides.cut(job["rows"]).isoformat()},
        "model": {
            "type": "pytorch",
            "task": "binary",
            "architecture": {"kind": "mlp", "hidden": [64, 32]},
            "epochs": job["epochs"],
            "batch_size": job["batch_size"],
            "lr": 0.002,
        },
        "compute": compute,
    }


def child(side: str, job: dict[str, Any]) -> dict[str, Any]:
    """In the child process: build the training set, run the trainer of `side`, score the holdout."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import torch
    from sklearn.metrics import roc_auc_score

    from bottega.training.data import build_dataset
    from bottega.training.spec import load_spec
    from bottega.training.torch.nets import predict
    from bottega.training.torch.trainer import train_distributed, train_local

    spec = load_spec(make_spec(Path(job["path"]), job, side))
    data = build_dataset(None, spec)  # type: ignore[arg-type]  # no store features: no client needed
    extra: dict[str, Any] = {}
    session = None
    if side == "torch_distributor":
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        session = (
            SparkSession.builder.master(f"local[{job['processes']}]")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "1g")
            .getOrCreate()
        )
        extra["spark_session_seconds"] = time.perf_counter() - started
    torch.set_num_threads(1)  # each distributed worker uses one thread (OMP_NUM_THREADS=1): the same here
    start = time.perf_counter()
    trained = (train_local if side == "local" else train_distributed)(spec, data)
    seconds = time.perf_counter() - start
    if session is not None:
        session.stop()
    auc = float(roc_auc_score(data.eval.label, predict(trained.net, data.eval.features)))
    return {
        "side": side,
        "processes": 1 if side == "local" else job["processes"],
        "seconds": seconds,
        "auc": auc,
        "epochs_run": trained.rounds_run,
        "history_eval_auc": trained.history.get("eval.auc", []),
        "train_rows": data.train.rows,
        "eval_rows": data.eval.rows,
        **extra,
    }


def run_child(side: str, job: dict[str, Any], log: Path, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "_child", side, json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"side {side} failed (exit {done.returncode}); its log: {log}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def report(results: dict[str, dict[str, Any]], command: str) -> str:
    local = results.get("local", {}).get("seconds")
    local_auc = results.get("local", {}).get("auc")
    lines = [f"{'side':<20}{'procs':>6}{'seconds':>10}{'process s':>11}{'vs local':>10}{'eval AUC':>10}{'dAUC':>9}"]
    for r in results.values():
        vs = f"{r['seconds'] / local:.2f}x" if local else "-"
        delta = f"{r['auc'] - local_auc:+.4f}" if local_auc is not None else "-"
        lines.append(
            f"{r['side']:<20}{r['processes']:>6}{r['seconds']:>10.2f}{r['process_seconds']:>11.2f}{vs:>10}"
            f"{r['auc']:>10.4f}{delta:>9}"
        )
    for r in results.values():
        if "spark_session_seconds" in r:
            lines.append(f"  {r['side']}: Spark session start {r['spark_session_seconds']:.2f} s (outside the clock)")
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_child"]:
        print(json.dumps(child(argv[1], json.loads(argv[2]))))
        return 0
    args = parse(argv)
    sys.path.insert(0, str(HERE))
    import xgb_sides

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = args.data / "runs" / stamp / "torch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    path = xgb_sides.generate(args.data, args.rows, args.features)
    settings = {**vars(args), "data": str(args.data)}
    job = {**settings, "path": str(path)}
    results: dict[str, dict[str, Any]] = {}
    for side in [s for s in SIDES if s in args.sides.split(",")]:
        print(f"{side} ...", flush=True)
        results[side] = run_child(side, job, log, args.timeout)
        print(f"  {results[side]['seconds']:.2f} s, AUC {results[side]['auc']:.4f}", flush=True)
    command = ".venv/bin/python bench/training/torch_sides.py " + shlex.join(argv)
    print(report(results, command.strip()))
    out = args.data / "results" / f"torch_sides-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "results": results, "command": command}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
