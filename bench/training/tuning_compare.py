"""TPE against random search on the same budget: `bottega train` with a `tuning:` section, both samplers, several
seeds, on a bundled dataset; reports the best metric after N trials (mean and spread over the seeds).

    .venv/bin/python bench/training/tuning_compare.py                          # breast cancer, 30 trials x 5 seeds
    .venv/bin/python bench/training/tuning_compare.py --dataset generated --trials 40 --seeds 3

Each study is a real `bottega.training.runner.train(client, spec)` against a real `bottega server` (SQLite, local
artifacts) started here under `bench/.data/training/runs/<run>/`: every trial a child run, the best registered. The
two samplers see the same data, split, search space, trial count and seeds; no pruner, so each trial trains fully
and the budget is exactly the number of trials. Results are printed with the command that reproduces them and saved
under `bench/.data/training/results/`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".data" / "training"
PROJECT = "bench"
SAMPLERS = ("tpe", "random")
SPACE: dict[str, dict[str, Any]] = {
    "model.params.eta": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
    "model.params.max_depth": {"type": "int", "low": 1, "high": 8},
    "model.params.min_child_weight": {"type": "float", "low": 0.1, "high": 20.0, "log": True},
    "model.params.subsample": {"type": "float", "low": 0.4, "high": 1.0},
    "model.params.colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0},
    "model.params.lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=("breast_cancer", "generated"), default="breast_cancer")
    parser.add_argument("--trials", type=int, default=30, help="trials per study (the budget)")
    parser.add_argument("--seeds", type=int, default=5, help="studies per sampler, seeds 0..N-1")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds per trial")
    parser.add_argument("--metric", default="log_loss", help="the tuned metric (log_loss or auc)")
    parser.add_argument("--checkpoints", default="5,10,20,30", help="trial counts to report the best value at")
    return parser.parse_args(argv)


def write_labels(dataset: str, root: Path) -> Path:
    """The dataset as a label table (id, timestamp, f0..fN, label) in Parquet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if dataset == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        x, y = load_breast_cancer(return_X_y=True)
    else:
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=4000, n_features=20, n_informative=8, n_redundant=4, flip_y=0.1, class_sep=0.6, random_state=0
        )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    columns: dict[str, Any] = {
        "id": np.arange(len(y), dtype=np.int64),
        "timestamp": pa.array([start + timedelta(minutes=i) for i in range(len(y))], pa.timestamp("us", tz="UTC")),
    }
    columns.update({f"f{j}": x[:, j] for j in range(x.shape[1])})
    columns["label"] = y.astype(np.int64)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"tuning-{dataset}.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def make_spec(path: Path, inputs: int, sampler: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "model_name": f"tuning-{sampler}",
        "run_name": f"{sampler}-seed{seed}",
        "seed": 0,
        "dataset": {
            "labels": str(path),
            "entity_keys": ["id"],
            "label_column": "label",
            "request_features": [f"f{j}" for j in range(inputs)],
        },
        "split": {"kind": "random", "eval_fraction": 0.3, "seed": 0},
        "model": {"type": "xgboost", "task": "binary", "params": {"nthread": 1}, "num_boost_round": args.rounds},
        "evaluation": {"permutation_repeats": 0},
        "tuning": {
            "space": SPACE,
            "n_trials": args.trials,
            "sampler": sampler,
            "pruner": "none",
            "metric": args.metric,
            "seed": seed,
        },
    }


def best_so_far(records: list[dict[str, Any]], maximize: bool) -> list[float]:
    """The best value after each trial (trials in number order; a failed trial keeps the previous best)."""
    out: list[float] = []
    best: float | None = None
    for record in sorted(records, key=lambda r: r["number"]):
        value = record["value"]
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best = value
        out.append(best if best is not None else float("nan"))
    return out


def report(curves: dict[str, list[list[float]]], checkpoints: list[int], metric: str, walls: dict[str, float]) -> str:
    head = f"{'sampler':<8}" + "".join(f"{f'best@{n}':>20}" for n in checkpoints) + f"{'study s':>10}"
    lines = [f"best {metric} after N trials: mean ± std over seeds (per-seed values in the JSON)", head]
    for sampler, runs in curves.items():
        cells = []
        for n in checkpoints:
            values = [run[min(n, len(run)) - 1] for run in runs]
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}".rjust(20))
        lines.append(f"{sampler:<8}" + "".join(cells) + f"{walls[sampler] / len(runs):>10.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse(argv)
    sys.path.insert(0, str(HERE))
    bottega_server = importlib.import_module("xgb_overhead").bottega_server  # the real server of the XGBoost bench

    from bottega.sdk import Client
    from bottega.training.runner import train

    checkpoints = [n for n in (int(c) for c in args.checkpoints.split(",")) if n <= args.trials] or [args.trials]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = DATA / "runs" / f"tuning-{stamp}"
    path = write_labels(args.dataset, DATA)
    import pyarrow.parquet as pq

    inputs = len([c for c in pq.read_schema(path).names if c.startswith("f")])
    maximize = args.metric not in ("log_loss",)
    curves: dict[str, list[list[float]]] = {s: [] for s in SAMPLERS}
    walls = dict.fromkeys(SAMPLERS, 0.0)
    finals: dict[str, list[dict[str, Any]]] = {s: [] for s in SAMPLERS}
    with bottega_server(run_dir / "home") as (url, token), Client(url, token) as sdk:
        sdk.projects.create(PROJECT)
        for seed in range(args.seeds):
            for sampler in SAMPLERS:
                began = time.perf_counter()
                result = train(sdk, make_spec(path, inputs, sampler, seed, args))
                walls[sampler] += time.perf_counter() - began
                assert result.tuning is not None
                curve = best_so_far(result.tuning["trial_list"], maximize)
                curves[sampler].append(curve)
                finals[sampler].append({"seed": seed, "best": result.tuning["best"], "version": result.version})
                print(f"{sampler:<7} seed {seed}: best {args.metric} {curve[-1]:.4f}", flush=True)
    command = "bench/training/tuning_compare.py " + " ".join(shlex.quote(a) for a in argv)
    text = report(curves, checkpoints, args.metric, walls)
    print(text)
    print(f"reproduce: .venv/bin/python {command}")
    results = DATA / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"tuning-{stamp}.json"
    document = {"command": command, "args": vars(args), "curves": curves, "finals": finals, "walls": walls}
    out.write_text(json.dumps(document, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
