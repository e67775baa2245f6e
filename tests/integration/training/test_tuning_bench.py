"""The TPE-against-random benchmark (bench/training/tuning_compare.py) at a tiny size, so it cannot rot: its label
table, its spec for each sampler and its best-so-far curves, through the in-process API on SQLite."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
from api_harness import harness, migrated_sqlite

from bottega.training.runner import train

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "training" / "tuning_compare.py"


def test_both_samplers_run_the_same_budget(tmp_path: Path) -> None:
    loaded = importlib.util.spec_from_file_location("tuning_compare", SCRIPT)
    assert loaded is not None
    assert loaded.loader is not None
    bench = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(bench)
    path = bench.write_labels("breast_cancer", tmp_path)
    args = argparse.Namespace(trials=3, rounds=10, metric="log_loss")
    with harness(migrated_sqlite(tmp_path), tmp_path / "home") as api:
        sdk = api.sdk(api.project(bench.PROJECT))
        curves = {}
        for sampler in bench.SAMPLERS:
            result = train(sdk, bench.make_spec(path, 30, sampler, 0, args))
            assert result.tuning is not None
            assert result.tuning["sampler"] == sampler
            curves[sampler] = bench.best_so_far(result.tuning["trial_list"], maximize=False)
    for curve in curves.values():
        assert len(curve) == 3
        assert curve == sorted(curve, reverse=True)  # the best so far never gets worse
    assert curves["tpe"] == pytest.approx(curves["random"])  # TPE's first trials are the seeded random ones
