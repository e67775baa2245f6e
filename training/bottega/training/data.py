"""The training frame: label rows joined point in time with store features, turned into matrices and split.

Inputs are the request features (label-table columns, same names) followed by the store features (columns
`<group>__<feature>`), in the order the spec lists them. Inputs must be numbers or booleans; nulls become NaN, which
XGBoost treats as missing. Rows without a label are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from bottega.training.spec import RandomSplit, SpecError, TrainingSpec

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from bottega.feature_store.labels import LabelDuplicates
    from bottega.sdk import Client


@dataclass(frozen=True)
class Part:
    """One side of the split: a float64 matrix (NaN = missing) and the encoded labels."""

    features: np.ndarray
    label: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class TrainingData:
    feature_names: list[str]
    request_features: list[tuple[str, str]]
    """(name, signature type) of each request feature."""
    store_columns: dict[str, str]
    """training-set column -> feature reference."""
    classes: list[Any] | None
    """the label value of each class index (classification), None for regression."""
    train: Part
    eval: Part
    dropped_rows: int
    duplicates: LabelDuplicates | None = None
    """duplicate and conflicting label rows found (kept unless `dataset.on_duplicates` is error)."""

    def summary(self) -> dict[str, Any]:
        return {
            "train_rows": self.train.rows,
            "eval_rows": self.eval.rows,
            "dropped_rows_without_label": self.dropped_rows,
            "label_duplicate_rows": self.duplicates.duplicate_rows if self.duplicates else None,
            "label_conflicting_rows": self.duplicates.conflicting_rows if self.duplicates else None,
            "features": list(self.feature_names),
            "classes": class_labels(self.classes),
        }


def class_labels(classes: list[Any] | None) -> list[Any] | None:
    """The classes as JSON values in the label's own type (ints stay ints, strings strings, booleans booleans);
    other types (dates, decimals) as their text."""
    if classes is None:
        return None
    return [c if isinstance(c, bool | int | float | str) else str(c) for c in classes]


def signature_type(dtype: pa.DataType) -> str | None:
    """The model-signature type of an input column, None when it cannot be a model input."""
    import pyarrow as pa

    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return "int64"
    if pa.types.is_floating(dtype):
        return "float64"
    if pa.types.is_null(dtype):
        return "float64"
    return None


def load_frame(client: Client, spec: TrainingSpec) -> pa.Table:
    """The label table with its store features joined point in time (pyarrow)."""
    from bottega.feature_store.labels import DuplicateLabels, check_labels, with_duplicates
    from bottega.feature_store.training import get_training_set, read_labels

    ds = spec.dataset
    path = spec.labels_path()
    if not path.exists():
        raise SpecError(f"dataset.labels: {path} does not exist")
    labels = read_labels(path)
    needed = {
        "dataset.entity_keys": ds.entity_keys,
        "dataset.timestamp_column": [ds.timestamp_column],
        "dataset.label_column": [ds.label_column],
        "dataset.request_features": ds.request_features,
    }
    for field, names in needed.items():
        missing = [n for n in names if n not in labels.column_names]
        if missing:
            raise SpecError(
                f"{field}: column {missing[0]!r} is not in the label table {path} "
                f"(its columns: {', '.join(labels.column_names)})"
            )
    try:
        if not ds.features:
            found = check_labels(labels, ds.entity_keys, ds.timestamp_column, ds.on_duplicates, what="dataset.labels")
            return with_duplicates(labels, found)
        return get_training_set(
            client,
            labels,
            ds.features,
            timestamp_column=ds.timestamp_column,
            offline_root=ds.offline_root,
            on_duplicates=ds.on_duplicates,
            entity_keys=ds.entity_keys,
            key_columns=ds.key_columns,
        )
    except DuplicateLabels as exc:
        raise SpecError(f"dataset.on_duplicates is error: {exc}") from exc


def build_dataset(client: Client, spec: TrainingSpec) -> TrainingData:
    """Read, join, encode and split the training data the spec describes."""
    import pyarrow.compute as pc

    from bottega.feature_store.labels import label_duplicates
    from bottega.feature_store.offline.pit_duckdb import column_name
    from bottega.feature_store.types import FeatureRef

    ds = spec.dataset
    table = load_frame(client, spec)
    # Filtering copies every column: skip it when every row has a label (the usual case).
    has_nulls = table[ds.label_column].null_count > 0
    labelled = table.filter(pc.is_valid(table[ds.label_column])) if has_nulls else table
    dropped = table.num_rows - labelled.num_rows
    if labelled.num_rows < 2:
        raise SpecError(f"dataset.labels: only {labelled.num_rows} row(s) have a {ds.label_column!r} value")
    store_columns = {column_name(FeatureRef.parse(ref)): ref for ref in ds.features}
    names = [*ds.request_features, *store_columns]
    request = [(name, _input_type(labelled, name, "dataset.request_features")) for name in ds.request_features]
    for name in store_columns:
        _input_type(labelled, name, "dataset.features")
    matrix = _matrix(labelled, names)
    label, classes = encode_labels(labelled[ds.label_column], spec.model.task, ds.label_column)
    train_mask = split_mask(labelled, spec)
    train = Part(rows_of(matrix, train_mask), rows_of(label, train_mask))
    held = Part(rows_of(matrix, ~train_mask), rows_of(label, ~train_mask))
    if train.rows == 0 or held.rows == 0:
        side = "training" if train.rows == 0 else "evaluation"
        raise SpecError(f"split: leaves no rows for {side} ({labelled.num_rows} labelled rows)")
    duplicates = label_duplicates(table)
    return TrainingData(names, request, store_columns, classes, train, held, dropped, duplicates)


def rows_of(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`values[mask]`, as a view without a copy when the chosen rows are one contiguous run (a time split of
    time-ordered rows)."""
    import numpy as np

    chosen = np.flatnonzero(mask)
    if chosen.size and chosen[-1] - chosen[0] + 1 == chosen.size:
        first, last = int(chosen[0]), int(chosen[-1])
        return values[first : last + 1]
    picked: np.ndarray = values[mask]
    return picked


def _input_type(table: pa.Table, name: str, field: str) -> str:
    kind = signature_type(table.schema.field(name).type)
    if kind is None:
        raise SpecError(
            f"{field}: {name!r} is {table.schema.field(name).type}; inputs must be numbers or booleans "
            "(encode strings and timestamps as numeric features first)"
        )
    return kind


def _matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = pc.cast(table[name], pa.float64())
        out[:, j] = column.to_numpy(zero_copy_only=False)
    return out


def encode_labels(column: Any, task: str, name: str) -> tuple[np.ndarray, list[Any] | None]:
    """Labels as XGBoost wants them: 0/1 (binary), class indexes 0..K-1 (multiclass), floats (regression)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if task == "regression":
        if signature_type(column.type) is None:
            raise SpecError(f"dataset.label_column: {name!r} is {column.type}; regression needs numbers")
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)), None
    values = pc.unique(column).to_pylist()
    try:
        classes = sorted(values)
    except TypeError as exc:
        raise SpecError(f"dataset.label_column: {name!r} mixes value types: {values[:5]}") from exc
    if task == "binary":
        if not set(classes) <= {0, 1}:
            shown = ", ".join(repr(c) for c in classes[:5])
            raise SpecError(f"dataset.label_column: binary labels must be 0/1 or true/false; {name!r} has {shown}")
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)), [0, 1]
    if len(classes) < 2:
        raise SpecError(f"dataset.label_column: {name!r} has a single class {classes!r}; multiclass needs 2+")
    index = pc.index_in(column, value_set=pa.array(classes, type=column.type))
    return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.float64), classes


def split_mask(table: pa.Table, spec: TrainingSpec) -> np.ndarray:
    """True for training rows: a seeded random holdout, or timestamps before the cut."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    split = spec.split
    if isinstance(split, RandomSplit):
        held = max(1, round(n * split.eval_fraction))
        order = np.random.default_rng(split.seed).permutation(n)
        mask = np.ones(n, dtype=bool)
        mask[order[:held]] = False
        return mask
    column = table[spec.dataset.timestamp_column]
    if not pa.types.is_timestamp(column.type):
        raise SpecError(
            f"dataset.timestamp_column: {spec.dataset.timestamp_column!r} is {column.type}, not a timestamp"
        )
    cut = split.cut.astimezone(UTC)
    if column.type.tz is None:
        cut = cut.replace(tzinfo=None)
    before = pc.less(column, pa.scalar(cut, type=pa.timestamp("us", tz=column.type.tz)))
    return np.asarray(pc.fill_null(before, False).to_numpy(zero_copy_only=False), dtype=bool)
