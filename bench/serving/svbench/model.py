"""The benchmark model and its requests: an XGBoost binary classifier (200 trees, depth 6, 50 float features)
trained on generated data, saved as `model.ubj` and exported to `model.onnx` with the training converter.

Generated once per size under `bench/.data/serving/model-<tag>/` (seeded, so every run serves the same model), with
`rows.json`: the feature rows requests are made of (the same rows, in the same order, for every side).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

N_FEATURES = 50
N_REQUEST_ROWS = 1000
"""distinct request bodies a load run cycles through."""


@dataclass(frozen=True)
class ModelSpec:
    trees: int = 200
    depth: int = 6
    features: int = N_FEATURES
    train_rows: int = 20_000
    seed: int = 7

    def tag(self) -> str:
        return f"t{self.trees}-d{self.depth}-f{self.features}-r{self.train_rows}-s{self.seed}"


@dataclass(frozen=True)
class ModelFiles:
    folder: Path
    spec: ModelSpec

    @property
    def ubj(self) -> Path:
        return self.folder / "model.ubj"

    @property
    def onnx(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation.json"

    def rows(self) -> list[list[float]]:
        data: list[list[float]] = json.loads((self.folder / "rows.json").read_text())
        return data

    def names(self) -> list[str]:
        return [f"f{i}" for i in range(self.spec.features)]


def ensure_model(root: Path, spec: ModelSpec) -> ModelFiles:
    """The model of `spec`, trained and exported on first use (written to a temporary folder, then renamed)."""
    folder = root / f"model-{spec.tag()}"
    files = ModelFiles(folder, spec)
    if (folder / "rows.json").exists():
        return files
    work = root / f".model-{spec.tag()}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    _train(ModelFiles(work, spec))
    try:
        work.rename(folder)
    except OSError:  # another run finished first: use its copy
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return files


def _train(files: ModelFiles) -> None:
    import numpy as np
    import xgboost as xgb

    from bottega.training.onnx_export import convert

    spec = files.spec
    rng = np.random.default_rng(spec.seed)
    x = rng.normal(size=(spec.train_rows, spec.features))
    weights = rng.normal(size=spec.features)
    logit = x @ weights / np.sqrt(spec.features) + 0.5 * x[:, 0] * x[:, 1] + 0.3 * np.sin(3 * x[:, 2])
    label = (logit + rng.normal(scale=0.5, size=spec.train_rows) > 0).astype(np.float64)
    params: dict[str, Any] = {
        "objective": "binary:logistic",
        "max_depth": spec.depth,
        "eta": 0.1,
        "seed": spec.seed,
        "nthread": 2,
    }
    booster = xgb.train(params, xgb.DMatrix(x, label=label), num_boost_round=spec.trees)
    booster.save_model(str(files.ubj))
    files.onnx.write_bytes(convert(booster, spec.features).SerializeToString())
    files.evaluation.write_text(json.dumps({"task": "binary"}))
    requests = np.round(rng.normal(size=(N_REQUEST_ROWS, spec.features)), 6)
    (files.folder / "rows.json").write_text(json.dumps(requests.tolist()))


def instance(names: list[str], row: list[float], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(extra or {}), **dict(zip(names, row, strict=True))}


def write_bodies(path: Path, bodies: list[dict[str, Any]]) -> Path:
    """One JSON request body per line (what the load tool cycles through)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(body, separators=(",", ":")) + "\n" for body in bodies))
    return path


def predict_bodies(files: ModelFiles) -> list[dict[str, Any]]:
    """`{"instances": [row]}` single-row bodies: the floor's and Bottega's case (a)."""
    names = files.names()
    return [{"instances": [instance(names, row)]} for row in files.rows()]


def mlflow_bodies(files: ModelFiles) -> list[dict[str, Any]]:
    """The same rows in MLflow's `dataframe_split` format (its documented pandas input)."""
    names = files.names()
    return [{"dataframe_split": {"columns": names, "data": [row]}} for row in files.rows()]
