"""Evaluation reports: the metrics, curves and tables a version stores for the UI (plain JSON, no NaN).

Classification: ROC-AUC, PR-AUC, log loss, accuracy / precision / recall / F1 at a threshold, the confusion matrix
(multi-class too), ROC and PR curves (at most `MAX_POINTS` points each) and a calibration curve. Regression: RMSE,
MAE, MAPE, R2, a residual histogram and a sample of predicted vs actual. scikit-learn computes the metrics.
"""

from __future__ import annotations

import math
from typing import Any

MAX_POINTS = 200
SAMPLE_POINTS = 500
CALIBRATION_BINS = 10


def finite(value: Any) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    number = float(value)
    return number if math.isfinite(number) else None


def normalized(prob: Any) -> Any:
    """Class probabilities whose rows sum to 1 in float64 (boosters compute them in float32)."""
    import numpy as np

    p = np.asarray(prob, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def downsample(xs: Any, ys: Any, max_points: int = MAX_POINTS, extra: Any = None) -> dict[str, list[Any]]:
    """At most `max_points` evenly spaced points of a curve, always keeping the first and the last."""
    import numpy as np

    n = len(xs)
    index = np.unique(np.linspace(0, n - 1, num=min(n, max_points)).round().astype(int)) if n else np.array([], int)
    out: dict[str, list[Any]] = {
        "x": [finite(v) for v in np.asarray(xs)[index]],
        "y": [finite(v) for v in np.asarray(ys)[index]],
    }
    if extra is not None:
        out["threshold"] = [finite(min(v, 1e300)) for v in np.asarray(extra)[index]]
    return out


def _curves(y_true: Any, score: Any) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, roc_thr = roc_curve(y_true, score)
    precision, recall, pr_thr = precision_recall_curve(y_true, score)
    pr_thr = [*pr_thr, 1.0]
    return {
        "roc": downsample(fpr, tpr, extra=roc_thr),
        "pr": downsample(recall, precision, extra=pr_thr),
    }


def _calibration(y_true: Any, prob: Any) -> dict[str, Any]:
    import numpy as np
    from sklearn.calibration import calibration_curve

    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    counts = np.histogram(prob, bins=edges)[0]
    observed, predicted = calibration_curve(y_true, prob, n_bins=CALIBRATION_BINS, strategy="uniform")
    return {
        "predicted": [finite(v) for v in predicted],
        "observed": [finite(v) for v in observed],
        "bin_counts": [int(c) for c in counts],
    }


def _both_classes(y_true: Any) -> bool:
    import numpy as np

    return len(np.unique(y_true)) > 1


def binary_metrics(y_true: Any, prob: Any, threshold: float = 0.5) -> dict[str, float | None]:
    """ROC-AUC, PR-AUC, log loss, accuracy, precision, recall and F1 of P(class 1) (AUCs None for one class)."""
    import numpy as np
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    pred = p >= threshold
    positive = y == 1
    tp = int(np.count_nonzero(pred & positive))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(positive)) - tp
    both = _both_classes(y)
    return {
        "auc": finite(roc_auc_score(y, p)) if both else None,
        "pr_auc": finite(average_precision_score(y, p)) if both else None,
        "log_loss": finite(log_loss(y, p, labels=[0, 1])),
        "accuracy": finite((y.size - fp - fn) / y.size) if y.size else None,
        "precision": finite(tp / (tp + fp)) if tp + fp else 0.0,
        "recall": finite(tp / (tp + fn)) if tp + fn else 0.0,
        "f1": finite(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
    }


def binary_report(y_true: Any, prob: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics and curves of a binary classifier from P(class 1)."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    pred = (p >= threshold).astype(int)
    report: dict[str, Any] = {
        "task": "binary",
        "rows": len(y),
        "threshold": threshold,
        "metrics": binary_metrics(y, p, threshold),
        "confusion_matrix": {"labels": [0, 1], "matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist()},
        "calibration": _calibration(y, p),
    }
    if _both_classes(y):
        report.update(_curves(y, p))
    return report


def multiclass_report(y_true: Any, prob: Any, classes: list[Any]) -> dict[str, Any]:
    """Metrics of a K-class classifier from its (rows x K) probabilities; curves one-vs-rest per class."""
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(y_true).astype(int)
    p = normalized(prob)
    k = len(classes)
    pred = p.argmax(axis=1)
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = len(np.unique(y)) == k
    metrics = {
        "auc": finite(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels)) if present else None,
        "log_loss": finite(log_loss(y, p, labels=labels)),
        "accuracy": finite(accuracy_score(y, pred)),
        "macro_precision": finite(np.mean(precision)),
        "macro_recall": finite(np.mean(recall)),
        "macro_f1": finite(np.mean(f1)),
    }
    per_class = []
    for i, name in enumerate(classes):
        one = (y == i).astype(int)
        row: dict[str, Any] = {
            "class": str(name),
            "precision": finite(precision[i]),
            "recall": finite(recall[i]),
            "f1": finite(f1[i]),
            "support": int(support[i]),
        }
        if _both_classes(one):
            row.update(_curves(one, p[:, i]))
        per_class.append(row)
    confidence = p.max(axis=1)
    return {
        "task": "multiclass",
        "rows": len(y),
        "metrics": metrics,
        "confusion_matrix": {
            "labels": [str(c) for c in classes],
            "matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        },
        "per_class": per_class,
        "calibration": _calibration((pred == y).astype(int), confidence),
    }


def regression_report(y_true: Any, pred: Any, bins: int = 20, seed: int = 0) -> dict[str, Any]:
    """RMSE, MAE, MAPE (over rows whose actual value is not 0), R2, residual histogram, predicted vs actual."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    nonzero = y != 0
    mape = float(np.mean(np.abs((y[nonzero] - p[nonzero]) / y[nonzero]))) if nonzero.any() else None
    residuals = y - p
    counts, edges = np.histogram(residuals, bins=bins)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(y), size=min(len(y), SAMPLE_POINTS), replace=False))
    return {
        "task": "regression",
        "rows": len(y),
        "metrics": {
            "rmse": finite(math.sqrt(mean_squared_error(y, p))),
            "mae": finite(mean_absolute_error(y, p)),
            "mape": finite(mape) if mape is not None else None,
            "r2": finite(r2_score(y, p)) if len(y) > 1 else None,
        },
        "residual_histogram": {"edges": [finite(e) for e in edges], "counts": [int(c) for c in counts]},
        "predicted_vs_actual": {
            "actual": [finite(v) for v in y[sample]],
            "predicted": [finite(v) for v in p[sample]],
        },
    }


def evaluate(
    task: str, y_true: Any, pred: Any, *, classes: list[Any] | None, threshold: float, bins: int
) -> dict[str, Any]:
    """The evaluation report of a task from the model's predictions on the evaluation rows."""
    if task == "binary":
        return binary_report(y_true, pred, threshold)
    if task == "multiclass":
        assert classes is not None
        return multiclass_report(y_true, pred, classes)
    return regression_report(y_true, pred, bins)


def task_metrics(
    task: str, y_true: Any, pred: Any, *, classes: list[Any] | None, threshold: float
) -> dict[str, float | None]:
    """Only the metrics of `evaluate` (no curves, calibration or tables: cheaper on many rows)."""
    if task == "binary":
        return binary_metrics(y_true, pred, threshold)
    return dict(evaluate(task, y_true, pred, classes=classes, threshold=threshold, bins=1)["metrics"])


def scalar_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report's metrics that have a value (a metric undefined on this data, e.g. AUC of one class, is left
    out)."""
    return {key: float(value) for key, value in report["metrics"].items() if value is not None}


OTHER = "__other__"
NULL = "__null__"


def slice_groups(values: Any, top_n: int) -> list[tuple[str, Any]]:
    """(value, row indexes) of the `top_n` most frequent values (ties by value text), then the rest as
    `__other__`; nulls are the value `__null__`."""
    import numpy as np

    texts = np.asarray([NULL if v is None else str(v) for v in values], dtype=object)
    names, inverse, counts = np.unique(texts, return_inverse=True, return_counts=True)
    order = sorted(range(len(names)), key=lambda i: (-int(counts[i]), str(names[i])))
    kept = order[:top_n]
    groups = [(str(names[i]), np.flatnonzero(inverse == i)) for i in kept]
    rest = np.flatnonzero(~np.isin(inverse, kept))
    if rest.size:
        groups.append((OTHER, rest))
    return groups


def slice_report(
    task: str,
    y_true: Any,
    pred: Any,
    columns: dict[str, Any],
    *,
    classes: list[Any] | None,
    threshold: float,
    top_n: int,
) -> list[dict[str, Any]]:
    """Per slice column, the task's metrics on the evaluation rows of each of its values (see `slice_groups`):
    `[{"column", "values": [{"value", "rows", "metrics"}], "top_n"}]`."""
    import numpy as np

    y = np.asarray(y_true)
    p = np.asarray(pred)
    out = []
    for column, values in columns.items():
        entries = []
        for value, rows in slice_groups(values, top_n):
            metrics = task_metrics(task, y[rows], p[rows], classes=classes, threshold=threshold)
            entries.append({"value": value, "rows": int(rows.size), "metrics": metrics})
        out.append({"column": column, "top_n": top_n, "values": entries})
    return out
