"""The evaluation pieces as `build_artifacts` computed them before the overhead work (kept only so that
`xgb_stages.py --before` can time old and new side by side, in one process, under the same load):

- training-row metrics: the full report (curves, calibration) on every training row, keeping only its metrics;
- feature report: `np.histogram` with explicit edges (NumPy sorts each column for those), edges from a
  concatenated copy of both columns, each statistic reading the strided column of the row-major matrix;
- permutation importance: one model call per shuffled copy, scored with scikit-learn's `roc_auc_score`.
"""

from __future__ import annotations

from typing import Any

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def train_metrics(spec: Any, data: Any, trained: Any) -> dict[str, Any]:
    from bottega.training.evaluate import evaluate
    from bottega.training.xgb import predict

    predicted = predict(trained.booster, data.train.features)
    report = evaluate(spec.model.task, data.train.label, predicted, classes=data.classes, threshold=0.5, bins=1)
    return dict(report["metrics"])


def column_stats(values: Any, edges: Any) -> dict[str, Any]:
    import numpy as np

    column = np.asarray(values, dtype=np.float64)
    present = column[~np.isnan(column)]
    if not present.size:
        return {"count": 0}
    return {
        "count": int(present.size),
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
        "quantiles": np.quantile(present, QUANTILES).tolist(),
        "counts": np.histogram(present, bins=edges)[0].tolist(),
    }


def feature_report(names: list[str], train: Any, held: Any, bins: int = 20) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for j, name in enumerate(names):
        both = np.concatenate([train[:, j], held[:, j]])
        both = both[~np.isnan(both)]
        edges = np.linspace(float(both.min()), float(both.max()), bins + 1)
        out.append({"name": name, "train": column_stats(train[:, j], edges), "eval": column_stats(held[:, j], edges)})
    return out


def permutation_importance(spec: Any, data: Any, trained: Any, max_rows: int = 10_000) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from bottega.training.xgb import predict

    rows = np.arange(data.eval.rows)
    if rows.size > max_rows:
        rows = np.sort(np.random.default_rng(spec.seed).choice(rows, max_rows, replace=False))
    features, label = data.eval.features[rows], data.eval.label[rows]
    rng = np.random.default_rng(spec.seed)
    baseline = roc_auc_score(label, predict(trained.booster, features))
    out = {}
    for j, name in enumerate(data.feature_names):
        drops = []
        shuffled = features.copy()
        for _ in range(spec.evaluation.permutation_repeats):
            shuffled[:, j] = features[rng.permutation(features.shape[0]), j]
            drops.append(baseline - roc_auc_score(label, predict(trained.booster, shuffled)))
        out[name] = float(np.mean(drops))
    return out
