"""Batch scoring without services: input checks against a signature, prediction columns, atomic outputs, params."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from bottega.serving.batch.jobs import BatchScoreParams, Options
from bottega.serving.batch.output import local_path, publish_local, staged_local
from bottega.serving.batch.plan import (
    BatchInputError,
    ColumnKind,
    ScoreRequest,
    build_plan,
    matrix,
    output_table,
    prediction_array,
    prediction_kind,
    status_counts,
)

SIGNATURE = {
    "inputs": [{"name": "x0", "type": "float64"}, {"name": "flag", "type": "bool"}],
    "store_features": ["shop:stats:f0", "shop:eta:late"],
    "outputs": [{"name": "probability", "type": "float64"}],
}
RESOLUTION = SimpleNamespace(
    groups=[
        SimpleNamespace(
            project="shop", group="stats", on_demand=None, entity=SimpleNamespace(join_keys={"customer_id": "int"})
        ),
        SimpleNamespace(
            project="shop",
            group="eta",
            on_demand=SimpleNamespace(request_features={"distance": "float"}, inputs={"f": "shop:stats:f0"}),
            entity=SimpleNamespace(join_keys={}),
        ),
    ]
)
COLUMNS: dict[str, ColumnKind] = {
    "order_id": "number",
    "customer_id": "number",
    "timestamp": "timestamp",
    "x0": "number",
    "flag": "bool",
    "distance": "number",
    "name": "string",
}


def request(**over: Any) -> ScoreRequest:
    return ScoreRequest(**{"project": "shop", "model": "m", "version": 3, "input": "in", "output": "out", **over})


def plan(columns: dict[str, ColumnKind] | None = None, **over: Any) -> Any:
    return build_plan(request(**over), SIGNATURE, RESOLUTION, columns or COLUMNS, prediction="scalar")


def test_plan_orders_inputs_as_the_signature_and_keeps_keys() -> None:
    made = plan()
    assert made.input_names == ("x0", "flag", "stats__f0", "eta__late")
    assert made.entity_keys == ("customer_id",)
    assert made.on_demand_request == ("distance",)
    assert made.keep == ("customer_id", "timestamp")
    assert made.join_columns == ("customer_id", "timestamp", "distance")
    counts = ("features_fresh", "features_stale", "features_missing")
    assert made.output_columns == ("customer_id", "timestamp", "probability", *counts, "model", "version", "scored_at")
    assert plan(keep=("order_id",)).read_columns == ("order_id", "x0", "flag", "customer_id", "timestamp", "distance")


def test_a_model_without_store_features_keeps_every_other_column() -> None:
    bare = {"inputs": SIGNATURE["inputs"], "outputs": []}
    made = build_plan(request(), bare, None, COLUMNS, prediction="vector")
    assert made.keep == ("order_id", "customer_id", "timestamp", "distance", "name")
    assert (made.prediction_column, made.join_columns, made.timestamp_column) == ("probabilities", (), None)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("x0", "'x0' (a request feature of the model)"),
        ("customer_id", "'customer_id' (an entity key of the model's store features)"),
        ("timestamp", "'timestamp' (the timestamp of the point-in-time join"),
        ("distance", "'distance' (a request feature of an on-demand feature)"),
    ],
)
def test_missing_columns_are_named(drop: str, message: str) -> None:
    columns = {k: v for k, v in COLUMNS.items() if k != drop}
    with pytest.raises(BatchInputError, match=r"lacks column\(s\) ") as caught:
        plan(columns)
    assert message in str(caught.value)
    assert "its columns: order_id" in str(caught.value)


def test_types_keep_and_collisions_are_checked() -> None:
    with pytest.raises(BatchInputError, match=r"'x0' .* is string, but request feature 'x0' of m:3 must be a number"):
        plan({**COLUMNS, "x0": "string"})
    with pytest.raises(BatchInputError, match=r"'timestamp' .* is number: the timestamp column"):
        plan({**COLUMNS, "timestamp": "number"})
    with pytest.raises(BatchInputError, match=r"'ts' .*timestamp_column"):
        plan(timestamp_column="ts")
    with pytest.raises(BatchInputError, match="'model' is an output column of its own"):
        plan(keep=("model",))
    with pytest.raises(BatchInputError, match="'probability' would be overwritten"):
        plan({**COLUMNS, "probability": "number"}, keep=("probability",))
    with pytest.raises(BatchInputError, match=r"'ghost' \(asked for in `keep`\)"):
        plan(keep=("ghost",))


def test_matrix_and_prediction_columns() -> None:
    m = matrix([pa.array([1, None, 3]), pa.array([True, False, None]), pa.array([0.5, 1.5, None])])
    assert m.dtype == np.float64
    np.testing.assert_array_equal(m, [[1, 1, 0.5], [np.nan, 0, 1.5], [3, np.nan, np.nan]])
    assert prediction_array(np.array([0.1, 0.9]), "scalar", 2).to_pylist() == [0.1, 0.9]
    vector = prediction_array(np.array([[0.2, 0.8], [0.6, 0.4]]), "vector", 2)
    assert vector.to_pylist() == [[0.2, 0.8], [0.6, 0.4]]
    objects = np.empty(2, dtype=object)
    objects[:] = [{"eta": 3}, np.float64(2.5)]
    assert prediction_array(objects, "json", 2).to_pylist() == ['{"eta": 3}', "2.5"]
    with pytest.raises(ValueError, match=r"returned .* predictions for 3 rows"):
        prediction_array(np.array([0.1, 0.9]), "scalar", 3)
    with pytest.raises(ValueError, match="rows x classes"):
        prediction_array(np.array([0.1, 0.9]), "vector", 2)
    assert (prediction_kind("python", "binary"), prediction_kind("onnx", "multiclass")) == ("json", "vector")
    assert prediction_kind("xgboost", None) == "scalar"


def test_output_table_columns() -> None:
    made = plan(keep=("order_id",))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    counts = [pa.array([2, 0], pa.int32()), pa.array([0, 1], pa.int32()), pa.array([0, 1], pa.int32())]
    table = output_table(pa.table({"order_id": [7, 8]}), np.array([0.25, 0.75]), made, at, counts)
    common = {"model": "m", "version": 3, "scored_at": at}
    assert table.to_pylist() == [
        {"order_id": 7, "probability": 0.25, "features_fresh": 2, "features_stale": 0, "features_missing": 0, **common},
        {"order_id": 8, "probability": 0.75, "features_fresh": 0, "features_stale": 1, "features_missing": 1, **common},
    ]


def test_status_counts_follow_the_online_rules() -> None:
    made = plan()
    assert made.status_sources == ((False, ("stats___status",)), (True, ("stats___status",)))
    joined = pa.table(
        {
            "stats__f0": [1.0, None, None, 2.0],
            "eta__late": [True, None, False, True],  # on demand: None -> MISSING, else STALE unless inputs FRESH
            "stats___status": ["FRESH", "MISSING", "STALE", "FRESH"],
        }
    )
    fresh, stale, missing = (a.to_pylist() for a in status_counts(joined, made))
    assert (fresh, stale, missing) == ([2, 0, 0, 2], [0, 0, 2, 0], [0, 2, 0, 0])


def write_then_fail(target: Path) -> None:
    with staged_local(str(target)) as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("half")
        raise RuntimeError("failed mid-write")


def test_staged_outputs_appear_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_local(str(target)) as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("one")
    assert (target / "part").read_text() == "one"
    with pytest.raises(RuntimeError):
        write_then_fail(target)
    assert (target / "part").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with staged_local(str(target)) as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("two")
    assert (target / "part").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "the replaced output is removed"
    single = tmp_path / "one.parquet"
    single.write_text("old")
    new = tmp_path / "new"
    new.write_text("new")
    publish_local(new, single)
    assert single.read_text() == "new"
    assert local_path("file:///data/x", "input") == Path("/data/x")
    with pytest.raises(BatchInputError, match="input: the local engine reads and writes local paths"):
        local_path("s3://bucket/x", "input")


def test_params_name_a_deployment_or_everything() -> None:
    assert BatchScoreParams(deployment="nightly").deployment == "nightly"
    direct = BatchScoreParams(model="m", alias="champion", input="in", output="out", engine="spark")
    assert (direct.engine, direct.alias) == ("spark", "champion")
    with pytest.raises(ValidationError, match="give a `deployment`, or model, input, output, version"):
        BatchScoreParams()
    with pytest.raises(ValidationError, match="input, output"):
        BatchScoreParams(model="m", version=1)
    with pytest.raises(ValidationError, match="not both"):
        BatchScoreParams(deployment="d", version=2)
    with pytest.raises(ValidationError, match="engine"):
        BatchScoreParams(deployment="d", engine="dask")
    with pytest.raises(ValidationError, match="chunk_size"):
        BatchScoreParams(deployment="d", chunk_size=0)
    assert Options.model_validate({"engine": "spark", "batch_size": 5}).engine == "spark", "other keys are ignored"


@pytest.mark.parametrize("classes", [[0.5, 1.0, 1.5], ["low", "mid", "high"], [3, 7, 9]])
def test_a_multiclass_output_names_its_classes(classes: list[Any]) -> None:
    """predicted_class in the label's own type and one probability column per class, after the list column."""
    sig = {"inputs": [{"name": "x0", "type": "float64"}], "outputs": [
        {"name": "probabilities", "type": "float64", "shape": [3], "classes": classes}
    ]}  # fmt: skip
    made = build_plan(request(), sig, None, {"x0": "number", "id": "number"}, prediction="vector")
    names = ("predicted_class", *(f"probability_{c}" for c in classes))
    assert made.output_columns == ("id", "probabilities", *names, "model", "version", "scored_at")
    probabilities = np.array([[0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    source = pa.table({"id": [1, 2, 3], "x0": [0.0, 1.0, 2.0]})
    table = output_table(source, probabilities, made, datetime(2026, 12, 7, tzinfo=UTC))
    assert table.column("predicted_class").to_pylist() == [classes[1], classes[0], classes[2]]
    assert table.schema.field("predicted_class").type == pa.array(classes).type
    assert table.column(f"probability_{classes[2]}").to_pylist() == [0.3, 0.1, 0.8]
    clash: dict[str, ColumnKind] = {"x0": "number", f"probability_{classes[0]}": "number"}
    with pytest.raises(BatchInputError, match=f"'probability_{classes[0]}' would be overwritten"):
        build_plan(request(keep=(f"probability_{classes[0]}",)), sig, None, clash, prediction="vector")


def test_a_multiclass_signature_without_classes_writes_the_list_only() -> None:
    sig = {"inputs": [{"name": "x0", "type": "float64"}], "outputs": [
        {"name": "probabilities", "type": "float64", "shape": [3]}
    ]}  # fmt: skip
    made = build_plan(request(), sig, None, {"x0": "number"}, prediction="vector")
    assert made.output_columns == ("probabilities", "model", "version", "scored_at")
