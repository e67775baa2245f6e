"""The PyTorch trainer without services: local training for the three tasks, seeded reproducibility, early
stopping, user modules, standardization with missing values, the ONNX export check, and the artifacts reloaded."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score

from bottega.training.data import Part, TrainingData
from bottega.training.spec import SpecError, TrainingSpec, parse_spec
from bottega.training.torch.artifacts import build_torch_artifacts, load_model
from bottega.training.torch.export import export_torch_onnx
from bottega.training.torch.loop import evaluate_epoch, rank_auc
from bottega.training.torch.nets import predict, standardization
from bottega.training.torch.trainer import prepare, train_local

NAMES = [f"x{i}" for i in range(6)]
ROWS = 1500
CUT = 1200


def make_data(task: str, rows: int = ROWS, cut: int = CUT) -> TrainingData:
    x, y = make_classification(
        n_samples=rows, n_features=6, n_informative=4, n_redundant=1, n_classes=3, class_sep=1.5, random_state=3
    )
    x[:, 2] = x[:, 2] * 100.0 + 500.0  # a column far from standard scale
    x[::13, 1] = np.nan
    classes: list[Any] | None
    if task == "binary":
        label, classes = (y == 0).astype(np.float64), [0, 1]
    elif task == "multiclass":
        label, classes = y.astype(np.float64), ["a", "b", "c"]
    else:
        label, classes = np.nan_to_num(x) @ np.array([1.5, -2.0, 0.01, 0.0, 1.0, 3.0]) * 10.0 + 50.0, None
    return TrainingData(
        NAMES,
        [(n, "float64") for n in NAMES],
        {},
        classes,
        Part(x[:cut], label[:cut]),
        Part(x[cut:], label[cut:]),
        0,
    )


def make_spec(task: str = "binary", seed: int = 3, **model: Any) -> TrainingSpec:
    section = {"type": "pytorch", "task": task, "architecture": {"hidden": [16, 8]}, "epochs": 6, "batch_size": 64}
    section.update({"lr": 0.01, **model})
    return parse_spec(
        {
            "project": "p",
            "model_name": "m",
            "seed": seed,
            "dataset": {"labels": "l.parquet", "entity_keys": ["id"], "label_column": "y", "request_features": NAMES},
            "split": {"kind": "random"},
            "model": section,
            "evaluation": {"permutation_repeats": 1},
        }
    )


def onnx_outputs(path: Path, rows: np.ndarray) -> list[Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(session.run(None, {"input": rows.astype(np.float32)}))


def test_local_binary_artifacts_and_reload(tmp_path: Path) -> None:
    spec, data = make_spec(), make_data("binary")
    trained = train_local(spec, data)
    assert trained.rounds_run == 6
    assert trained.best_iteration == 5
    assert len(trained.history["eval.auc"]) == 6
    built = build_torch_artifacts(spec, data, trained, tmp_path)

    assert built.metrics["auc"] > 0.9
    assert built.metrics["auc"] == pytest.approx(trained.history["eval.auc"][-1], abs=1e-6)
    assert built.flavor == "onnx"
    assert built.flavors == {"torch": "model.pt", "onnx": "model.onnx"}
    assert {p.name for p in built.files} == {
        "model.pt",
        "model.json",
        "model.onnx",
        "evaluation.json",
        "feature_report.json",
        "history.json",
        "spec.yaml",
    }
    assert built.onnx["valid"]
    assert built.onnx["max_abs_diff"] <= 1e-5
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["trainer"] == "pytorch"
    assert set(evaluation["importance"]["permutation"]) == set(NAMES)
    assert "gain" not in evaluation["importance"]

    config = json.loads((tmp_path / "model.json").read_text())
    assert config["feature_names"] == NAMES
    assert config["mean"][1] == pytest.approx(np.nanmean(data.train.features[:, 1]))
    assert config["std"][2] == pytest.approx(np.std(data.train.features[:, 2]), rel=1e-6)

    reloaded = load_model(tmp_path)
    fresh = np.random.default_rng(1).normal(size=(200, 6)) * [1, 1, 100, 1, 1, 1] + [0, 0, 500, 0, 0, 0]
    fresh[::4, 1] = np.nan  # imputed with the training mean, in torch and in ONNX alike
    np.testing.assert_array_equal(predict(reloaded, fresh), predict(trained.net, fresh))
    label, probabilities = onnx_outputs(tmp_path / "model.onnx", fresh)
    assert np.abs(probabilities[:, 1] - predict(reloaded, fresh)).max() <= 1e-5
    np.testing.assert_array_equal(label, (probabilities[:, 1] > probabilities[:, 0]).astype(np.int64))


def test_local_training_is_seeded_and_leaves_the_callers_random_state() -> None:
    data = make_data("binary")
    before = torch.random.get_rng_state()
    first = train_local(make_spec(architecture={"hidden": [16], "dropout": 0.2}), data)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = train_local(make_spec(architecture={"hidden": [16], "dropout": 0.2}), data)
    assert first.history == second.history
    for key, value in first.net.state_dict().items():
        assert torch.equal(value, second.net.state_dict()[key]), key
    other = train_local(make_spec(seed=4, architecture={"hidden": [16], "dropout": 0.2}), data)
    assert other.history["eval.loss"] != first.history["eval.loss"]


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = make_data("binary", rows=300, cut=150)
    spec = make_spec(architecture={"hidden": [128, 128]}, epochs=80, lr=0.02, batch_size=16, early_stopping_patience=3)
    trained = train_local(spec, data)
    losses = trained.history["eval.loss"]
    assert trained.rounds_run < 80, "the network should overfit 150 rows and stop early"
    assert len(losses) == trained.rounds_run
    assert trained.best_iteration == int(np.argmin(losses))
    assert trained.rounds_run - 1 - trained.best_iteration == 3
    held = (
        torch.from_numpy(data.eval.features.astype(np.float32)),
        torch.from_numpy(data.eval.label.astype(np.float32)),
    )
    assert evaluate_epoch(trained.net, *held)["eval.loss"] == pytest.approx(min(losses), abs=1e-6)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_multiclass_and_regression(tmp_path: Path, optimizer: str) -> None:
    spec, data = make_spec("multiclass", optimizer=optimizer), make_data("multiclass")
    built = build_torch_artifacts(spec, data, train_local(spec, data), tmp_path)
    assert built.metrics["accuracy"] > 0.6
    assert built.flavor == "onnx", built.warnings
    assert json.loads((tmp_path / "model.json").read_text())["classes"] == ["a", "b", "c"]

    spec, data = make_spec("regression", optimizer=optimizer), make_data("regression")
    out = tmp_path / "regression"
    out.mkdir()
    built = build_torch_artifacts(spec, data, train_local(spec, data), out)
    assert built.metrics["r2"] > 0.8  # the target is standardized for training and scaled back
    assert built.flavor == "onnx", built.warnings
    (values,) = onnx_outputs(out / "model.onnx", data.eval.features)
    assert values.shape == (data.eval.rows, 1)


USER_MODULE = '''
import torch
from torch import nn


class Wide(nn.Module):
    """A user network: n_inputs -> width -> n_outputs, with a skip connection."""

    def __init__(self, n_inputs, n_outputs, width=8, scale=1.0):
        super().__init__()
        self.hidden = nn.Linear(n_inputs, width)
        self.out = nn.Linear(width, n_outputs)
        self.skip = nn.Linear(n_inputs, n_outputs)
        self.scale = scale

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x))) * self.scale + self.skip(x)


class Flat(nn.Module):
    def __init__(self, n_inputs, n_outputs):
        super().__init__()
        self.layer = nn.Linear(n_inputs, 5)

    def forward(self, x):
        return self.layer(x)


class NotAModule:
    pass
'''


def test_a_user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = make_spec(architecture={"module": f"{name}:Wide", "params": {"width": 12, "scale": 0.5}})
    prepare(spec)
    data = make_data("binary")
    trained = train_local(spec, data)
    assert type(trained.net.core).__name__ == "Wide"
    hidden = trained.net.core.hidden
    assert isinstance(hidden, torch.nn.Linear)
    assert hidden.out_features == 12
    out = tmp_path / "artifacts"
    out.mkdir()
    built = build_torch_artifacts(spec, data, trained, out)
    assert built.metrics["auc"] > 0.9
    assert built.flavor == "onnx", built.warnings
    assert json.loads((out / "model.json").read_text())["architecture"] == {
        "kind": "module",
        "module": f"{name}:Wide",
        "params": {"width": 12, "scale": 0.5},
    }
    np.testing.assert_array_equal(
        predict(load_model(out), data.eval.features), predict(trained.net, data.eval.features)
    )

    with pytest.raises(SpecError, match=r"forward\(x\) must return rows x 1 scores; got \(3, 5\)"):
        train_local(make_spec(architecture=f"{name}:Flat"), data)
    with pytest.raises(SpecError, match=r"is not a torch\.nn\.Module subclass"):
        prepare(make_spec(architecture=f"{name}:NotAModule"))
    with pytest.raises(SpecError, match=f"'{name}' has no 'Missing'"):
        prepare(make_spec(architecture=f"{name}:Missing"))
    with pytest.raises(SpecError, match=r"cannot import 'no_such_package_x\.nets' \(No module named"):
        prepare(make_spec(architecture="no_such_package_x.nets:Net"))
    with pytest.raises(SpecError, match=r"Wide\(n_inputs, n_outputs, \*\*params\) failed"):
        train_local(make_spec(architecture={"module": f"{name}:Wide", "params": {"depth": 2}}), data)


def test_standardization_of_missing_and_constant_columns() -> None:
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])
    mean, std = standardization(x)
    assert mean == [2.0, 5.0, 0.0]
    assert std == [1.0, 1.0, 1.0]  # std 1 of [1, 3]; a constant and an empty column keep std 1


def test_rank_auc_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    score = np.round(rng.random(400) + 0.4 * y, 1)  # many ties
    assert rank_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert rank_auc(np.zeros(5), np.arange(5.0)) is None


def test_an_export_that_does_not_match_gets_no_onnx(tmp_path: Path) -> None:
    spec, data = make_spec(epochs=1), make_data("binary")
    trained = train_local(spec, data)
    wrong = predict(trained.net, data.eval.features) + 1e-3
    result = export_torch_onnx(trained.net, data.eval.features, wrong, "binary", tmp_path / "model.onnx")
    assert not result.ok
    assert not (tmp_path / "model.onnx").exists()
    assert result.warning is not None
    assert "differs from the torch model" in result.warning
    assert result.max_abs_diff == pytest.approx(1e-3, rel=1e-2)
