"""Evaluate a registered version on newly labelled data: `bottega models evaluate NAME VERSION --labels new.parquet`.

What a user reaches for after a holdout period. The version's own training spec (its `spec.yaml` artifact) says how
its data is built: the same store features are joined point in time to the new label table (same entity keys,
`key_columns`, timestamp and label columns unless overridden), the version is scored by the runtime the prediction
service uses (ONNX Runtime or XGBoost, from the version's artifacts), and the report training computes (metrics,
curves and plot data, slices, feature statistics) is stored on the version as a named evaluation. `training` is the
version's own evaluation; `bottega models evaluations` lays them side by side, and the same name across versions
compares versions on the same labels. Every row with a label is evaluated (there is no split).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.core.errors import InvalidInput
from bottega.core.names import EVALUATION_NAME_PATTERN

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from bottega.api.registry.schemas import EvaluationRead
    from bottega.sdk import Client
    from bottega.training.spec import TrainingSpec

NAME_RE = re.compile(EVALUATION_NAME_PATTERN)


@dataclass(frozen=True)
class Overrides:
    """What differs in the new label table from the training one (None: as in training)."""

    label_column: str | None = None
    timestamp_column: str | None = None
    key_columns: Mapping[str, str] | None = None
    offline_root: str | None = None
    on_duplicates: str = "warn"


def default_name(labels: str | Path) -> str:
    """`<file stem>-<UTC date>`, lowercased to the evaluation name rules, e.g. `holdout_dec-2026-12-07`."""
    stem = re.sub(r"[^a-z0-9_.-]+", "-", Path(str(labels)).stem.lower()).strip("-._") or "labels"
    return f"{stem[:50]}-{datetime.now(UTC).date().isoformat()}"


def _spec(client: Client, project: str, model: str, version: int, folder: Path) -> TrainingSpec:
    from bottega.core.errors import NotFound
    from bottega.training.spec import load_spec

    try:
        files = client.models.download(project, model, version, folder, paths=["spec.yaml"])
    except NotFound as exc:
        raise InvalidInput(
            f"{model} v{version} has no spec.yaml artifact (it was not made by `bottega train`), so how its data is "
            "built is unknown; evaluate it with your own scoring and store the report with "
            "client.models.add_evaluation(...)"
        ) from exc
    return load_spec(files["spec.yaml"])


def _for_labels(spec: TrainingSpec, labels: Path, over: Overrides) -> TrainingSpec:
    from bottega.training.spec import parse_spec

    document = spec.to_document()
    dataset = dict(document["dataset"])
    dataset["labels"] = str(labels.expanduser().resolve())
    dataset["on_duplicates"] = over.on_duplicates
    if over.label_column:
        dataset["label_column"] = over.label_column
    if over.timestamp_column:
        dataset["timestamp_column"] = over.timestamp_column
    if over.key_columns is not None:  # the label columns of the keys follow the new mapping
        join_key = {column: key for key, column in spec.dataset.key_columns.items()}
        keys = [join_key.get(name, name) for name in spec.dataset.entity_keys]
        dataset["entity_keys"] = [over.key_columns.get(key, key) for key in keys]
        dataset["key_columns"] = dict(over.key_columns)
    if over.offline_root:
        dataset["offline_root"] = over.offline_root
    return parse_spec({**document, "dataset": dataset})


def _labels(column: pa.ChunkedArray, task: str, classes: list[Any] | None, name: str) -> np.ndarray:
    """The labels encoded as at training: 0/1, the index of each class of the version, or numbers."""
    import numpy as np

    from bottega.training.data import encode_labels

    if task != "multiclass":
        return encode_labels(column, task, name)[0]
    if not classes:
        raise InvalidInput("the version's signature names no classes; it cannot be evaluated on new labels")
    values = column.to_pylist()
    index = {repr(c): i for i, c in enumerate(classes)}
    unknown = sorted({repr(v) for v in values if repr(v) not in index})
    if unknown:
        raise InvalidInput(
            f"{name!r} has values the version never saw: {', '.join(unknown[:5])} (its classes: "
            f"{', '.join(repr(c) for c in classes)})"
        )
    return np.asarray([index[repr(v)] for v in values], dtype=np.float64)


def _classes(version: Any) -> list[Any] | None:
    for output in version.signature.outputs:
        if output.classes is not None:
            return list(output.classes)
    return None


def _predict(client: Client, project: str, model: str, version: int, matrix: Any, cache: Path) -> Any:
    import numpy as np

    from bottega.serving.runtimes.loader import ArtifactCache, load_runtime

    runtime = load_runtime(ArtifactCache(cache, client).fetch(project, model, version))
    return np.asarray(runtime.predict(matrix), dtype=np.float64)


def _dataset(spec: TrainingSpec, labels: Path, table: pa.Table, used: int, dropped: int) -> dict[str, Any]:
    import pyarrow.compute as pc

    from bottega.feature_store.labels import label_duplicates

    ds = spec.dataset
    times = table[ds.timestamp_column] if ds.timestamp_column in table.column_names else None
    found = label_duplicates(table)
    span = pc.min_max(times).as_py() if times is not None and table.num_rows else {"min": None, "max": None}
    return {
        "labels": str(labels),
        "rows": used,
        "dropped_rows_without_label": dropped,
        "label_column": ds.label_column,
        "timestamp_column": ds.timestamp_column,
        "first_timestamp": span["min"].isoformat() if isinstance(span["min"], datetime) else None,
        "last_timestamp": span["max"].isoformat() if isinstance(span["max"], datetime) else None,
        "label_duplicate_rows": found.duplicate_rows if found else None,
        "label_conflicting_rows": found.conflicting_rows if found else None,
    }


def _slices(spec: TrainingSpec, table: pa.Table, task: str, y: Any, pred: Any, classes: Any) -> list[Any]:
    from bottega.training.evaluate import slice_report

    settings = spec.evaluation
    columns = {name: table[name].to_pylist() for name in settings.slices if name in table.column_names}
    if not columns:
        return []
    return slice_report(
        task, y, pred, columns, classes=classes, threshold=settings.threshold, top_n=settings.slice_top_n
    )


def build_report(
    client: Client, project: str, model: str, version: int, labels: Path, over: Overrides, cache: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(the evaluation report, the dataset summary, the scalar metrics) of a version on a label table."""
    import pyarrow.compute as pc

    from bottega.feature_store.offline.pit_duckdb import column_name
    from bottega.feature_store.types import FeatureRef
    from bottega.training.data import _matrix, load_frame
    from bottega.training.evaluate import evaluate, scalar_metrics
    from bottega.training.report import feature_report

    info = client.models.get_version(project, model, version)
    spec = _for_labels(_spec(client, project, model, version, cache / "spec"), labels, over)
    ds, task = spec.dataset, spec.model.task
    table = load_frame(client, spec)
    labelled = table.filter(pc.is_valid(table[ds.label_column]))
    if labelled.num_rows == 0:
        raise InvalidInput(f"{labels}: no row has a {ds.label_column!r} value")
    names = [*ds.request_features, *(column_name(FeatureRef.parse(ref)) for ref in ds.features)]
    matrix = _matrix(labelled, names)
    classes = _classes(info) if task == "multiclass" else None
    y = _labels(labelled[ds.label_column], task, classes, ds.label_column)
    pred = _predict(client, project, model, version, matrix, cache / "artifacts")
    settings = spec.evaluation
    report = evaluate(task, y, pred, classes=classes, threshold=settings.threshold, bins=settings.histogram_bins)
    stats = feature_report(names, matrix, matrix, settings.histogram_bins)
    dataset = _dataset(spec, labels, table, labelled.num_rows, table.num_rows - labelled.num_rows)
    evaluation: dict[str, Any] = {
        "task": task,
        "evaluated": {"model": model, "version": version},
        "dataset": dataset,
        "eval": report,
        "feature_report": {"features": [{"name": f["name"], "eval": f["eval"]} for f in stats["features"]]},
        "slices": _slices(spec, labelled, task, y, pred, classes),
    }
    return evaluation, dataset, scalar_metrics(report)


def evaluate_version(
    client: Client,
    project: str,
    model: str,
    version: int | str,
    labels: str | Path,
    *,
    name: str | None = None,
    description: str = "",
    overrides: Overrides | None = None,
    cache_dir: str | Path | None = None,
) -> EvaluationRead:
    """Score `version` (a number or an alias) on `labels` and store the report on it as the evaluation `name`
    (default `<file stem>-<date>`); returns what was stored."""
    path = Path(str(labels)).expanduser()
    if not path.exists():
        raise InvalidInput(f"labels: {path} does not exist")
    chosen = name or default_name(path)
    if not NAME_RE.match(chosen) or chosen == "training":
        raise InvalidInput(
            f"evaluation name {chosen!r}: lowercase letters, digits and _ . -, starting with a letter or digit, at "
            "most 63 characters, and not `training`"
        )
    number = client.models.get_version(project, model, str(version)).version
    with tempfile.TemporaryDirectory(prefix="bottega-evaluate-") as tmp:
        cache = Path(cache_dir) if cache_dir else Path(tmp)
        evaluation, dataset, metrics = build_report(
            client, project, model, number, path.resolve(), overrides or Overrides(), cache
        )
    return client.models.add_evaluation(
        project, model, number, chosen, metrics=metrics, evaluation=evaluation, dataset=dataset, description=description
    )
