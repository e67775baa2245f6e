"""PyTorch spec validation: defaults, shorthands, and every invalid field named (pydantic only, no torch)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bottega.training.spec import SpecError, parse_spec
from bottega.training.torch.spec import MlpArchitecture, ModuleArchitecture, TorchModel

BASE: dict[str, Any] = {
    "project": "eats",
    "model_name": "eta",
    "seed": 5,
    "dataset": {
        "labels": "labels.parquet",
        "entity_keys": ["restaurant_id"],
        "label_column": "late",
        "request_features": ["distance_km", "items"],
    },
    "split": {"kind": "random", "eval_fraction": 0.25, "seed": 3},
    "model": {"type": "pytorch", "task": "binary"},
    "gates": ["auc >= 0.80"],
}


def spec_with(model: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["model"].update(model or {})
    data.update(top)
    return data


def test_defaults_and_the_model_union() -> None:
    spec = parse_spec(BASE)
    model = spec.model
    assert isinstance(model, TorchModel)
    assert spec.torch_model is model
    assert model.architecture == MlpArchitecture(hidden=[64, 32], dropout=0.0, activation="relu")
    assert (model.epochs, model.batch_size, model.lr, model.optimizer) == (20, 256, 1e-3, "adam")
    assert model.early_stopping_patience is None
    assert spec.compute.kind == "local"
    assert spec.compute.processes == 1
    with pytest.raises(SpecError, match="the XGBoost trainer cannot train a 'pytorch' model"):
        _ = spec.xgboost_model
    assert spec.to_document()["model"]["architecture"]["kind"] == "mlp"


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        ("mlp", MlpArchitecture()),
        (
            {"hidden": [8], "dropout": 0.2, "activation": "gelu"},
            MlpArchitecture(hidden=[8], dropout=0.2, activation="gelu"),
        ),
        ("nets.tabular:ResNet", ModuleArchitecture(module="nets.tabular:ResNet")),
        (
            {"module": "nets:Wide", "params": {"width": 16}},
            ModuleArchitecture(module="nets:Wide", params={"width": 16}),
        ),
        ({"kind": "module", "module": "a.b.c:D"}, ModuleArchitecture(module="a.b.c:D")),
    ],
)
def test_architecture_shorthands(architecture: Any, expected: Any) -> None:
    model = parse_spec(spec_with({"architecture": architecture})).torch_model
    assert model.architecture == expected


@pytest.mark.parametrize(
    ("model", "top", "message"),
    [
        ({"architecture": {"hidden": [0]}}, {}, "model.architecture.mlp.hidden[0]: Input should be greater than"),
        ({"architecture": {"dropout": 1.0}}, {}, "model.architecture.mlp.dropout: Input should be less than 1"),
        ({"architecture": {"activation": "sigmoid"}}, {}, "model.architecture.mlp.activation"),
        ({"architecture": {"kind": "cnn"}}, {}, "model.architecture: Input tag 'cnn'"),
        ({"architecture": {"module": "not a path"}}, {}, "model.architecture.module.module: String should match"),
        ({"architecture": "nets/tab:Net"}, {}, "model.architecture.module.module: String should match"),
        (
            {"architecture": {"module": "nets:Net", "params": {"n_inputs": 3}}},
            {},
            "params.n_inputs is not allowed here",
        ),
        ({"architecture": {"module": "nets:Net", "hidden": [3]}}, {}, "model.architecture.module.hidden: Extra inputs"),
        ({"epochs": 0}, {}, "model.epochs: Input should be greater than or equal to 1"),
        ({"batch_size": 0}, {}, "model.batch_size"),
        ({"lr": 0}, {}, "model.lr: Input should be greater than 0"),
        ({"optimizer": "rmsprop"}, {}, "model.optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
        ({"weight_decay": -1}, {}, "model.weight_decay"),
        ({"early_stopping_patience": 0}, {}, "model.early_stopping_patience"),
        ({"num_boost_round": 10}, {}, "model.num_boost_round: Extra inputs are not permitted"),
        ({"task": "ranking"}, {}, "model.task: Input should be 'binary', 'multiclass' or 'regression'"),
        ({}, {"compute": {"kind": "torchrun", "processes": 0}}, "compute.processes: Input should be greater than"),
        ({}, {"compute": {"kind": "torchrun", "workers": 2}}, "compute.workers: torchrun takes `compute.processes`"),
        (
            {},
            {"compute": {"kind": "local", "processes": 2}},
            "compute.processes: only for torchrun, torch_distributor and horovod",
        ),
        ({}, {"gates": ["rmse <= 3"]}, "gates[0]: unknown metric 'rmse' for task 'binary'"),
    ],
)
def test_invalid_torch_fields_are_named(model: dict[str, Any], top: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(model, **top))
    assert message in caught.value.detail


def test_computes_fit_the_model_type() -> None:
    for kind in ("torchrun", "torch_distributor"):
        spec = parse_spec(spec_with(compute={"kind": kind, "processes": 2}))
        assert (spec.compute.kind, spec.compute.processes) == (kind, 2)
    xgb = spec_with(compute="torchrun")
    xgb["model"] = {"type": "xgboost", "task": "binary"}
    with pytest.raises(SpecError, match=r"compute\.kind: compute 'torchrun' trains PyTorch models"):
        parse_spec(xgb)
    untyped = spec_with()
    untyped["model"] = {"task": "binary"}
    with pytest.raises(SpecError, match=r"model: Unable to extract tag using discriminator 'type'"):
        parse_spec(untyped)
    with pytest.raises(SpecError, match=r"model: Input tag 'keras' found using 'type'"):
        parse_spec(spec_with({"type": "keras"}))
