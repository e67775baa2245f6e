"""The files a PyTorch run records, and the evaluation of the trained network.

| file | content |
|---|---|
| `model.pt` | the state dict of the TabularNet (core weights plus the standardization buffers) |
| `model.json` | the network's config: architecture, input order, classes, means / stds / imputation, target scaling |
| `model.onnx` | ONNX (opset 15, input `input`), only when validated against the network |
| `evaluation.json`, `feature_report.json`, `spec.yaml` | as for XGBoost (no gain and no trees for a network) |
| `history.json` | the metrics of every epoch |

`load_model(folder)` rebuilds the network from `model.json` and `model.pt`.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.training.artifacts import (
    PERMUTATION_MAX_ROWS,
    BuiltArtifacts,
    slices_of,
    spec_text,
    train_metrics,
    write_json,
)
from bottega.training.evaluate import evaluate, finite, scalar_metrics
from bottega.training.report import feature_report, importance_score, permutation_importance

if TYPE_CHECKING:
    from bottega.training.data import TrainingData
    from bottega.training.spec import TrainingSpec
    from bottega.training.torch.nets import TabularNet
    from bottega.training.torch.trainer import TorchTrained

STATE_FILE = "model.pt"
CONFIG_FILE = "model.json"
ONNX_FILE = "model.onnx"


def load_model(folder: Path) -> TabularNet:
    """The trained network from a version's `model.json` and `model.pt` (on the CPU, in eval mode)."""
    import torch

    from bottega.training.torch.nets import NetConfig, build_net

    config = NetConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    return build_net(config, state).eval()


def importance(spec: TrainingSpec, data: TrainingData, net: TabularNet) -> dict[str, Any]:
    """Permutation importance on (at most PERMUTATION_MAX_ROWS) evaluation rows."""
    import numpy as np

    from bottega.training.torch.nets import predict

    repeats = spec.evaluation.permutation_repeats
    if not repeats:
        return {}
    rows = np.arange(data.eval.rows)
    if rows.size > PERMUTATION_MAX_ROWS:
        rows = np.sort(np.random.default_rng(spec.seed).choice(rows, PERMUTATION_MAX_ROWS, replace=False))
    scores = permutation_importance(
        lambda x: predict(net, x),
        importance_score(spec.model.task),
        data.eval.features[rows],
        data.eval.label[rows],
        data.feature_names,
        repeats=repeats,
        seed=spec.seed,
    )
    return {"permutation": scores, "permutation_rows": int(rows.size)}


def build_torch_artifacts(
    spec: TrainingSpec,
    data: TrainingData,
    trained: TorchTrained,
    root: Path,
    slices: dict[str, list[Any]] | None = None,
    features_pending: Future[dict[str, Any]] | None = None,
) -> BuiltArtifacts:
    """Evaluate the network and write every artifact under `root`; `slices` (from `load_slices`) add the metrics
    per slice value; the feature report comes from `features_pending` when the runner started it beside
    training."""
    import torch

    from bottega.training.torch.export import export_torch_onnx
    from bottega.training.torch.nets import predict

    net, task, settings = trained.net, spec.model.task, spec.evaluation
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, root / STATE_FILE)
    write_json(root / CONFIG_FILE, trained.config.to_dict())
    native = predict(net, data.eval.features)
    report = evaluate(
        task, data.eval.label, native, classes=data.classes, threshold=settings.threshold, bins=settings.histogram_bins
    )
    train_report, train_rows = train_metrics(spec, data, lambda x: predict(net, x))
    if features_pending is not None:
        features = features_pending.result()
    else:
        features = feature_report(data.feature_names, data.train.features, data.eval.features, settings.histogram_bins)
    exported = export_torch_onnx(net, data.eval.features, native, task, root / ONNX_FILE)
    warnings = [exported.warning] if exported.warning else []
    flavors = {"torch": STATE_FILE, **({"onnx": ONNX_FILE} if exported.ok else {})}
    evaluation: dict[str, Any] = {
        "trainer": "pytorch",
        "task": task,
        "best_iteration": trained.best_iteration,
        "rounds_run": trained.rounds_run,
        "compute": trained.compute,
        "network": {
            "architecture": trained.config.architecture,
            "parameters": sum(p.numel() for p in net.parameters()),
            "config": CONFIG_FILE,
        },
        "dataset": data.summary(),
        "eval": report,
        "train_metrics": train_report,
        "train_metrics_rows": train_rows,
        "importance": importance(spec, data, net),
        "feature_report": features,
        "onnx": exported.to_dict(),
        "warnings": warnings,
    }
    if slices:
        evaluation["slices"] = slices_of(spec, data, native, slices)
    write_json(root / "feature_report.json", features)
    write_json(root / "history.json", {k: [finite(v) for v in values] for k, values in trained.history.items()})
    (root / "spec.yaml").write_text(spec_text(spec))
    built = BuiltArtifacts(
        root=root,
        metrics=scalar_metrics(report),
        evaluation=evaluation,
        onnx=exported.to_dict(),
        flavor="onnx" if exported.ok else "torch",
        flavors=flavors,
        warnings=warnings,
    )
    built.write_evaluation()
    return built
