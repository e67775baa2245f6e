"""Tuning end to end through the API (in-process app on SQLite, DuckDB offline store, real XGBoost, PyTorch and
Optuna): every trial a child run with its params, state and metric curve, Hyperband pruning trials on a setup made
to prune, the best trial registered as the version (gates, ONNX), the time budget honoured, reproducibility with a
seed, per-trial progress, and invalid tuning specs refused before any run exists."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import ApiHarness, harness, migrated_sqlite
from customer_stats import customer_stats_schema, register_customer_stats

from bottega.feature_store.offline.store import OfflineStore
from bottega.sdk import Client
from bottega.training.runner import train
from bottega.training.spec import SpecError

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 1500
CUT = T0 + timedelta(minutes=int(ROWS * 0.75))
STORE_FEATURES = [f"shop:customer_stats:f{i}" for i in range(4)]
SCHEMA = customer_stats_schema()


@dataclass
class Recorder:
    """A Progress that keeps what `bottega train` would show."""

    stages: list[str] = field(default_factory=list)
    steps: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)

    def stage(self, message: str) -> None:
        self.stages.append(message)

    def iteration(self, step: int, total: int, metrics: Mapping[str, float], unit: str = "rounds") -> None:
        self.steps.append((step, total, dict(metrics)))


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    offline: Path
    labels: Path

    def spec(self, name: str, tuning: dict[str, Any], **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "project": "shop",
            "model_name": name,
            "seed": 5,
            "dataset": {
                "labels": str(self.labels),
                "entity_keys": ["customer_id"],
                "label_column": "label",
                "features": STORE_FEATURES,
                "request_features": ["x4", "x5"],
                "offline_root": str(self.offline),
            },
            "split": {"kind": "time", "cut": CUT.isoformat()},
            "model": {
                "type": "xgboost",
                "task": "binary",
                "params": {"max_depth": 3, "nthread": 1},
                "num_boost_round": 30,
            },
            "evaluation": {"permutation_repeats": 0},
            "gates": ["auc >= 0.7"],
            "tuning": tuning,
        }
        base.update(over)
        return base


def generate(root: Path) -> tuple[Path, Path]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=ROWS, n_features=6, n_informative=4, n_redundant=1, flip_y=0.05, class_sep=0.8, random_state=4
    )
    ids = np.arange(ROWS, dtype=np.int64)
    at = [T0 + timedelta(minutes=i) for i in range(ROWS)]
    offline = root / "offline"
    columns: dict[str, Any] = {"customer_id": ids, **{f"f{i}": x[:, i] for i in range(4)}}
    columns["event_time"] = pa.array([t - timedelta(hours=1) for t in at], pa.timestamp("us", tz="UTC"))
    OfflineStore(offline).upsert(SCHEMA, pa.table(columns))
    labels = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "x4": x[:, 4],
            "x5": x[:, 5],
            "label": y.astype(np.int64),
        }
    )
    path = root / "labels.parquet"
    pq.write_table(labels, path)
    return offline, path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tuning")
    with harness(migrated_sqlite(root), root / "home") as api:
        sdk = api.sdk(api.project("shop"))
        register_customer_stats(sdk)
        offline, labels = generate(root)
        yield World(api=api, sdk=sdk, offline=offline, labels=labels)


PRUNE_SPACE = {
    # eta spans four decades: trials with a tiny eta trail far behind at every rung and get pruned
    "model.params.eta": {"type": "float", "low": 1e-4, "high": 0.5, "log": True},
    "model.params.max_depth": {"type": "int", "low": 1, "high": 5},
}


def children(world: World, run_id: str) -> list[Any]:
    return list(world.sdk.runs.list("shop", parent_run_id=run_id, limit=200).items)


def test_xgboost_study_records_trials_prunes_and_registers_the_best(world: World) -> None:
    tuning = {
        "space": PRUNE_SPACE,
        "n_trials": 8,
        "sampler": "random",
        "pruner": {"kind": "hyperband", "min_resource": 2, "reduction_factor": 3},
        "seed": 1,
    }
    shown = Recorder()
    result = train(world.sdk, world.spec("tuned", tuning), shown)
    summary = result.tuning
    assert summary is not None
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] + summary["trials"]["failed"] == 8
    assert summary["trials"]["pruned"] >= 1, summary["trial_list"]
    assert summary["trials"]["failed"] == 0
    assert summary["metric"] == "auc"
    assert summary["direction"] == "maximize"

    kids = {int(run.tags["trial"]): run for run in children(world, result.run_id)}
    assert sorted(kids) == list(range(8))
    for record in summary["trial_list"]:
        run = kids[record["number"]]
        assert run.tags["parent_run"] == result.run_id
        assert run.tags["state"] == record["state"]
        assert run.status == {"complete": "finished", "pruned": "killed"}[record["state"]]
        assert float(run.params["model.params.eta"]) == pytest.approx(record["params"]["model.params.eta"])
        assert run.params["model.params.max_depth"] == str(record["params"]["model.params.max_depth"])
        curve = world.sdk.runs.metric_history("shop", run.id, "eval.auc")
        if record["state"] == "pruned":
            assert record["pruned_by"] == "pruner"
            assert len(curve) == record["pruned_at"] + 1 < 30  # stopped early
        else:
            assert len(curve) == 30
            assert run.metrics["auc"].value == pytest.approx(record["value"])

    best = summary["best"]
    assert best["value"] == max(r["value"] for r in summary["trial_list"] if r["state"] == "complete")
    parent = world.sdk.runs.get("shop", result.run_id)
    assert parent.status == "finished"
    assert parent.tags["tuning.best_trial"] == str(best["trial"])
    assert parent.params["tuning.pruner"] == "hyperband"
    assert float(parent.params["model.params.eta"]) == pytest.approx(best["params"]["model.params.eta"])
    assert parent.metrics["tuning.best_value"].value == pytest.approx(best["value"])
    assert parent.metrics["tuning.trials_pruned"].value == summary["trials"]["pruned"]
    trial_values = world.sdk.runs.metric_history("shop", result.run_id, "tuning.trial_value")
    assert [p.step for p in trial_values] == sorted(
        r["number"] for r in summary["trial_list"] if r["state"] == "complete"
    )

    version = world.sdk.models.get_version("shop", "tuned", result.version)
    assert version.run_id == result.run_id
    assert version.flavor == "onnx"
    assert version.metrics["auc"] == pytest.approx(best["value"])  # the best trial's model itself
    assert version.evaluation["tuning"]["best"]["trial"] == best["trial"]
    assert "tuning.json" in {a.path for a in version.artifacts}
    assert world.sdk.models.get("shop", "tuned").aliases["candidate"] == result.version
    assert result.candidate

    trial_lines = [s for s in shown.stages if s.startswith("trial ")]
    assert len(trial_lines) == 8
    assert any(" pruned: at round " in s for s in trial_lines)
    assert [s[0] for s in shown.steps] == list(range(8))
    assert shown.steps[-1][2]["eval.best_auc"] == pytest.approx(best["value"])


def test_same_seed_gives_the_same_trials(world: World) -> None:
    tuning = {"space": PRUNE_SPACE, "n_trials": 4, "sampler": "tpe", "pruner": "successive_halving", "seed": 3}
    first = train(world.sdk, world.spec("repro", tuning))
    second = train(world.sdk, world.spec("repro", tuning))
    assert first.tuning is not None
    assert second.tuning is not None

    def trials(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(r["state"], r["value"], r["params"], r["pruned_at"]) for r in summary["trial_list"]]

    assert trials(first.tuning) == trials(second.tuning)
    assert first.metrics == second.metrics
    other = train(world.sdk, world.spec("repro", {**tuning, "seed": 4}))
    assert other.tuning is not None
    assert [r["params"] for r in other.tuning["trial_list"]] != [r["params"] for r in first.tuning["trial_list"]]


def test_time_budget_is_honoured(world: World) -> None:
    tuning = {
        "space": {"model.params.eta": {"type": "float", "low": 0.01, "high": 0.3}},
        "n_trials": 10_000,
        "timeout_s": 3.0,
        "sampler": "random",
        "pruner": "none",
    }
    began = time.monotonic()
    result = train(
        world.sdk,
        world.spec(
            "budget",
            tuning,
            model={
                "type": "xgboost",
                "task": "binary",
                "params": {"max_depth": 3, "nthread": 1},
                "num_boost_round": 60,
            },
        ),
    )
    wall = time.monotonic() - began
    assert result.tuning is not None
    assert result.tuning["stopped_by"] == "timeout"
    assert 1 <= result.tuning["trials"]["complete"] < 10_000
    # the study itself stays within the budget plus one round's slack; the whole call adds data and export
    assert result.tuning["wall_s"] < 3.0 + 2.0
    assert wall < 3.0 + 20.0
    assert result.version >= 1


def test_parallel_trials(world: World) -> None:
    tuning = {"space": PRUNE_SPACE, "n_trials": 4, "n_jobs": 2, "sampler": "random", "pruner": "none", "seed": 2}
    result = train(world.sdk, world.spec("parallel", tuning))
    assert result.tuning is not None
    assert result.tuning["trials"]["complete"] == 4
    assert len(children(world, result.run_id)) == 4


def test_torch_study(world: World) -> None:
    model = {
        "type": "pytorch",
        "task": "binary",
        "architecture": {"kind": "mlp", "hidden": [8]},
        "epochs": 2,
        "batch_size": 128,
    }
    tuning = {
        "space": {
            "model.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
            "model.architecture.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
        },
        "n_trials": 3,
        "sampler": "random",
        "pruner": {"kind": "successive_halving", "min_resource": 1},
        "seed": 0,
    }
    result = train(world.sdk, world.spec("tuned-mlp", tuning, model=model, gates=[]))
    assert result.tuning is not None
    records = result.tuning["trial_list"]
    assert len(records) == 3
    assert result.tuning["trials"]["failed"] == 0
    assert {tuple(r["params"]["model.architecture.hidden"]) for r in records} <= {(8,), (16, 8)}
    kids = children(world, result.run_id)
    assert len(kids) == 3
    for run in kids:
        assert run.tags["state"] in ("complete", "pruned")
        assert world.sdk.runs.metric_history("shop", run.id, "eval.loss")
    version = world.sdk.models.get_version("shop", "tuned-mlp", result.version)
    best = result.tuning["best"]
    assert version.metrics["auc"] == pytest.approx(best["value"], abs=1e-6)
    assert version.evaluation["network"]["architecture"]["hidden"] == best["params"]["model.architecture.hidden"]


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"space": {"model.params.eta": {"type": "float", "low": 0.5, "high": 0.1}}}, "low (0.5) must be a number"),
        ({"space": {"model.lr": {"type": "float", "low": 0.1, "high": 0.5}}}, "tuning.space.model.lr"),
        ({"space": PRUNE_SPACE, "metric": "precision"}, "tuning.pruner: metric 'precision' has no per-round value"),
    ],
)
def test_invalid_tuning_fails_before_any_run(world: World, tuning: dict[str, Any], message: str) -> None:
    before = world.sdk.runs.list("shop", limit=200).total
    with pytest.raises(SpecError) as caught:
        train(world.sdk, world.spec("never", tuning))
    assert message in caught.value.detail
    assert world.sdk.runs.list("shop", limit=200).total == before


def test_cli_shows_each_trial(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import re

    import yaml
    from typer.testing import CliRunner

    from bottega.cli import common
    from bottega.cli.main import app

    monkeypatch.setattr(common, "Client", lambda url, tok: Client(token=tok, http=world.api.client))
    tuning = {"space": PRUNE_SPACE, "n_trials": 3, "sampler": "random", "pruner": "none", "seed": 0}
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(world.spec("tuned-cli", tuning)))
    runner = CliRunner(env={"COLUMNS": "200"})
    token = world.sdk.token or ""
    shown = runner.invoke(app, ["--token", token, "train", str(path)])
    assert shown.exit_code == 0, shown.output
    for n in (0, 1, 2):  # trials numbered as their runs and the tuning.best_trial tag are: from 0
        assert f"trial {n} ({n + 1}/3) complete: auc=" in shown.output
    best = re.search(r"best trial (\d+):", shown.output)
    assert best is not None
    (parent,) = world.sdk.runs.list("shop", tags={"model": "tuned-cli", "tuning": "optuna"}).items
    assert parent.tags["tuning.best_trial"] == best.group(1)
    assert "registered tuned-cli v1 (onnx)" in shown.stdout
    body = runner.invoke(app, ["--token", token, "--json", "train", str(path)])
    assert body.exit_code == 0, body.output
    assert json.loads(body.stdout)["tuning"]["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
