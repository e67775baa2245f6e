"""`train(spec)` end to end through the API (in-process app on SQLite, DuckDB offline store): a point-in-time
training set from a batch group plus request features, XGBoost with per-round metrics on the run, artifacts, a
registered version with its signature, a validated ONNX export, gates and the `candidate` alias, reproducibility,
and invalid specs refused before any run exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
import yaml
from api_harness import ApiHarness, harness, migrated_sqlite
from customer_stats import customer_stats_schema, register_customer_stats
from typer.testing import CliRunner

from bottega.cli import common
from bottega.cli.main import app
from bottega.core.errors import InvalidInput
from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.training.runner import train
from bottega.training.spec import SpecError

# The world: a project with a batch feature group whose offline data and label table come from scikit-learn's
# make_classification. 4 features live in the store (`shop:customer_stats:f0..f3`, f0 with some nulls), 2 are
# request features of the label table (x4, x5). Labels: `label` (binary), `kind` (3 classes "a"/"b"/"c"), `amount`
# (regression).

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 1200
CUT = T0 + timedelta(minutes=int(ROWS * 0.75))
STORE_FEATURES = [f"shop:customer_stats:f{i}" for i in range(4)]
SCHEMA = customer_stats_schema()


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    root: Path
    offline: Path
    labels: Path

    def spec(self, **over: Any) -> dict[str, Any]:
        """A binary spec over the generated data; keyword arguments replace top-level fields."""
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": "churn",
            "seed": 7,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "timestamp_column": "timestamp",
                "label_column": "label",
                "features": STORE_FEATURES,
                "request_features": ["x4", "x5"],
                "offline_root": str(self.offline),
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {
                "type": "xgboost",
                "task": "binary",
                "params": {"max_depth": 3, "eta": 0.3, "nthread": 1},
                "num_boost_round": 40,
                "early_stopping_rounds": 8,
            },
            "gates": ["auc >= 0.80"],
        }
        base.update(over)
        return base


def generate(root: Path) -> tuple[Path, Path]:
    """Write the store group's offline data and the label table; returns (offline root, labels path)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=6, n_informative=4, n_redundant=1, n_classes=3, class_sep=1.2, random_state=3
    )
    ids = np.arange(ROWS, dtype=np.int64)
    at = [T0 + timedelta(minutes=i) for i in range(ROWS)]
    f0 = x[:, 0].copy()
    f0[::17] = np.nan
    offline = root / "offline"
    store = OfflineStore(offline)
    columns: dict[str, Any] = {"customer_id": ids}
    columns.update({f"f{i}": pa.array(x[:, i] if i else f0, from_pandas=True) for i in range(4)})
    columns["event_time"] = pa.array([t - timedelta(hours=1) for t in at], pa.timestamp("us", tz="UTC"))
    store.upsert(SCHEMA, pa.table(columns))
    weights = np.array([1.5, -2.0, 0.7, 0.0, 1.0, 3.0])
    labels = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "x4": x[:, 4],
            "x5": x[:, 5],
            "label": (y == 0).astype(np.int64),
            "kind": np.array(["a", "b", "c"])[y],
            "stars": np.array([0.5, 1.0, 1.5])[y],  # a multiclass label of numbers, as a rating is
            "amount": np.nan_to_num(x @ weights) * 10.0 + 50.0,
        }
    )
    path = root / "labels.parquet"
    pq.write_table(labels, path)
    return offline, path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("training")
    url = migrated_sqlite(root)
    with harness(url, root / "home") as api:
        sdk = api.sdk(api.project("shop"))
        register_customer_stats(sdk)
        offline, labels = generate(root)
        yield World(api=api, sdk=sdk, root=root, offline=offline, labels=labels)


ARTIFACTS = {"model.ubj", "model.onnx", "evaluation.json", "feature_report.json", "trees.json", "spec.yaml"}


def test_binary_run_version_artifacts_and_candidate(world: World, tmp_path: Path) -> None:
    sdk = world.sdk
    result = train(sdk, world.spec())

    assert result.candidate
    assert result.failed_gates == []
    assert result.metrics["auc"] >= 0.80
    run = sdk.runs.get("shop", result.run_id)
    assert run.status == "finished"
    assert run.params["model.params.max_depth"] == "3"
    assert run.params["split.kind"] == "time"
    assert run.tags["gates"] == "passed"
    assert run.tags["model_version"] == f"churn:{result.version}"
    history = sdk.runs.metric_history("shop", result.run_id, "eval.auc")
    assert [p.step for p in history] == list(range(result.rounds_run))
    assert len(sdk.runs.metric_history("shop", result.run_id, "train.logloss")) == result.rounds_run
    assert {a.path for a in sdk.runs.list_artifacts("shop", result.run_id).items} == ARTIFACTS

    version = sdk.models.get_version("shop", "churn", result.version)
    assert version.run_id == result.run_id
    assert version.flavor == "onnx"
    assert {a.path for a in version.artifacts} == ARTIFACTS
    assert version.signature.store_features == STORE_FEATURES
    assert [(f.name, f.type) for f in version.signature.inputs] == [("x4", "float64"), ("x5", "float64")]
    assert version.metrics["auc"] == pytest.approx(result.metrics["auc"])
    assert version.lineage["feature_refs"] == STORE_FEATURES
    assert version.lineage["flavors"] == {"xgboost": "model.ubj", "onnx": "model.onnx"}
    assert sdk.models.get("shop", "churn").aliases["candidate"] == result.version

    evaluation = version.evaluation
    assert evaluation["gates"] == [
        {"gate": "auc >= 0.8", "metric": "auc", "value": result.metrics["auc"], "passed": True}
    ]
    report = evaluation["eval"]
    assert 0 < len(report["roc"]["x"]) <= 200
    assert 0 < len(report["pr"]["x"]) <= 200
    matrix = np.array(report["confusion_matrix"]["matrix"])
    assert matrix.sum() == report["rows"] == evaluation["dataset"]["eval_rows"]
    assert set(evaluation["importance"]["gain"]) == {
        "x4",
        "x5",
        "customer_stats__f0",
        "customer_stats__f1",
        "customer_stats__f2",
        "customer_stats__f3",
    }
    f0 = next(f for f in evaluation["feature_report"]["features"] if f["name"] == "customer_stats__f0")
    assert 0.03 < f0["train"]["null_rate"] < 0.08  # every 17th row has no f0 in the store
    assert evaluation["onnx"]["valid"]
    assert evaluation["onnx"]["max_abs_diff"] <= 1e-5

    files = sdk.models.download("shop", "churn", result.version, tmp_path)
    trees = json.loads(files["trees.json"].read_text())
    assert trees["num_trees"] == result.best_iteration + 1
    assert "feature" in trees["trees"][0]["root"]
    assert "cover" in trees["trees"][0]["root"]
    _check_onnx_matches(files["model.ubj"], files["model.onnx"])


def _check_onnx_matches(ubj: Path, onnx_path: Path) -> None:
    """The registered ONNX file gives the registered booster's probabilities within 1e-5 on fresh rows."""
    booster = xgb.Booster(model_file=str(ubj))
    rows = np.random.default_rng(0).normal(size=(300, 6))
    rows[::5, 2] = np.nan
    native = booster.inplace_predict(rows)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"input": rows.astype(np.float32)})[1][:, 1]
    assert np.abs(native - exported).max() <= 1e-5


def test_failing_gate_leaves_no_candidate(world: World) -> None:
    sdk = world.sdk
    spec = world.spec(model_name="churn-strict", gates=["auc >= 0.9999", "recall > 0.1"])
    result = train(sdk, spec)

    assert not result.candidate
    assert result.failed_gates == ["auc >= 0.9999"]
    assert "candidate" not in sdk.models.get("shop", "churn-strict").aliases
    version = sdk.models.get_version("shop", "churn-strict", result.version)
    assert [g["passed"] for g in version.evaluation["gates"]] == [False, True]
    assert sdk.runs.get("shop", result.run_id).tags["gates"] == "failed"


def test_same_spec_and_seed_give_the_same_metrics(world: World) -> None:
    spec = world.spec(
        model_name="churn-repro",
        split={"kind": "random", "eval_fraction": 0.3, "seed": 11},
        gates=[],
    )
    first = train(world.sdk, spec)
    second = train(world.sdk, spec)
    assert first.run_id != second.run_id
    assert second.version == first.version + 1
    assert first.metrics == second.metrics
    assert first.best_iteration == second.best_iteration
    a = world.sdk.runs.metric_history("shop", first.run_id, "eval.logloss")
    b = world.sdk.runs.metric_history("shop", second.run_id, "eval.logloss")
    assert [p.value for p in a] == [p.value for p in b]
    other = train(
        world.sdk,
        {**spec, "seed": 8, "model": {**spec["model"], "params": {**spec["model"]["params"], "subsample": 0.6}}},
    )
    assert other.metrics != first.metrics


def test_multiclass_and_regression(world: World) -> None:
    spec = world.spec(model_name="kind", gates=["accuracy >= 0.6", "macro_f1 >= 0.5"])
    spec["dataset"] = {**spec["dataset"], "label_column": "kind"}
    spec["model"] = {**spec["model"], "task": "multiclass"}
    result = train(world.sdk, spec)
    assert result.candidate, result.gates
    version = world.sdk.models.get_version("shop", "kind", result.version)
    assert version.evaluation["eval"]["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert version.signature.outputs[0].shape == [3]
    assert version.flavor == "onnx"
    assert version.evaluation["onnx"]["max_abs_diff"] <= 1e-5

    assert version.signature.outputs[0].classes == ["a", "b", "c"]
    assert version.evaluation["dataset"]["classes"] == ["a", "b", "c"]

    spec = world.spec(model_name="amount", gates=["r2 >= 0.5"])
    spec["dataset"] = {**spec["dataset"], "label_column": "amount"}
    spec["model"] = {**spec["model"], "task": "regression", "num_boost_round": 60}
    result = train(world.sdk, spec)
    assert result.candidate, result.gates
    evaluation = world.sdk.models.get_version("shop", "amount", result.version).evaluation
    assert set(evaluation["eval"]["metrics"]) == {"rmse", "mae", "mape", "r2"}
    assert sum(evaluation["eval"]["residual_histogram"]["counts"]) == evaluation["dataset"]["eval_rows"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gates": ["rmse <= 3"]}, "gates[0]: unknown metric 'rmse' for task 'binary'"),
        ({"compute": {"kind": "ray"}}, "compute.kind: unknown compute 'ray'"),
        ({"split": {"kind": "time", "cut": "not a time"}}, "split.time.cut"),
        ({"model": {"type": "xgboost", "task": "ranking"}}, "model.task"),
    ],
)
def test_invalid_spec_fails_before_any_run(world: World, change: dict[str, object], message: str) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    with pytest.raises(SpecError) as caught:
        train(world.sdk, world.spec(model_name="never", **change))
    assert message in caught.value.detail
    assert world.sdk.runs.list("shop", limit=200).total == before


def test_data_errors_fail_before_any_run(world: World) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    spec = world.spec(model_name="never")
    spec["dataset"] = {**spec["dataset"], "request_features": ["x4", "distance"]}
    with pytest.raises(InvalidInput, match=r"dataset\.request_features: column .distance. is not in the label table"):
        train(world.sdk, spec)
    spec = world.spec(model_name="never", split={"kind": "time", "cut": "2020-01-01T00:00:00Z"})
    with pytest.raises(InvalidInput, match="split: leaves no rows for training"):
        train(world.sdk, spec)
    assert world.sdk.runs.list("shop", limit=200).total == before
    assert CUT.tzinfo is not None


def test_cli_trains_from_a_yaml_spec(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bottega train spec.yaml`: relative paths are read from the spec's folder; an invalid spec is one error line."""
    monkeypatch.setattr(common, "Client", lambda url, tok: Client(token=tok, http=world.api.client))
    spec = world.spec(model_name="churn-cli")
    spec["dataset"] = {**spec["dataset"], "labels": world.labels.name}
    path = world.root / "specs" / "churn.yaml"
    path.parent.mkdir(exist_ok=True)
    (world.root / "specs" / world.labels.name).write_bytes(world.labels.read_bytes())
    path.write_text(yaml.safe_dump(spec))
    runner = CliRunner(env={"COLUMNS": "200"})
    token = world.sdk.token or ""

    result = runner.invoke(app, ["--token", token, "--json", "train", str(path)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model"] == "churn-cli"
    assert body["candidate"] is True
    assert body["flavor"] == "onnx"
    assert world.sdk.models.get("shop", "churn-cli").aliases == {"candidate": body["version"]}

    text = runner.invoke(app, ["--token", token, "train", str(path)])
    assert text.exit_code == 0, text.output
    assert f"registered churn-cli v{body['version'] + 1} (onnx)" in text.stdout
    assert "gate auc >= 0.8: pass" in text.stdout

    path.write_text(yaml.safe_dump({**spec, "compute": {"kind": "horovod", "workers": 2}}))
    before = world.sdk.runs.list("shop", limit=200).total
    failed = runner.invoke(app, ["--token", token, "train", str(path)])
    assert failed.exit_code == 2
    assert "compute.kind: compute 'horovod' trains PyTorch models" in failed.output
    assert world.sdk.runs.list("shop", limit=200).total == before


def test_duplicate_labels_tag_metrics_and_error_policy(world: World, tmp_path: Path) -> None:
    labels = pq.read_table(world.labels)
    copies = labels.slice(0, 50)
    conflict = labels.slice(60, 5).set_column(4, "label", pa.array([1 - v for v in labels["label"][60:65].to_pylist()]))
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.concat_tables([labels, copies, conflict]), path)
    spec = world.spec(model_name="churn-dups", gates=[])
    spec["dataset"] = {**spec["dataset"], "labels": str(path)}
    result = train(world.sdk, spec)
    run = world.sdk.runs.get("shop", result.run_id)
    assert run.tags["labels.duplicates"] == "50 duplicate, 10 conflicting (warn)"
    assert world.sdk.runs.metric_history("shop", result.run_id, "labels.duplicate_rows")[0].value == 50
    assert world.sdk.runs.metric_history("shop", result.run_id, "labels.conflicting_rows")[0].value == 10
    before = world.sdk.runs.list("shop", limit=200).total
    spec["dataset"] = {**spec["dataset"], "on_duplicates": "error"}
    with pytest.raises(InvalidInput, match="50 exact duplicate rows and 10 conflicting rows"):
        train(world.sdk, spec)
    assert world.sdk.runs.list("shop", limit=200).total == before


def test_numeric_classes_keep_their_type_on_the_version_and_in_batch_scores(world: World, tmp_path: Path) -> None:
    """A rating label (0.5, 1.0, 1.5): the version stores the classes as numbers, and batch scoring writes the
    predicted class as that number plus one probability column per class."""
    from bottega.serving.batch.local import score_local
    from bottega.serving.batch.plan import ScoreRequest
    from bottega.serving.runtimes.loader import ArtifactCache

    spec = world.spec(model_name="stars", gates=["accuracy >= 0.6"])
    spec["dataset"] = {**spec["dataset"], "label_column": "stars"}
    spec["model"] = {**spec["model"], "task": "multiclass"}
    result = train(world.sdk, spec)
    version = world.sdk.models.get_version("shop", "stars", result.version)
    classes = version.signature.outputs[0].classes
    assert classes == [0.5, 1.0, 1.5]
    assert all(isinstance(c, float) for c in classes or [])
    assert version.evaluation["dataset"]["classes"] == [0.5, 1.0, 1.5]
    out = tmp_path / "scores.parquet"
    request = ScoreRequest(
        project="shop", model="stars", version=result.version, input=str(world.labels), output=str(out),
        offline_root=str(world.offline), keep=("customer_id", "stars"),
    )  # fmt: skip
    score_local(world.sdk, request, ArtifactCache(tmp_path / "cache", world.sdk))
    table = pq.read_table(out)
    assert table.schema.field("predicted_class").type == pa.float64()
    probabilities = np.array(table.column("probabilities").to_pylist())
    assert table.column("predicted_class").to_pylist() == [[0.5, 1.0, 1.5][i] for i in probabilities.argmax(axis=1)]
    for j, name in enumerate(("probability_0.5", "probability_1.0", "probability_1.5")):
        assert np.allclose(table.column(name).to_numpy(), probabilities[:, j])
    hits = np.mean(np.array(table.column("predicted_class").to_pylist()) == np.array(table.column("stars").to_pylist()))
    assert hits > 0.6  # the predicted class is the label value, comparable with the label as it is
