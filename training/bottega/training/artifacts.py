"""The files a training run records: model.ubj, model.onnx (when it validates), evaluation.json,
feature_report.json, trees.json and spec.yaml; plus the metrics and the evaluation document of the version."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.training.evaluate import evaluate, scalar_metrics, slice_report, task_metrics
from bottega.training.onnx_export import export_onnx
from bottega.training.report import (
    feature_report,
    gain_importance,
    importance_score,
    permutation_importance,
    tree_structure,
)
from bottega.training.xgb import predict

if TYPE_CHECKING:
    from bottega.training.data import TrainingData
    from bottega.training.spec import TrainingSpec
    from bottega.training.xgb import TrainedModel

PERMUTATION_MAX_ROWS = 10_000
TRAIN_METRICS_MAX_ROWS = 200_000
"""The training-row metrics (a check for overfitting next to the holdout's) are computed on at most this many
training rows, a seeded sample above it; the report says how many (`train_metrics_rows`)."""
SLICE_TYPES = "strings, integers, booleans or dictionary-encoded values"


def load_slices(spec: TrainingSpec, data: TrainingData) -> dict[str, list[Any]]:
    """The values of each `evaluation.slices` column on the evaluation rows, in their order (the label table read
    again, with the rows and split `build_dataset` used: the point-in-time join keeps the label order). Raises
    SpecError, before any run exists, for a column the label table lacks or that is not categorical."""
    if not spec.evaluation.slices:
        return {}
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bottega.feature_store.training import read_labels
    from bottega.training.data import split_mask
    from bottega.training.spec import SpecError

    table = read_labels(spec.labels_path())
    for name in spec.evaluation.slices:
        if name not in table.column_names:
            raise SpecError(
                f"evaluation.slices: column {name!r} is not in the label table (its columns: "
                f"{', '.join(table.column_names)})"
            )
        kind = table.schema.field(name).type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_dictionary(kind)
        ):
            raise SpecError(f"evaluation.slices: {name!r} is {kind}; a slice column holds {SLICE_TYPES}")
    labelled = table.filter(pc.is_valid(table[spec.dataset.label_column]))
    held = ~split_mask(labelled, spec)
    if int(held.sum()) != data.eval.rows:
        raise SpecError(
            f"evaluation.slices: the label table gives {int(held.sum())} evaluation rows, the training set "
            f"{data.eval.rows}; was it changed while training started?"
        )
    index = np.flatnonzero(held)
    return {name: labelled[name].take(pa.array(index)).to_pylist() for name in spec.evaluation.slices}


def slices_of(spec: TrainingSpec, data: TrainingData, predicted: Any, slices: dict[str, list[Any]]) -> list[Any]:
    settings = spec.evaluation
    return slice_report(
        spec.model.task,
        data.eval.label,
        predicted,
        slices,
        classes=data.classes,
        threshold=settings.threshold,
        top_n=settings.slice_top_n,
    )


@dataclass
class BuiltArtifacts:
    root: Path
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    onnx: dict[str, Any]
    flavor: str
    flavors: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_file())

    def write_evaluation(self) -> None:
        write_json(self.root / "evaluation.json", self.evaluation)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, allow_nan=False, separators=(",", ":")))


def spec_text(spec: TrainingSpec) -> str:
    document = spec.to_document()
    try:
        import yaml
    except ImportError:  # pragma: no cover - JSON is YAML too
        return json.dumps(document, indent=2)
    return str(yaml.safe_dump(document, sort_keys=False))


def importance(spec: TrainingSpec, data: TrainingData, trained: TrainedModel) -> dict[str, Any]:
    """Gain per feature, and permutation importance on (at most PERMUTATION_MAX_ROWS) evaluation rows."""

    out: dict[str, Any] = {"gain": gain_importance(trained.booster, data.feature_names)}
    repeats = spec.evaluation.permutation_repeats
    if repeats:
        rows = sample_rows(data.eval.rows, PERMUTATION_MAX_ROWS, spec.seed)
        out["permutation"] = permutation_importance(
            lambda x: predict(trained.booster, x),
            importance_score(spec.model.task),
            data.eval.features[rows],
            data.eval.label[rows],
            data.feature_names,
            repeats=repeats,
            seed=spec.seed,
        )
        out["permutation_rows"] = int(rows.size)
    return out


def sample_rows(total: int, limit: int, seed: int) -> Any:
    """All row indexes up to `limit`, else a seeded sorted sample of `limit` of them."""
    import numpy as np

    rows = np.arange(total)
    if total > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    return rows


def train_metrics(
    spec: TrainingSpec, data: TrainingData, model_predict: Callable[[Any], Any]
) -> tuple[dict[str, Any], int]:
    """The metrics of `model_predict` on (at most TRAIN_METRICS_MAX_ROWS) training rows, and how many rows they
    cover."""
    rows = sample_rows(data.train.rows, TRAIN_METRICS_MAX_ROWS, spec.seed)
    sampled = rows.size < data.train.rows
    features = data.train.features[rows] if sampled else data.train.features
    label = data.train.label[rows] if sampled else data.train.label
    predicted = model_predict(features)
    metrics = task_metrics(spec.model.task, label, predicted, classes=data.classes, threshold=spec.evaluation.threshold)
    return metrics, int(rows.size)


def start_feature_report(pool: Executor, spec: TrainingSpec, data: TrainingData) -> Future[dict[str, Any]]:
    """The feature report (NumPy over every row; it needs only the data) computed in `pool`: the runner starts it
    beside training, so it is ready when the evaluation begins."""
    bins = spec.evaluation.histogram_bins
    return pool.submit(feature_report, data.feature_names, data.train.features, data.eval.features, bins)


def build_artifacts(
    spec: TrainingSpec,
    data: TrainingData,
    trained: TrainedModel,
    root: Path,
    slices: dict[str, list[Any]] | None = None,
    features_pending: Future[dict[str, Any]] | None = None,
) -> BuiltArtifacts:
    """Evaluate the booster and write every artifact under `root`; `slices` (from `load_slices`) add the metrics
    per slice value. The feature report comes from `features_pending` (`start_feature_report`), else it is computed
    in a thread beside the model calls."""
    from concurrent.futures import ThreadPoolExecutor

    booster = trained.booster
    task = spec.model.task
    settings = spec.evaluation
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-report") as pool:
        pending = features_pending or start_feature_report(pool, spec, data)
        booster.save_model(str(root / "model.ubj"))
        native = predict(booster, data.eval.features)
        report = evaluate(
            task,
            data.eval.label,
            native,
            classes=data.classes,
            threshold=settings.threshold,
            bins=settings.histogram_bins,
        )
        exported = export_onnx(booster, data.eval.features, native, task, root / "model.onnx")
        train_report, train_rows = train_metrics(spec, data, lambda x: predict(booster, x))
        importances = importance(spec, data, trained)
        write_json(root / "trees.json", tree_structure(booster, task, data.classes))
        features = pending.result()
    warnings = [exported.warning] if exported.warning else []
    flavors = {"xgboost": "model.ubj", **({"onnx": "model.onnx"} if exported.ok else {})}
    evaluation: dict[str, Any] = {
        "trainer": "xgboost",
        "task": task,
        "best_iteration": trained.best_iteration,
        "rounds_run": trained.rounds_run,
        "dataset": data.summary(),
        "eval": report,
        "train_metrics": train_report,
        "train_metrics_rows": train_rows,
        "importance": importances,
        "feature_report": features,
        "onnx": exported.to_dict(),
        "warnings": warnings,
    }
    if slices:
        evaluation["slices"] = slices_of(spec, data, native, slices)
    write_json(root / "feature_report.json", features)
    (root / "spec.yaml").write_text(spec_text(spec))
    built = BuiltArtifacts(
        root=root,
        metrics=scalar_metrics(report),
        evaluation=evaluation,
        onnx=exported.to_dict(),
        flavor="onnx" if exported.ok else "xgboost",
        flavors=flavors,
        warnings=warnings,
    )
    built.write_evaluation()
    return built


def report_metrics(report: dict[str, Any]) -> dict[str, Any]:
    return dict(report["metrics"])
