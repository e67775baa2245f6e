"""Tiny models for the serving tests: XGBoost boosters (binary, multiclass, regression) with their ONNX export, custom
Python models (PyML), a local wheel to install into a PyML venv without a network, and registration in a test API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bottega.api.registry.schemas import VersionRead
from bottega.sdk import Client

OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}


@dataclass
class TinyModel:
    task: str
    booster: Any
    features: np.ndarray
    """rows the model was trained on (float64, with NaN for missing values)."""

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def native(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(rows, missing=np.nan), dtype=np.float64)


def train_tiny(
    task: str, *, n_features: int = 6, rows: int = 400, rounds: int = 20, depth: int = 3, seed: int = 0
) -> TinyModel:
    """A booster on random data with some missing values (`objective` by task; 3 classes for multiclass)."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, n_features))
    signal = features[:, 0] + 0.5 * features[:, 1]
    features[rng.random(features.shape) < 0.05] = np.nan
    if task == "binary":
        label = (signal + rng.normal(scale=0.5, size=rows) > 0).astype(np.float64)
    elif task == "multiclass":
        label = np.digitize(signal, [-0.5, 0.5]).astype(np.float64)
    else:
        label = 100.0 * signal + rng.normal(size=rows)
    params: dict[str, Any] = {"objective": OBJECTIVES[task], "max_depth": depth, "seed": seed, "nthread": 1}
    if task == "multiclass":
        params["num_class"] = 3
    booster = xgb.train(params, xgb.DMatrix(features, label=label), num_boost_round=rounds)
    return TinyModel(task, booster, features)


def signature(task: str, n_features: int) -> dict[str, Any]:
    """Request features f0..fN, outputs named as training names them."""
    outputs = {
        "binary": [{"name": "probability", "type": "float64"}],
        "multiclass": [{"name": "probabilities", "type": "float64", "shape": [3]}],
        "regression": [{"name": "prediction", "type": "float64"}],
    }[task]
    return {"inputs": [{"name": f"f{i}", "type": "float64"} for i in range(n_features)], "outputs": outputs}


def write_tree_files(model: TinyModel, folder: Path, *, onnx: bool = True) -> dict[str, Path]:
    """model.ubj, model.onnx (the training export) and evaluation.json of `model` in `folder`."""
    from bottega.training.onnx_export import convert

    folder.mkdir(parents=True, exist_ok=True)
    files = {"model.ubj": folder / "model.ubj", "evaluation.json": folder / "evaluation.json"}
    model.booster.save_model(str(files["model.ubj"]))
    files["evaluation.json"].write_text(json.dumps({"task": model.task}))
    if onnx:
        files["model.onnx"] = folder / "model.onnx"
        files["model.onnx"].write_bytes(convert(model.booster, model.n_features).SerializeToString())
    return files


def register_tree(client: Client, project: str, name: str, model: TinyModel, folder: Path) -> VersionRead:
    """A version of flavor onnx (model.onnx + model.ubj) registered in the API."""
    files = write_tree_files(model, folder)
    ensure_model(client, project, name)
    return client.models.register_version(
        project,
        name,
        "onnx",
        {k: str(v) for k, v in files.items()},
        signature=signature(model.task, model.n_features),
        evaluation={"task": model.task},
        lineage={"flavors": {"onnx": "model.onnx", "xgboost": "model.ubj"}},
    )


def ensure_model(client: Client, project: str, name: str) -> None:
    from bottega.core.errors import NotFound

    try:
        client.models.get(project, name)
    except NotFound:
        client.models.create(project, name)


def write_pyml(folder: Path, model_py: str, requirements: str = "", extra: dict[str, bytes] | None = None) -> Path:
    """A PyML version folder: model.py (dedented), requirements.txt and any extra files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(textwrap.dedent(model_py))
    (folder / "requirements.txt").write_text(requirements)
    for name, data in (extra or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def register_pyml(client: Client, project: str, name: str, folder: Path, inputs: list[tuple[str, str]]) -> VersionRead:
    ensure_model(client, project, name)
    return client.models.register_version(
        project,
        name,
        "python",
        str(folder),
        signature={
            "inputs": [{"name": n, "type": t} for n, t in inputs],
            "outputs": [{"name": "prediction", "type": "float64"}],
        },
    )


def build_wheel(workdir: Path, name: str = "tinyplus", version: str = "0.1") -> Path:
    """A pure-Python wheel of a one-function package `name` (plus(a, b)), built offline with the venv's
    setuptools."""
    src = workdir / f"{name}-src"
    (src / name).mkdir(parents=True, exist_ok=True)
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            """
        )
    )
    (src / name / "__init__.py").write_text("def plus(a, b):\n    return a + b\n")
    dist = workdir / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            f"{src}/",
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob(f"{name}-{version}-*.whl")
    return wheel
