"""ONNX Runtime and native XGBoost runtimes on real tiny boosters: output shapes per task, agreement with the
booster, and load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from serving_models import TinyModel, signature, train_tiny, write_tree_files

from bottega.serving.runtimes.base import ModelLoadError, task_of
from bottega.serving.runtimes.loader import LoadedArtifacts, load_runtime
from bottega.serving.runtimes.onnx import OnnxRuntime
from bottega.serving.runtimes.xgboost import XGBoostRuntime

TASKS = ["binary", "multiclass", "regression"]


@pytest.fixture(scope="module", params=TASKS)
def tiny(request: pytest.FixtureRequest) -> TinyModel:
    return train_tiny(request.param)


def expected_shape(task: str, rows: int) -> tuple[int, ...]:
    return (rows, 3) if task == "multiclass" else (rows,)


def scaled(native: np.ndarray, other: np.ndarray, task: str) -> float:
    diff = np.abs(native - other)
    if task == "regression":
        diff = diff / np.maximum(1.0, np.abs(native))
    return float(diff.max())


def artifacts(folder: Path, files: dict[str, Path], task: str, flavor: str = "onnx") -> LoadedArtifacts:
    return LoadedArtifacts(
        project="p",
        model="m",
        version=1,
        root=folder,
        files=files,
        flavor=flavor,
        signature=signature(task, 6),
        evaluation={"task": task},
        venv_root=folder / "venvs",
    )


def test_onnx_matches_native_booster(tiny: TinyModel, tmp_path: Path) -> None:
    files = write_tree_files(tiny, tmp_path)
    runtime = OnnxRuntime(files["model.onnx"], task=tiny.task, signature=signature(tiny.task, 6))
    rows = tiny.features[:200]
    got = runtime.predict(rows)
    assert got.dtype == np.float64
    assert got.shape == expected_shape(tiny.task, 200)
    native = tiny.native(rows)
    assert native.shape == got.shape
    assert scaled(native, got, tiny.task) <= 1e-5
    if tiny.task != "regression":
        assert np.all((got >= 0) & (got <= 1))
    if tiny.task == "multiclass":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert runtime.n_inputs == 6
    assert runtime.task == tiny.task


def test_native_runtime_equals_booster_and_onnx(tiny: TinyModel, tmp_path: Path) -> None:
    files = write_tree_files(tiny, tmp_path)
    native = XGBoostRuntime(files["model.ubj"], task=tiny.task, signature=signature(tiny.task, 6))
    onnx = OnnxRuntime(files["model.onnx"], task=tiny.task)
    rows = tiny.features[:100]
    got = native.predict(rows)
    assert got.shape == expected_shape(tiny.task, 100)
    np.testing.assert_array_equal(got, tiny.native(rows))
    assert scaled(got, onnx.predict(rows), tiny.task) <= 1e-5
    single = native.predict(rows[:1])
    assert single.shape == expected_shape(tiny.task, 1)


def test_task_inferred_from_the_graph_without_a_version_task(tiny: TinyModel, tmp_path: Path) -> None:
    files = write_tree_files(tiny, tmp_path)
    runtime = OnnxRuntime(files["model.onnx"])
    assert runtime.task == tiny.task
    assert runtime.predict(tiny.features[:3]).shape == expected_shape(tiny.task, 3)


def test_task_mismatch_refused(tmp_path: Path) -> None:
    files = write_tree_files(train_tiny("regression"), tmp_path)
    with pytest.raises(ModelLoadError, match=r"model\.onnx: the version's task is binary"):
        OnnxRuntime(files["model.onnx"], task="binary")
    with pytest.raises(ModelLoadError, match=r"model\.ubj: the version's task is binary"):
        XGBoostRuntime(files["model.ubj"], task="binary")


def test_width_checks(tmp_path: Path) -> None:
    files = write_tree_files(train_tiny("binary"), tmp_path)
    with pytest.raises(ModelLoadError, match="takes 6 inputs but the signature lists 4"):
        OnnxRuntime(files["model.onnx"], signature=signature("binary", 4))
    with pytest.raises(ModelLoadError, match="takes 6 inputs but the signature lists 4"):
        XGBoostRuntime(files["model.ubj"], signature=signature("binary", 4))
    runtime = OnnxRuntime(files["model.onnx"])
    with pytest.raises(ValueError, match="rows of 6 inputs"):
        runtime.predict(np.zeros((2, 5)))


@pytest.mark.parametrize("name", ["model.onnx", "model.ubj"])
def test_missing_and_garbage_files(tmp_path: Path, name: str) -> None:
    opener = OnnxRuntime if name == "model.onnx" else XGBoostRuntime
    with pytest.raises(ModelLoadError, match=rf"{name}: the file is missing"):
        opener(tmp_path / name)
    (tmp_path / name).write_bytes(b"\x00garbage, not a model" * 10)
    with pytest.raises(ModelLoadError, match=rf"{name}: not a model"):
        opener(tmp_path / name)


def test_margin_objectives_give_probabilities(tmp_path: Path) -> None:
    import xgboost as xgb

    tiny = train_tiny("binary")
    raw = xgb.train(
        {"objective": "binary:logitraw", "max_depth": 3},
        xgb.DMatrix(tiny.features, label=tiny.native(tiny.features) > 0.5),
    )
    raw.save_model(str(tmp_path / "model.ubj"))
    got = XGBoostRuntime(tmp_path / "model.ubj").predict(tiny.features[:20])
    margin = raw.inplace_predict(tiny.features[:20], predict_type="margin")
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-margin)), rtol=1e-6)


def test_load_runtime_prefers_onnx_then_falls_back(tmp_path: Path) -> None:
    tiny = train_tiny("binary")
    files = write_tree_files(tiny, tmp_path)
    assert isinstance(load_runtime(artifacts(tmp_path, files, "binary")), OnnxRuntime)
    chosen = load_runtime(artifacts(tmp_path, files, "binary"), prefer=("xgboost", "onnx"))
    assert isinstance(chosen, XGBoostRuntime)
    only_native = {k: v for k, v in files.items() if k != "model.onnx"}
    assert isinstance(load_runtime(artifacts(tmp_path, only_native, "binary", "xgboost")), XGBoostRuntime)
    files["model.onnx"].write_bytes(b"garbage")
    fallback = load_runtime(artifacts(tmp_path, files, "binary"))
    assert isinstance(fallback, XGBoostRuntime)
    np.testing.assert_array_equal(fallback.predict(tiny.features[:5]), tiny.native(tiny.features[:5]))


def test_load_runtime_errors(tmp_path: Path) -> None:
    tiny = train_tiny("binary")
    files = write_tree_files(tiny, tmp_path)
    torch_only = {"model.pt": tmp_path / "model.pt", "evaluation.json": files["evaluation.json"]}
    with pytest.raises(ModelLoadError, match=r"p/m:1 \(flavor torch\) has nothing the runtimes"):
        load_runtime(artifacts(tmp_path, torch_only, "binary", "torch"))
    with pytest.raises(ModelLoadError, match="nothing the runtimes xgboost can serve"):
        load_runtime(artifacts(tmp_path, {"model.onnx": files["model.onnx"]}, "binary"), prefer=("xgboost",))
    files["model.onnx"].write_bytes(b"garbage")
    files["model.ubj"].write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=r"onnx: model.onnx: not a model.*xgboost: model.ubj: not a model"):
        load_runtime(artifacts(tmp_path, files, "binary"))
    with pytest.raises(ModelLoadError, match=r"needs a model\.py"):
        load_runtime(artifacts(tmp_path, files, "binary", "python"))
    with pytest.raises(ValueError, match="unknown runtime 'tensorflow'"):
        load_runtime(artifacts(tmp_path, files, "binary"), prefer=("tensorflow",))


def test_task_of() -> None:
    assert task_of({"task": "multiclass"}, {}) == "multiclass"
    assert task_of({}, signature("binary", 2)) == "binary"
    assert task_of({}, signature("multiclass", 2)) == "multiclass"
    assert task_of({}, signature("regression", 2)) == "regression"
    assert task_of({"task": "ranking"}, {"outputs": [{"name": "score"}]}) is None


@pytest.mark.parametrize("task", TASKS)
def test_torch_exports_are_normalized_like_trees(task: str, tmp_path: Path) -> None:
    """A network exported by training (`OnnxHead`: label + probabilities, or variable) answers in the same shapes."""
    import torch

    from bottega.training.torch.export import to_onnx
    from bottega.training.torch.nets import NetConfig, build_net

    outputs = {"binary": 1, "multiclass": 3, "regression": 1}[task]
    torch.manual_seed(0)
    config = NetConfig(
        task=task,
        n_inputs=6,
        n_outputs=outputs,
        architecture={"kind": "mlp", "hidden": [8], "dropout": 0.0, "activation": "relu"},
        feature_names=[f"f{i}" for i in range(6)],
        classes=["a", "b", "c"] if task == "multiclass" else None,
        mean=[0.0] * 6,
        std=[1.0] * 6,
        target_mean=50.0 if task == "regression" else 0.0,
        target_std=10.0 if task == "regression" else 1.0,
    )
    net = build_net(config).eval()
    (tmp_path / "model.onnx").write_bytes(to_onnx(net))
    rows = train_tiny("binary").features[:40]
    with torch.no_grad():
        expected = net.outputs(net(torch.tensor(rows, dtype=torch.float32))).double().numpy()
    runtime = OnnxRuntime(tmp_path / "model.onnx", task=task, signature=signature(task, 6))
    got = runtime.predict(rows)
    assert got.shape == expected_shape(task, 40)
    assert scaled(expected, got, task) <= 1e-5
