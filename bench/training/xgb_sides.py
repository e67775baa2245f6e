"""The sides of the XGBoost training benchmark, each run in its own process by `xgb_overhead.py`:

- `raw`: what a data scientist would write by hand: read the Parquet table, split it at the same time cut, build
  the two DMatrix, `xgboost.train` with the same parameters and rounds (train and eval evaluated every round, as
  Bottega does), predict the holdout and compute its AUC.
- `bottega`: `bottega.training.runner.train(client, spec)`, i.e. what `bottega train spec.yaml` runs: the same
  read and split, training with per-round metrics sent to the API, the evaluation report, importance, the feature
  report, the ONNX export and its validation, artifact uploads and the version registration. `compute` picks the
  local trainer or xgboost.spark with N workers.

Both sides read the same generated file: `rows` x `features` float64 inputs (x0 has 2% missing values), a binary
label drawn from a nonlinear logistic model, one timestamp per row; the first 80% of the timestamps train.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRAIN_FRACTION = 0.8
PROJECT = "bench"


def data_path(folder: Path, rows: int, features: int) -> Path:
    return folder / f"xgb-{rows}x{features}.parquet"


def generate(folder: Path, rows: int, features: int, seed: int = 0) -> Path:
    """Write the benchmark table once per size (seeded); returns its path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = data_path(folder, rows, features)
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    weights = rng.normal(scale=0.6, size=features) * (rng.random(features) < 0.5)
    logit = x @ weights + 0.8 * x[:, 0] * x[:, 1] + np.sin(2.0 * x[:, 2]) - 0.3
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    x[rng.random(rows) < 0.02, 0] = np.nan
    start = np.datetime64(T0.replace(tzinfo=None), "us")
    columns: dict[str, Any] = {
        "id": np.arange(rows, dtype=np.int64),
        "timestamp": pa.array(start + np.arange(rows).astype("timedelta64[s]"), pa.timestamp("us", tz="UTC")),
        "label": label,
    }
    columns.update({f"x{j}": pa.array(x[:, j], from_pandas=True) for j in range(features)})
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(columns), tmp)
    tmp.rename(path)
    return path


def cut(rows: int) -> datetime:
    return T0 + timedelta(seconds=int(rows * TRAIN_FRACTION))


def booster_params(depth: int, eta: float, nthread: int, seed: int) -> dict[str, Any]:
    """What both sides train with (Bottega's defaults for a binary task plus the spec's params)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "max_depth": depth,
        "eta": eta,
        "nthread": nthread,
        "seed": seed,
    }


def make_spec(
    path: Path,
    rows: int,
    features: int,
    *,
    rounds: int,
    depth: int,
    eta: float,
    nthread: int,
    seed: int,
    compute: str = "local",
    workers: int = 1,
    model: str = "bench-xgb",
) -> dict[str, Any]:
    """The training spec of the Bottega side (no early stopping, so both sides train the same rounds)."""
    return {
        "project": PROJECT,
        "model_name": model,
        "seed": seed,
        "dataset": {
            "labels": str(path),
            "entity_keys": ["id"],
            "timestamp_column": "timestamp",
            "label_column": "label",
            "request_features": [f"x{j}" for j in range(features)],
        },
        "split": {"kind": "time", "cut": cut(rows).isoformat()},
        "model": {
            "type": "xgboost",
            "task": "binary",
            "params": {"max_depth": depth, "eta": eta, "nthread": nthread},
            "num_boost_round": rounds,
        },
        "compute": {"kind": compute, "workers": workers},
    }


def raw_side(path: Path, rows: int, *, rounds: int, depth: int, eta: float, nthread: int, seed: int) -> dict[str, Any]:
    """Hand-written `xgboost.train` on the same file, split and parameters; seconds from reading to AUC."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    start, cpu = time.perf_counter(), time.process_time()
    table = pq.read_table(path)
    names = [n for n in table.column_names if n.startswith("x")]
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        matrix[:, j] = pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False)
    label = table["label"].to_numpy().astype(np.float64)
    train = np.asarray(pc.less(table["timestamp"], pa.scalar(cut(rows))).to_numpy(zero_copy_only=False), dtype=bool)
    dtrain = xgb.DMatrix(matrix[train], label=label[train], feature_names=names, missing=float("nan"))
    deval = xgb.DMatrix(matrix[~train], label=label[~train], feature_names=names, missing=float("nan"))
    loaded = time.perf_counter()
    ends: list[float] = []

    class RoundClock(xgb.callback.TrainingCallback):  # only notes when each round ends (microseconds)
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            ends.append(time.perf_counter())
            return False

    booster = xgb.train(
        booster_params(depth, eta, nthread, seed),
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (deval, "eval")],
        verbose_eval=False,
        callbacks=[RoundClock()],
    )
    trained = time.perf_counter()
    auc = float(roc_auc_score(label[~train], booster.inplace_predict(matrix[~train], missing=float("nan"))))
    end = time.perf_counter()
    return {
        "side": "raw",
        "seconds": end - start,
        "rounds_seconds": ends[-1] - ends[0],
        "cpu_seconds": time.process_time() - cpu,
        "stages": {"load": loaded - start, "train": trained - loaded, "evaluate": end - trained},
        "auc": auc,
        "rounds": booster.num_boosted_rounds(),
        "train_rows": int(train.sum()),
        "eval_rows": int((~train).sum()),
    }


class StageClock:
    """A `Progress` that times the trainer's stages (building the set, training, evaluating, uploading)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.rounds = 0
        self.ends: list[float] = []

    def stage(self, message: str) -> None:
        self.marks.append((message.split(" (")[0], time.perf_counter()))

    def iteration(self, step: int, total: int, metrics: Mapping[str, float]) -> None:
        self.rounds = step + 1
        self.ends.append(time.perf_counter())

    def rounds_seconds(self) -> float | None:
        """From the end of the first boosting round to the end of the last (None when rounds arrive at once, as
        from Spark)."""
        return self.ends[-1] - self.ends[0] if len(self.ends) > 1 else None

    def durations(self, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, at), (_, after) in zip(self.marks, [*self.marks[1:], ("end", end)], strict=True):
            out[name] = out.get(name, 0.0) + after - at
        return out


def bottega_side(client: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """`train(client, spec)` (what `bottega train` runs), timed end to end and per stage. The libraries the raw
    side imports before its clock starts (and Bottega's own modules) are imported first here too; ONNX's
    converter and runtime load inside the clock, as part of Bottega's extra work."""
    import pyarrow.parquet  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import xgboost  # noqa: F401

    import bottega.training.artifacts
    import bottega.training.data  # noqa: F401
    from bottega.training.runner import train

    clock = StageClock()
    posting = [0.0]  # seconds in the run's metric posts (inside the rounds: counted as overhead below)
    log_metrics = client.runs.log_metrics

    def timed_log_metrics(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return log_metrics(*args, **kwargs)
        finally:
            posting[0] += time.perf_counter() - began

    client.runs.log_metrics = timed_log_metrics
    start, cpu = time.perf_counter(), time.process_time()
    result = train(client, dict(spec), clock)
    end = time.perf_counter()
    cpu_seconds = time.process_time() - cpu
    compute = spec["compute"]
    return {
        "side": "bottega" if compute["kind"] == "local" else f"bottega-spark-{compute['workers']}",
        "seconds": end - start,
        "cpu_seconds": cpu_seconds,
        "rounds_seconds": rounds - posting[0]
        if compute["kind"] == "local" and (rounds := clock.rounds_seconds()) is not None
        else None,
        "metric_post_seconds": posting[0],
        "stages": clock.durations(end),
        "auc": result.metrics["auc"],
        "rounds": result.rounds_run,
        "version": result.version,
        "flavor": result.flavor,
        "onnx_max_abs_diff": result.onnx.get("max_abs_diff"),
    }
