"""Where `bottega train` spends its time beyond `xgboost.train`: each stage of the local XGBoost trainer timed
piece by piece in one process, on the benchmark's generated data (no API server: the Client is not needed to build
a training set from a label file without store features).

    .venv/bin/python bench/training/xgb_stages.py                  # 1M x 50, 100 rounds, depth 6
    .venv/bin/python bench/training/xgb_stages.py --rows 200000

Stages: building the training set (read + matrix + split), training (`train_xgboost`, DMatrix construction
included), then the pieces `build_artifacts` runs: holdout predictions and report, training-row metrics, feature
report, gain and permutation importance, ONNX export and validation, the tree JSON, and the whole
`build_artifacts` call (which may run pieces concurrently, so it can be less than their sum).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".data" / "training"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--nthread", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the generated data and the results")
    parser.add_argument("--before", action="store_true", help="also time the pieces as computed before")
    return parser.parse_args(argv)


def timed(stages: dict[str, Any], name: str, call: Callable[[], Any]) -> Any:
    """Run `call`, keeping its wall seconds and this process's CPU seconds (all threads): on a shared machine the
    CPU seconds move less with the load than the wall time."""
    start, cpu = time.perf_counter(), time.process_time()
    value = call()
    stages[name] = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
    print(f"  {name:<34}{stages[name]['wall']:>8.2f} s wall {stages[name]['cpu']:>8.2f} s CPU", flush=True)
    return value


def pieces(spec: Any, data: Any, trained: Any, stages: dict[str, Any], before: bool) -> None:
    """The evaluation stage, piece by piece (the same calls `build_artifacts` makes); with `before`, each heavy
    piece is also timed as it was computed before the overhead work (`stages_before.py`), right after the new one."""
    import stages_before

    from bottega.training import artifacts as art
    from bottega.training.evaluate import evaluate
    from bottega.training.onnx_export import export_onnx
    from bottega.training.report import feature_report, tree_structure
    from bottega.training.xgb import predict

    booster, task, settings = trained.booster, spec.model.task, spec.evaluation
    native = timed(stages, "holdout predictions", lambda: predict(booster, data.eval.features))
    timed(
        stages,
        "holdout report",
        lambda: evaluate(task, data.eval.label, native, classes=data.classes, threshold=0.5, bins=20),
    )
    timed(stages, "training-row metrics", lambda: art.train_metrics(spec, data, lambda x: predict(booster, x)))
    if before:
        timed(stages, "  before: all training rows", lambda: stages_before.train_metrics(spec, data, trained))
    names, bins = data.feature_names, settings.histogram_bins
    timed(stages, "feature report", lambda: feature_report(names, data.train.features, data.eval.features, bins))
    if before:
        timed(
            stages,
            "  before: sorting histograms",
            lambda: stages_before.feature_report(names, data.train.features, data.eval.features, bins),
        )
    timed(stages, "importance (gain + permutation)", lambda: art.importance(spec, data, trained))
    if before:
        timed(stages, "  before: one call per copy", lambda: stages_before.permutation_importance(spec, data, trained))
    with tempfile.TemporaryDirectory() as tmp:
        timed(
            stages,
            "ONNX export + validation",
            lambda: export_onnx(booster, data.eval.features, native, task, Path(tmp) / "m.onnx"),
        )
    timed(stages, "tree JSON", lambda: json.dumps(tree_structure(booster, task, data.classes)))


def main(argv: list[str]) -> int:
    args = parse(argv)
    sys.path.insert(0, str(HERE))
    import xgb_sides
    import xgboost  # noqa: F401

    from bottega.training.artifacts import build_artifacts
    from bottega.training.data import build_dataset
    from bottega.training.spec import load_spec
    from bottega.training.xgb import train_xgboost

    path = xgb_sides.generate(args.data, args.rows, args.features)
    knobs = {"rounds": args.rounds, "depth": args.depth, "eta": 0.1, "nthread": args.nthread, "seed": args.seed}
    spec = load_spec(xgb_sides.make_spec(path, args.rows, args.features, **knobs))
    stages: dict[str, Any] = {}
    print(f"{args.rows} x {args.features}, {args.rounds} rounds, depth {args.depth}, {args.nthread} threads")
    data = timed(stages, "training set", lambda: build_dataset(None, spec))  # type: ignore[arg-type]
    trained = timed(stages, "training (xgboost.train)", lambda: train_xgboost(spec, data))
    pieces(spec, data, trained, stages, args.before)
    with tempfile.TemporaryDirectory() as tmp:
        timed(stages, "build_artifacts (whole)", lambda: build_artifacts(spec, data, trained, Path(tmp)))
    out = args.data / "results" / f"xgb_stages-{args.rows}x{args.features}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {**vars(args), "data": str(args.data)}, "stages": stages}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
