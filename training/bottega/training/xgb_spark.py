"""Distributed XGBoost on Spark (`compute: {kind: spark, workers: N}`) with `xgboost.spark`.

The training frame the local trainer uses (`TrainingData`, already read, joined, encoded and split) goes to Spark
as one Arrow table: one float64 column per input (NaN = missing), the encoded label and an `is_eval` flag, its rows
in a seeded random order so every partition holds training and evaluation rows. `SparkXGBClassifier` (binary,
multiclass) or `SparkXGBRegressor` trains it with N barrier tasks that build the trees together (histograms summed
across workers each round) and evaluates on the `is_eval` rows; early stopping watches the last eval metric, as
locally. The result is a plain booster (`model.get_booster()`), handed back as a `TrainedModel`, so evaluation,
reports, ONNX export, artifacts and registration are the local trainer's own.

Session: the one passed in, else the active SparkSession of the process (a notebook's, a cluster's), else a
`local[N]` session built here and stopped afterwards. N workers need N concurrent task slots.

Per-round metrics: `xgboost.spark` returns the whole history only when training ends (`training_summary`), so the
rounds are reported to `on_iteration` then, in order, with the same names as the local trainer (`train.logloss`,
`eval.auc`, ...).

Params map onto the estimator's: `eta` -> `learning_rate`, `lambda` -> `reg_lambda`, `alpha` -> `reg_alpha`,
`min_split_loss` -> `gamma`, the spec's seed -> `random_state`, `num_boost_round` -> `n_estimators`; any other
`xgboost.train` parameter passes through. `nthread` / `n_jobs` are dropped: each worker uses `spark.task.cpus`
threads. Classifiers take their objective from the labels (`binary:logistic`, `multi:softprob`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bottega.core.errors import InvalidInput
from bottega.core.extras import require
from bottega.training.xgb import IterationCallback, TrainedModel, booster_params

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from bottega.training.data import TrainingData
    from bottega.training.spec import TrainingSpec

LABEL = "label"
IS_EVAL = "is_eval"
ALIASES = {"eta": "learning_rate", "lambda": "reg_lambda", "alpha": "reg_alpha", "min_split_loss": "gamma"}
DROPPED = {"nthread", "n_jobs", "seed", "num_class"}
"""Threads come from `spark.task.cpus`; the seed is `random_state`; the class count comes from the labels."""
EVAL_NAMES = {"training": "train", "validation": "eval"}


def estimator_params(spec: TrainingSpec, data: TrainingData) -> dict[str, Any]:
    """The keyword arguments of SparkXGBClassifier / SparkXGBRegressor (besides columns and workers): the local
    trainer's booster parameters under the estimator's names, rounds, early stopping, seed and feature names."""
    out: dict[str, Any] = {}
    for key, value in booster_params(spec, data).items():
        if key in DROPPED or (key == "objective" and spec.xgboost_model.task != "regression"):
            continue
        out[ALIASES.get(key, key)] = value
    out.update(
        random_state=spec.seed,
        n_estimators=spec.xgboost_model.num_boost_round,
        feature_names=list(data.feature_names),
        missing=float("nan"),
        verbose=False,
    )
    if spec.xgboost_model.early_stopping_rounds is not None:
        out["early_stopping_rounds"] = spec.xgboost_model.early_stopping_rounds
    return out


def feature_columns(data: TrainingData) -> list[str]:
    """Spark column names of the inputs (`x0`, `x1`, ...): input names may hold dots, which Spark would parse."""
    return [f"x{j}" for j in range(len(data.feature_names))]


def arrow_frame(data: TrainingData, seed: int) -> pa.Table:
    """Training and evaluation rows in one Arrow table, in a seeded random order (`is_eval` marks the holdout)."""
    import numpy as np
    import pyarrow as pa

    n_train, n_eval = data.train.rows, data.eval.rows
    order = np.random.default_rng(seed).permutation(n_train + n_eval)
    columns: dict[str, Any] = {}
    for j, name in enumerate(feature_columns(data)):
        both = np.concatenate([data.train.features[:, j], data.eval.features[:, j]])
        columns[name] = pa.array(both[order], type=pa.float64())
    columns[LABEL] = pa.array(np.concatenate([data.train.label, data.eval.label])[order], type=pa.float64())
    flags = np.concatenate([np.zeros(n_train, dtype=bool), np.ones(n_eval, dtype=bool)])
    columns[IS_EVAL] = pa.array(flags[order], type=pa.bool_())
    return pa.table(columns)


def build_session(workers: int) -> SparkSession:
    """A `local[workers]` session whose Python workers run this interpreter, Arrow on, no UI."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{workers}]")
        .appName("bottega-train-xgboost")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(workers))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


@contextmanager
def spark_session(workers: int, spark: SparkSession | None = None) -> Iterator[SparkSession]:
    """The given session, else the active one, else a local[workers] session stopped on exit."""
    from pyspark.sql import SparkSession

    session = spark or SparkSession.getActiveSession()
    owned = session is None
    if session is None:
        session = build_session(workers)
    try:
        check_slots(session, workers)
        yield session
    finally:
        if owned:
            session.stop()


def check_slots(session: SparkSession, workers: int) -> None:
    """N barrier tasks must run at once: refuse a session with fewer task slots than workers."""
    context = session.sparkContext
    cpus = int(context.getConf().get("spark.task.cpus", "1") or "1")
    slots = context.defaultParallelism // max(cpus, 1)
    if workers > slots:
        raise InvalidInput(
            f"compute.workers: {workers} workers need {workers} concurrent Spark task slots, but the session "
            f"({context.master}) has {slots}; lower compute.workers or give Spark more cores"
        )


def history_of(summary: Any) -> dict[str, list[float]]:
    """`eval.auc` -> one value per round, from xgboost.spark's training summary ("training" / "validation")."""
    history: dict[str, list[float]] = {}
    if summary is None:
        return history
    parts: Mapping[str, Mapping[str, list[float]]] = {
        "training": summary.train_objective_history,
        "validation": summary.validation_objective_history,
    }
    for name, metrics in parts.items():
        for metric, values in metrics.items():
            history[f"{EVAL_NAMES[name]}.{metric}"] = [float(v) for v in values]
    return history


def replay(history: Mapping[str, list[float]], rounds: int, on_iteration: IterationCallback | None) -> None:
    """Report each round's metrics in order, as the local trainer does while it trains."""
    if on_iteration is None:
        return
    for step in range(rounds):
        on_iteration(step, {key: values[step] for key, values in history.items() if step < len(values)})


def fit_model(spec: TrainingSpec, data: TrainingData, frame: DataFrame, params: Mapping[str, Any]) -> Any:
    """Fit the estimator of the task on the Spark frame; returns the fitted xgboost.spark model."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    kind = SparkXGBRegressor if spec.xgboost_model.task == "regression" else SparkXGBClassifier
    estimator = kind(
        features_col=feature_columns(data),
        label_col=LABEL,
        validation_indicator_col=IS_EVAL,
        num_workers=spec.compute.workers,
        **params,
    )
    return estimator.fit(frame)


def train_xgboost_spark(
    spec: TrainingSpec,
    data: TrainingData,
    on_iteration: IterationCallback | None = None,
    spark: SparkSession | None = None,
) -> TrainedModel:
    """Train on `data.train` with `spec.compute.workers` Spark workers, evaluate every round on `data.eval`, stop
    early on the last eval metric; the booster is cut at the best round, as locally."""
    require("pyspark", "spark")
    require("xgboost", "xgboost")
    params = estimator_params(spec, data)
    with spark_session(spec.compute.workers, spark) as session:
        frame = session.createDataFrame(arrow_frame(data, spec.seed))
        model = fit_model(spec, data, frame, params)
    booster = model.get_booster()
    history = history_of(getattr(model, "training_summary", None))
    rounds_run = int(booster.num_boosted_rounds())
    replay(history, rounds_run, on_iteration)
    best = rounds_run - 1
    if spec.xgboost_model.early_stopping_rounds is not None:
        best = int(booster.best_iteration)
        if best + 1 < rounds_run:
            booster = booster[: best + 1]
    used = {k: v for k, v in params.items() if k not in ("feature_names", "missing", "verbose")}
    used["num_workers"] = spec.compute.workers
    return TrainedModel(booster=booster, params=used, rounds_run=rounds_run, best_iteration=best, history=history)
