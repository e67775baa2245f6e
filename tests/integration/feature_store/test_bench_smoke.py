"""The Bottega side of every feature-store benchmark (bench/feature_store) at a tiny size, so the benchmark code
cannot rot: online reads (SQLite and Cassandra), a training set, materialization into Cassandra, and streaming
freshness through Kafka. Feast is not involved (it lives in its own venv, used only by the benchmark runner)."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "feature_store"


@pytest.fixture(scope="module")
def fsbench() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(BENCH))
    try:
        yield {name: importlib.import_module(f"fsbench.{name}") for name in ("data", "ours", "spec", "stream")}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def folder(fsbench: dict[str, ModuleType], tmp_path_factory: pytest.TempPathFactory) -> Path:
    sizes = fsbench["spec"].Sizes(
        online_entities=200,
        reads=50,
        warmup_reads=5,
        train_entities=100,
        history_rows=3_000,
        labels=1_000,
        materialize_rows=500,
    )
    result: Path = fsbench["data"].ensure(tmp_path_factory.mktemp("bench"), sizes, log=lambda _m: None)
    return result


@pytest.mark.parametrize("kind", ["sqlite", "cassandra"])
def test_online_reads(
    kind: str, fsbench: dict[str, ModuleType], folder: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    hosts = request.getfixturevalue("cassandra_hosts") if kind == "cassandra" else None
    keyspace = request.getfixturevalue("unique_name") if kind == "cassandra" else None
    result = fsbench["ours"].bench_online(
        folder, kind, tmp_path, entities=200, reads=50, warmup=5, cassandra_hosts=hosts, keyspace=keyspace
    )
    assert result["latency"]["n"] == 50
    assert 0 < result["latency"]["p50_us"] <= result["latency"]["p99_us"]
    assert result["features_per_read"] == 10
    assert result["not_fresh_values"] == 0
    expected = pq.read_table(folder / "online_stats_a.parquet").slice(0, 1).to_pylist()[0]
    assert result["sample_entity_0"]["bench:stats_a:a0"] == expected["a0"]
    assert result["sample_entity_0"]["bench:stats_a:a3"] == expected["a3"]


def test_training_set(fsbench: dict[str, ModuleType], folder: Path, tmp_path: Path) -> None:
    ours, spec = fsbench["ours"], fsbench["spec"]
    files = {g: f"history_{g}.parquet" for g in spec.GROUPS}
    ours.prepare_offline(folder, tmp_path / "offline", files)
    result = ours.bench_training(folder, tmp_path / "offline")
    assert result["rows_out"] == result["label_rows"] == 1_000
    assert result["seconds"] > 0
    assert result["peak_rss_mb"] > 0
    sums = result["checksums"]
    assert len(sums) == 15
    assert all(0 < s["non_null"] < 1_000 for s in sums.values()), "some labels precede every value, most do not"


def test_materialize_into_cassandra(
    fsbench: dict[str, ModuleType], folder: Path, tmp_path: Path, cassandra_hosts: str, unique_name: str
) -> None:
    ours, spec = fsbench["ours"], fsbench["spec"]
    ours.prepare_offline(folder, tmp_path / "offline", {spec.MATERIALIZE_GROUP: "materialize.parquet"})
    result = ours.bench_materialize(folder, tmp_path / "offline", cassandra_hosts, unique_name)
    assert result["rows"] == 500
    assert result["rows_per_s"] > 0
    assert result["probe_fresh_values"] == 10  # the first and the last entity, 5 features each


def test_stream_freshness(
    fsbench: dict[str, ModuleType], tmp_path: Path, kafka_bootstrap: str, cassandra_hosts: str, unique_name: str
) -> None:
    stream = fsbench["stream"]
    params: dict[str, Any] = {
        "bootstrap": kafka_bootstrap,
        "store": "cassandra",
        "cassandra_hosts": cassandra_hosts,
        "keyspace": unique_name,
        "workdir": str(tmp_path),
        "rate": 300,
        "seconds": 1.5,
        "entities": 1_000,
        "probes": 5,
        "batch_size": 500,
        "idle_timeout_s": 1.0,
        "warmup_rate": 100,
        "warmup_seconds": 0.5,
    }
    outcome: dict[str, Any] = {}

    def start(p: dict[str, Any]) -> threading.Thread:
        thread = threading.Thread(target=lambda: outcome.update(stream.run_processor(p)), daemon=True)
        thread.start()
        return thread

    def finish(thread: threading.Thread) -> dict[str, Any]:
        thread.join(timeout=60)
        return outcome

    result = stream.bench_stream(params, start, finish)
    assert result["produced"]["sent"] == 450
    assert result["probe_events_unresolved"] == 0
    assert result["freshness"]["n"] == 450 // stream.PROBE_EVERY
    assert 0 < result["freshness"]["p50_ms"] <= result["freshness"]["p99_ms"] < 30_000
    assert result["processor"]["consumed"] == 450 + 50  # the warm-up events too


def test_backfill_benchmark(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        backfill = importlib.import_module("fsbench.backfill")
    finally:
        sys.path.remove(str(BENCH))
    result = backfill.run(tmp_path, rows=2_000, spans=(10, 400), repeats=1)
    short, long = result["spans"]
    assert (short["days"], long["days"]) == (10, 400)
    assert long["daily_files"] > 350  # the day-per-bucket layout it is compared with (a few days have no rows)
    assert long["files"] <= 3  # 2006 and early 2007: thin history, a bucket per past year
    assert set(result["ratios"]) >= {"backfill_400d_vs_10d", "backfill_vs_floor", "bytes_vs_one_file"}
    assert all(value > 0 for value in result["ratios"].values())
