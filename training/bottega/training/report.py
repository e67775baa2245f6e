"""Feature report, feature importance and the tree structure of a booster, as plain JSON for the UI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bottega.training.evaluate import finite, normalized

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PERMUTATION_BATCH_ROWS = 200_000


def column_stats(values: Any, edges: Any) -> dict[str, Any]:
    """Count, null rate, mean, std, min, max, quantiles and a histogram (on shared `edges`) of one column."""
    import numpy as np

    column = np.asarray(values, dtype=np.float64)
    present = column[~np.isnan(column)]
    total = int(column.size)
    stats: dict[str, Any] = {
        "count": int(present.size),
        "null_rate": finite(1.0 - present.size / total) if total else None,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "quantiles": {},
        "histogram": {"edges": [finite(e) for e in edges], "counts": [0] * (len(edges) - 1)},
    }
    if present.size:
        stats.update(
            mean=finite(present.mean()),
            std=finite(present.std()),
            min=finite(present.min()),
            max=finite(present.max()),
            quantiles={str(q): finite(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)},
        )
        stats["histogram"]["counts"] = [int(c) for c in histogram(present, edges)]
    return stats


def histogram(present: Any, edges: Any) -> Any:
    """`np.histogram(present, bins=edges)[0]`, in one pass when the edges are evenly spaced (NumPy sorts the data
    for explicit edges; for a bin count and range it computes each value's bin, with the same counts)."""
    import numpy as np

    edges = np.asarray(edges, dtype=np.float64)
    bins = len(edges) - 1
    if bins >= 1 and np.array_equal(np.linspace(edges[0], edges[-1], bins + 1), edges):
        return np.histogram(present, bins=bins, range=(float(edges[0]), float(edges[-1])))[0]
    return np.histogram(present, bins=edges)[0]


def _present_range(column: Any) -> tuple[float, float] | None:
    import numpy as np

    if not column.size or np.isnan(column).all():
        return None
    return float(np.nanmin(column)), float(np.nanmax(column))


def _edges(train: Any, held: Any, bins: int) -> Any:
    import numpy as np

    ranges = [r for r in (_present_range(train), _present_range(held)) if r is not None]
    if not ranges:
        return np.array([0.0, 1.0])
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def feature_report(names: list[str], train: Any, held: Any, bins: int = 20) -> dict[str, Any]:
    """Per feature: statistics on the training rows and on the evaluation rows (histograms share their bins)."""
    import numpy as np

    features = []
    for j, name in enumerate(names):
        # One strided read per column into contiguous memory; every statistic then reads it sequentially.
        train_column = np.ascontiguousarray(train[:, j], dtype=np.float64)
        held_column = np.ascontiguousarray(held[:, j], dtype=np.float64)
        edges = _edges(train_column, held_column, bins)
        features.append(
            {"name": name, "train": column_stats(train_column, edges), "eval": column_stats(held_column, edges)}
        )
    return {"features": features}


def gain_importance(booster: Any, names: list[str]) -> dict[str, float]:
    """Average gain of each feature's splits (0 for a feature no tree splits on)."""
    scores = booster.get_score(importance_type="gain")
    return {name: float(scores.get(name, 0.0)) for name in names}


def permutation_importance(
    predict: Callable[[Any], Any],
    score: Callable[[Any, Any], float],
    features: Any,
    label: Any,
    names: list[str],
    *,
    repeats: int,
    seed: int,
    batch_rows: int = PERMUTATION_BATCH_ROWS,
) -> dict[str, dict[str, float | None]]:
    """How much the score drops when one feature's column is shuffled (mean and std over `repeats`).

    `score(label, predictions)` is higher-is-better; a positive drop means the model relies on the feature. The
    shuffled copies are predicted in blocks of about `batch_rows` rows (one model call per block rather than per
    copy: a call's fixed cost dominates on a few thousand rows); the shuffles and so the result do not depend on it.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = features.shape[0]
    baseline = score(label, predict(features))
    jobs = [j for j in range(len(names)) for _ in range(repeats)]
    per_block = max(1, batch_rows // max(n, 1))
    drops: dict[int, list[float]] = {j: [] for j in range(len(names))}
    for first in range(0, len(jobs), per_block):
        block = jobs[first : first + per_block]
        stacked = np.empty((len(block) * n, features.shape[1]), dtype=features.dtype)
        for i, j in enumerate(block):
            part = stacked[i * n : (i + 1) * n]
            part[:] = features
            part[:, j] = features[rng.permutation(n), j]
        predicted = predict(stacked)
        for i, j in enumerate(block):
            drops[j].append(baseline - score(label, predicted[i * n : (i + 1) * n]))
    return {
        name: {"mean": finite(np.mean(drops[j])), "std": finite(np.std(drops[j]))} if drops[j] else _no_drop()
        for j, name in enumerate(names)
    }


def _no_drop() -> dict[str, float | None]:
    return {"mean": None, "std": None}


def rank_auc(label: Any, score: Any) -> float:
    """ROC-AUC from average ranks (the Mann-Whitney statistic: scikit-learn's `roc_auc_score` to ~1e-15, in a
    tenth of its time); the rows must hold both classes."""
    import numpy as np

    positive = np.asarray(label) == 1
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    _, inverse, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def importance_score(task: str) -> Callable[[Any, Any], float]:
    """The higher-is-better score permutation importance uses: ROC-AUC (binary; negative log loss when the rows
    hold one class), negative log loss (multiclass), negative RMSE (regression)."""

    def binary(y: Any, p: Any) -> float:
        import numpy as np
        from sklearn.metrics import log_loss

        if len(np.unique(y)) > 1:
            return rank_auc(y, p)
        return -float(log_loss(y, np.clip(p, 0, 1), labels=[0, 1]))

    def multiclass(y: Any, p: Any) -> float:
        from sklearn.metrics import log_loss

        return -float(log_loss(y, normalized(p), labels=list(range(p.shape[1]))))

    def regression(y: Any, p: Any) -> float:
        import numpy as np

        return -float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))

    return {"binary": binary, "multiclass": multiclass}.get(task, regression)


def _node(raw: dict[str, Any]) -> dict[str, Any]:
    """One node of XGBoost's JSON dump in the explorer's shape (recursively)."""
    if "leaf" in raw:
        return {"id": raw["nodeid"], "leaf": raw["leaf"], "cover": raw.get("cover")}
    return {
        "id": raw["nodeid"],
        "depth": raw.get("depth"),
        "feature": raw["split"],
        "threshold": raw.get("split_condition"),
        "yes": raw["yes"],
        "no": raw["no"],
        "missing": raw.get("missing"),
        "gain": raw.get("gain"),
        "cover": raw.get("cover"),
        "children": [_node(child) for child in raw.get("children", [])],
    }


def tree_structure(booster: Any, task: str, classes: list[Any] | None = None) -> dict[str, Any]:
    """Every tree (splits, thresholds, cover, gain, leaf values) from the booster's JSON dump.

    Rows go left (`yes`) when `feature < threshold`; `missing` says where a missing value goes. A multi-class
    booster grows one tree per class per round: tree `i` belongs to class `i % K`.
    """
    dumps = booster.get_dump(dump_format="json", with_stats=True)
    k = len(classes) if task == "multiclass" and classes else 1
    trees = []
    for i, text in enumerate(dumps):
        tree: dict[str, Any] = {"index": i, "root": _node(json.loads(text))}
        if k > 1 and classes is not None:
            tree["class"] = str(classes[i % k])
        trees.append(tree)
    return {"num_trees": len(trees), "split_rule": "feature < threshold goes to yes", "trees": trees}
