"""The Bottega side of the serving benchmark (bench/serving) at a tiny size, so the benchmark code cannot rot: the
floor, `bottega serve` with and without the prediction log, store features from Cassandra, and deploy -> first
prediction, each checked against ONNX Runtime and measured for a second. MLflow is not involved (it lives in its own
venv, used only by the benchmark runner). The load tool is wrk when installed, else the runner's Python client."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "serving"


@pytest.fixture(scope="module")
def runner() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_serving_runner", BENCH / "runner.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)  # puts bench/serving on sys.path for its own `svbench` package
        yield module
    finally:
        del sys.modules[spec.name]
        if str(BENCH) in sys.path:
            sys.path.remove(str(BENCH))
        for name in [n for n in sys.modules if n == "svbench" or n.startswith("svbench.")]:
            del sys.modules[name]


def test_bottega_side_at_a_tiny_size(runner: ModuleType, cassandra_hosts: str, tmp_path: Path) -> None:
    argv = ["all", "--quick", "--no-mlflow", "--no-pin", "--trees", "20", "--seconds", "1", "--warmup", "0"]
    argv += ["--concurrency", "2", "--entities", "50", "--deploy-rounds", "1", "--cassandra-hosts", cassandra_hosts]
    argv += ["--data", str(tmp_path / "data"), "--results", str(tmp_path / "results")]
    results = runner.run(argv)

    assert set(results["measured"]) == {"floor@c2", "bottega@c2", "bottega-nolog@c2", "bottega-store@c2"}
    for name, entry in results["measured"].items():
        median = entry["median"]
        assert median["requests"] > 0, name
        assert median["errors"] == 0, name
        assert 0 < median["p50_us"] <= median["p99_us"], name
        assert median["rps"] > 0, name
    checks = results["checks"]
    assert checks["bottega"]["version"] == "xgb:1"
    assert checks["bottega"]["prediction"] == pytest.approx(checks["floor"]["prediction"], abs=1e-6)
    assert checks["bottega-store"]["feature_status"] == ["FRESH"]
    assert checks["bottega-store"]["version"] == "xgb-store:1"

    (deploy,) = results["deploy"]["rounds"]
    assert results["deploy"]["failed_rounds"] == 0
    assert deploy["version"] == 2
    assert 0 < deploy["to_first_prediction_s"] < 30

    measures = {row["measure"] for row in results["goals"]}
    assert "(a) p50 c=2: Bottega / floor" in measures
    assert "(b) p99 c=2, 10 store features" in measures
    assert "(c) prediction-log cost c=2" in measures
    assert "(d) deploy -> first prediction, worst" in measures
    (saved,) = (tmp_path / "results").glob("serving-all-*.json")
    assert json.loads(saved.read_text())["command"].startswith("bench/serving/run.sh all --quick")
