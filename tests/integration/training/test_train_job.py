"""`training.train` as a platform job, end to end through the real API (in-process app on SQLite) and a real worker:
a submitted job trains and registers a version, a cron schedule retrains on the data as it is at each firing, an
invalid spec is a 422 at submission, a spec of another project fails before any run, cancellation stops the booster,
and the `only_if_better` guard moves an alias only for a better version."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from api_harness import ApiHarness, harness, migrated_sqlite
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.jobs import scheduler
from bottega.api.jobs.background import LocalBackend
from bottega.api.jobs.builtin import job_types as builtin_types
from bottega.api.jobs.runtime import JobsRuntime, JobsSettings
from bottega.api.jobs.schemas import JobRunRead
from bottega.api.jobs.types import JobTypeRegistry
from bottega.api.jobs.worker import Worker
from bottega.core.errors import InvalidInput
from bottega.sdk import Client
from bottega.training.jobs import JOB_TYPE, job_types

pytest.importorskip("xgboost")
MONTHLY = "0 0 1 * *"  # fired by the test with an explicit clock, never by a background scheduler
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def write_labels(path: Path, rows: int, seed: int = 5) -> None:
    """A binary label table with 5 request features (scikit-learn's make_classification)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows, n_features=5, n_informative=3, n_redundant=1, class_sep=1.0, random_state=seed
    )
    columns: dict[str, Any] = {
        "customer_id": np.arange(rows, dtype=np.int64),
        "timestamp": pa.array([T0 + timedelta(minutes=i) for i in range(rows)], pa.timestamp("us", tz="UTC")),
        **{f"x{i}": x[:, i] for i in range(5)},
        "label": y.astype(np.int64),
    }
    pq.write_table(pa.table(columns), path)


def spec_doc(labels: Path, model: str, **model_over: Any) -> dict[str, Any]:
    return {
        "project": "shop",
        "model_name": model,
        "seed": 7,
        "dataset": {
            "labels": str(labels),
            "entity_keys": ["customer_id"],
            "label_column": "label",
            "request_features": [f"x{i}" for i in range(5)],
        },
        "split": {"kind": "random", "eval_fraction": 0.25, "seed": 3},
        "model": {
            "type": "xgboost",
            "task": "binary",
            "params": {"max_depth": 3, "eta": 0.3, "nthread": 1},
            "num_boost_round": 20,
            **model_over,
        },
        "evaluation": {"permutation_repeats": 0},
        "gates": ["auc >= 0.6"],
    }


@dataclass
class World:
    api: ApiHarness
    sdk: Client
    token: str
    root: Path
    labels: Path

    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.api.client.app.state.sessionmaker  # type: ignore[attr-defined]
        return factory

    def worker(self) -> Worker:
        """A real worker over the API's service functions; its jobs call the API with the owner's key."""
        registry = JobTypeRegistry([*builtin_types(), *job_types()])
        runtime = JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.1))
        return Worker(
            LocalBackend(self.sessions(), runtime),
            registry,
            name="train-test",
            poll_interval_s=0.05,
            client_factory=lambda: Client(token=self.token, http=self.api.client),
        )

    def run_one(self, run_id: str) -> JobRunRead:
        assert self.worker().run(once=True) == 1
        return self.sdk.jobs.get("shop", run_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("trainjob")
    url = migrated_sqlite(root)
    with harness(url, root / "home", scheduler_interval_s=0) as api:
        # the API validates params with the registry it holds; the entry point adds `training` once installed
        registry = JobTypeRegistry([*builtin_types(), *job_types()])
        api.client.app.state.jobs = JobsRuntime(registry, JobsSettings(heartbeat_interval_s=0.1))  # type: ignore[attr-defined]
        token = api.project("shop")
        labels = root / "labels.parquet"
        write_labels(labels, 800)
        yield World(api=api, sdk=api.sdk(token), token=token, root=root, labels=labels)


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_a_submitted_job_trains_and_registers_a_version(world: World) -> None:
    sdk = world.sdk
    params = {
        "spec": spec_doc(world.labels, "adhoc"),
        "run_name": "adhoc-from-job",
        "tags": {"team": "growth"},
        "promote_alias": "staging",
    }
    job = sdk.jobs.submit("shop", JOB_TYPE, params)
    assert job.status == "queued"
    done = world.run_one(job.id)
    assert done.status == "succeeded", done.error
    result = done.result
    assert (result["model"], result["version"], result["candidate"], result["flavor"]) == ("adhoc", 1, True, "onnx")
    assert result["metrics"]["auc"] > 0.8
    assert [g["gate"] for g in result["gates"]] == ["auc >= 0.6"]
    assert result["failed_gates"] == []
    assert result["spec_source"] == "inline spec"
    assert result["promotion"] == {"alias": "staging", "moved": True, "version": 1, "reason": "every gate holds"}
    run = sdk.runs.get("shop", result["run_id"])
    assert (run.name, run.status) == ("adhoc-from-job", "finished")
    assert {"team": "growth", "job_run": job.id, "job_type": JOB_TYPE}.items() <= run.tags.items()
    version = sdk.models.get_version("shop", "adhoc", 1)
    assert version.run_id == result["run_id"]
    assert version.metrics["auc"] == pytest.approx(result["metrics"]["auc"])
    assert {a.alias: a.version for a in sdk.models.list_aliases("shop", "adhoc")} == {"staging": 1, "candidate": 1}
    for line in ("training shop:adhoc from inline spec", "building the training set", "round 1/20", "round 20/20"):
        assert line in done.log_tail
    assert "registered adhoc v1 from run" in done.log_tail


def test_a_cron_schedule_retrains_on_the_data_of_each_firing(world: World) -> None:
    sdk = world.sdk
    folder = world.root / "retrain"
    folder.mkdir()
    write_labels(folder / "labels.parquet", 600)
    document = spec_doc(Path("labels.parquet"), "nightly")  # relative: read from the spec file's folder
    spec_file = folder / "nightly.yaml"
    spec_file.write_text(yaml.safe_dump(document))
    schedule = sdk.jobs.create_schedule("shop", "retrain-nightly", JOB_TYPE, MONTHLY, {"spec_path": str(spec_file)})
    first = schedule.next_run_at
    assert first is not None
    (run_id,) = scheduler.fire_due(world.sessions(), first + timedelta(seconds=1)).queued
    one = world.run_one(run_id)
    assert one.status == "succeeded", one.error
    assert (one.schedule, one.scheduled_for, one.result["version"]) == ("retrain-nightly", first, 1)
    assert one.result["spec_source"] == str(spec_file)

    write_labels(folder / "labels.parquet", 1000, seed=6)  # new data arrived before the next occurrence
    second = sdk.jobs.get_schedule("shop", "retrain-nightly").next_run_at
    assert second is not None
    assert second > first
    (again,) = scheduler.fire_due(world.sessions(), second + timedelta(seconds=1)).queued
    two = world.run_one(again)
    assert two.status == "succeeded", two.error
    assert (two.scheduled_for, two.result["version"]) == (second, 2)
    rows = [
        sdk.models.get_version("shop", "nightly", v).lineage["dataset"]["train_rows"]
        + sdk.models.get_version("shop", "nightly", v).lineage["dataset"]["eval_rows"]
        for v in (1, 2)
    ]
    assert rows == [600, 1000], "each firing trains on the data as it is when it runs"
    assert one.result["run_id"] != two.result["run_id"]
    recent = sdk.jobs.get_schedule("shop", "retrain-nightly").recent_runs
    assert [(r.id, r.status) for r in recent] == [(again, "succeeded"), (run_id, "succeeded")]


def test_an_invalid_spec_is_a_422_naming_the_field_at_submission(world: World) -> None:
    sdk = world.sdk
    before = sdk.jobs.list("shop", job_type=JOB_TYPE).total
    bad = spec_doc(world.labels, "broken", task="banana")
    response = world.api.call(
        "POST", "/api/v1/projects/shop/jobs/runs", world.token, json={"job_type": JOB_TYPE, "params": {"spec": bad}}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "params.spec"
    assert "model.task: Input should be 'binary', 'multiclass' or 'regression'" in body["detail"]
    with pytest.raises(InvalidInput, match=r"params\.spec_path: .*missing\.yaml is not a readable file"):
        sdk.jobs.submit("shop", JOB_TYPE, {"spec_path": str(world.root / "missing.yaml")})
    with pytest.raises(InvalidInput, match=r"params.spec: invalid training spec: gates\[0\]: unknown metric 'rmse'"):
        sdk.jobs.create_schedule(
            "shop", "bad", JOB_TYPE, MONTHLY, {"spec": {**spec_doc(world.labels, "broken"), "gates": ["rmse < 1"]}}
        )
    with pytest.raises(InvalidInput, match="give exactly one of `spec`"):
        sdk.jobs.submit("shop", JOB_TYPE, {})
    assert sdk.jobs.list("shop", job_type=JOB_TYPE).total == before, "nothing was queued"
    assert [s.name for s in sdk.jobs.list_schedules("shop").items if s.name == "bad"] == []


def test_a_spec_of_another_project_fails_before_any_run(world: World) -> None:
    sdk = world.sdk
    job = sdk.jobs.submit("shop", JOB_TYPE, {"spec": {**spec_doc(world.labels, "elsewhere"), "project": "eats"}})
    done = world.run_one(job.id)
    assert done.status == "failed"
    assert "spec.project: the spec trains in project 'eats' but the job runs in 'shop'" in done.error
    assert sdk.runs.list("shop", tags={"job_run": job.id}).total == 0, "no tracking run was started"


def test_cancelling_a_running_job_stops_the_training(world: World) -> None:
    sdk = world.sdk
    slow = spec_doc(world.labels, "slow", num_boost_round=100_000, params={"max_depth": 6, "eta": 0.001, "nthread": 1})
    job = sdk.jobs.submit("shop", JOB_TYPE, {"spec": slow})
    worker = world.worker()
    thread = threading.Thread(target=worker.run, kwargs={"once": True}, daemon=True)
    thread.start()
    try:
        until(lambda: "round 1/100000" in sdk.jobs.get("shop", job.id).log_tail)
        asked = time.monotonic()
        assert sdk.jobs.cancel("shop", job.id).status == "cancelling"
        done = sdk.jobs.wait("shop", job.id, timeout=30, poll_interval=0.05)
        stopped_in = time.monotonic() - asked
    finally:
        worker.stop(abandon=True)
        thread.join(30)
    assert done.status == "cancelled", done.error
    assert stopped_in < 10
    assert "round 100000/100000" not in done.log_tail
    (run,) = sdk.runs.list("shop", tags={"job_run": job.id}).items
    assert run.status == "failed", "the trainer closes the tracking run it started"
    assert sdk.models.list_versions("shop", "slow").total == 0, "no version was registered"


def test_only_if_better_moves_the_alias_only_for_a_better_version(world: World) -> None:
    sdk = world.sdk
    mediocre = spec_doc(world.labels, "guarded", num_boost_round=3, params={"max_depth": 2, "nthread": 1})
    weak = spec_doc(world.labels, "guarded", num_boost_round=1, params={"max_depth": 1, "nthread": 1})
    strong = spec_doc(world.labels, "guarded", num_boost_round=40, params={"max_depth": 4, "nthread": 1})

    def job(spec: dict[str, Any], **params: Any) -> dict[str, Any]:
        done = world.run_one(sdk.jobs.submit("shop", JOB_TYPE, {"spec": spec, **params}).id)
        assert done.status == "succeeded", done.error
        return done.result

    def aliases() -> dict[str, int]:
        return {a.alias: a.version for a in sdk.models.list_aliases("shop", "guarded")}

    guard = {"metric": "auc", "alias": "production"}
    first = job(mediocre, only_if_better=guard)
    assert first["promotion"]["moved"] is True
    assert first["promotion"]["reason"] == "alias 'production' points at no version yet"
    assert aliases() == {"production": 1, "candidate": 1}

    second = job(weak, only_if_better=guard)
    promotion = second["promotion"]
    assert (second["version"], second["candidate"]) == (2, True), "registered anyway: versions are history"
    assert (promotion["moved"], promotion["version"], promotion["baseline_version"]) == (False, 1, 1)
    assert promotion["new_value"] < promotion["baseline_value"]
    assert "does not beat" in promotion["reason"]
    assert "(higher is better)" in promotion["reason"]
    assert aliases() == {"production": 1, "candidate": 2}

    # the trainer moves `candidate` itself when the gates hold: the guard puts it back when the version is worse
    third = job(weak, promote_alias="candidate", only_if_better=guard)
    assert (third["version"], third["promotion"]["moved"], third["promotion"]["restored"]) == (3, False, 2)
    assert aliases() == {"production": 1, "candidate": 2}

    fourth = job(strong, only_if_better={"metric": "log_loss", "alias": "production"})
    promotion = fourth["promotion"]
    assert (promotion["moved"], promotion["version"], promotion["baseline_version"]) == (True, 4, 1)
    assert promotion["new_value"] < promotion["baseline_value"]
    assert "(lower is better)" in promotion["reason"]
    assert aliases() == {"production": 4, "candidate": 4}
