"""Training spec validation: every invalid spec names the field to fix; YAML files resolve relative paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bottega.training.spec import Gate, SpecError, load_spec, parse_spec

BASE: dict[str, Any] = {
    "project": "eats",
    "model_name": "eta",
    "dataset": {
        "labels": "labels.parquet",
        "entity_keys": ["restaurant_id"],
        "label_column": "late",
        "features": ["eats:daily_prep:avg_prep"],
        "request_features": ["distance_km"],
    },
    "split": {"kind": "random", "eval_fraction": 0.25, "seed": 3},
    "model": {"type": "xgboost", "task": "binary", "params": {"max_depth": 4}},
    "gates": ["auc >= 0.80", "log_loss<0.5"],
}


def spec_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted keys replaced (`model.task`), or removed when the value is `...`."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = data
        for key in parents:
            target = target[key]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return data


def test_a_valid_spec_parses_with_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.gates == [Gate(metric="auc", op=">=", threshold=0.8), Gate(metric="log_loss", op="<", threshold=0.5)]
    assert spec.compute.kind == "local"
    assert spec.dataset.timestamp_column == "timestamp"
    assert spec.to_document()["gates"] == ["auc >= 0.8", "log_loss < 0.5"]
    assert spec.gates[0].holds(0.8)
    assert not spec.gates[1].holds(0.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"project": ...}, "project: Field required"),
        ({"dataset__label_column": ...}, "dataset.label_column: Field required"),
        ({"dataset__features": ["eats:daily_prep"]}, "dataset.features[0]"),
        ({"dataset__features": [], "dataset__request_features": []}, "dataset: give at least one input"),
        ({"dataset__request_features": ["late"]}, "'late' is the label column"),
        ({"dataset__entity_keys": ["a", "a"]}, "dataset.entity_keys: 'a' is listed twice"),
        ({"dataset__key_columns": {"restaurant_id": "restId"}}, "'restId' must also be listed in entity_keys"),
        ({"dataset__key_columns": {"a": "x", "b": "x"}}, "two join keys are read from the column 'x'"),
        ({"split": {"kind": "time"}}, "split.time.cut: Field required"),
        ({"split": {"kind": "time", "cut": 1700000000.5 + 1j}}, "split.time.cut"),
        ({"split": {"kind": "kfold"}}, "split: Input tag 'kfold'"),
        ({"split__eval_fraction": 0.0}, "split.random.eval_fraction"),
        ({"model__type": "keras"}, "model: Input tag 'keras' found using 'type'"),
        ({"model__task": "ranking"}, "model.task"),
        ({"model__params": {"seed": 3}}, "model.params: params.seed is not allowed here"),
        ({"model__params": {"objective": "reg:squarederror"}}, "does not fit task 'binary'"),
        ({"model__num_boost_round": 0}, "model.num_boost_round"),
        ({"compute": "torchrun"}, "compute.kind: compute 'torchrun' trains PyTorch models"),
        ({"compute": {"kind": "ray"}}, "compute.kind: unknown compute 'ray'"),
        ({"gates": ["auc => 0.8"]}, "gates[0]: 'auc => 0.8' is not a gate"),
        ({"gates": ["rmse <= 2"]}, "gates[0]: unknown metric 'rmse' for task 'binary'"),
        ({"unknown": 1}, "unknown: Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(**changes))
    assert message in caught.value.detail


def test_gate_metrics_follow_the_task() -> None:
    spec = parse_spec(spec_with(model__task="regression", gates=["r2 >= 0.5", "rmse < 3"]))
    assert [g.metric for g in spec.gates] == ["r2", "rmse"]
    with pytest.raises(SpecError, match="use one of rmse, mae, mape, r2"):
        parse_spec(spec_with(model__task="regression", gates=["auc > 0.5"]))


def test_yaml_file_resolves_paths_from_its_folder(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(BASE))
    spec = load_spec(path)
    assert spec.labels_path() == tmp_path / "labels.parquet"
    assert load_spec(spec) is spec
    path.write_text("project: [unclosed")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_spec(path)
    path.write_text(yaml.safe_dump({**BASE, "compute": "quantum"}))
    with pytest.raises(SpecError, match=rf"invalid training spec {path}: compute\.kind"):
        load_spec(path)
    with pytest.raises(SpecError, match="is not a file"):
        load_spec(tmp_path / "missing.yaml")


def test_split_cut_follows_the_timestamp_rule() -> None:
    """One rule everywhere (bottega.core.timestamps): an offset is honoured, a naive time is UTC with a warning."""
    from datetime import UTC, datetime

    from bottega.core.timestamps import NaiveTimestampWarning

    rome = parse_spec(spec_with(split={"kind": "time", "cut": "2026-11-20T01:00:00+01:00"}))
    assert rome.split.cut == datetime(2026, 11, 20, tzinfo=UTC)  # type: ignore[union-attr]
    with pytest.warns(NaiveTimestampWarning, match="split.cut 2026-11-20T00:00:00 has no time zone; read as UTC"):
        naive = parse_spec(spec_with(split={"kind": "time", "cut": "2026-11-20T00:00:00"}))
    assert naive.split.cut == datetime(2026, 11, 20, tzinfo=UTC)  # type: ignore[union-attr]
