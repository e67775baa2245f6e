"""Feature report, feature importance and the tree structure of a booster, as plain JSON for the UI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bottega.training.evaluate import finite, normalized

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


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
        stats["histogram"]["counts"] = [int(c) for c in np.histogram(present, bins=edges)[0]]
    return stats


def _edges(train: Any, held: Any, bins: int) -> Any:
    import numpy as np

    both = np.concatenate([train, held])
    both = both[~np.isnan(both)]
    if not both.size:
        return np.array([0.0, 1.0])
    low, high = float(both.min()), float(both.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def feature_report(names: list[str], train: Any, held: Any, bins: int = 20) -> dict[str, Any]:
    """Per feature: statistics on the training rows and on the evaluation rows (histograms share their bins)."""
    features = []
    for j, name in enumerate(names):
        edges = _edges(train[:, j], held[:, j], bins)
        features.append(
            {"name": name, "train": column_stats(train[:, j], edges), "eval": column_stats(held[:, j], edges)}
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
) -> dict[str, dict[str, float | None]]:
    """How much the score drops when one feature's column is shuffled (mean and std over `repeats`).

    `score(label, predictions)` is higher-is-better; a positive drop means the model relies on the feature.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    baseline = score(label, predict(features))
    out: dict[str, dict[str, float | None]] = {}
    for j, name in enumerate(names):
        drops = []
        shuffled = features.copy()
        for _ in range(repeats):
            shuffled[:, j] = features[rng.permutation(features.shape[0]), j]
            drops.append(baseline - score(label, predict(shuffled)))
        out[name] = {"mean": finite(np.mean(drops)), "std": finite(np.std(drops))}
    return out


def importance_score(task: str) -> Callable[[Any, Any], float]:
    """The higher-is-better score permutation importance uses: ROC-AUC (binary; negative log loss when the rows
    hold one class), negative log loss (multiclass), negative RMSE (regression)."""

    def binary(y: Any, p: Any) -> float:
        import numpy as np
        from sklearn.metrics import log_loss, roc_auc_score

        if len(np.unique(y)) > 1:
            return float(roc_auc_score(y, p))
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
