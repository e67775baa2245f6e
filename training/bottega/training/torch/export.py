"""TabularNet -> ONNX with torch.onnx (the TorchScript exporter, `dynamo=False`: one self-contained file, no
onnxscript), validated against the network on holdout rows with ONNX Runtime by the XGBoost path's rules
(`bottega.training.onnx_export`: max abs difference <= 1e-5 on up to 2,000 rows, relative to max(1, |value|) for
regression).

The graph takes raw rows (input `input`, float32 rows x features, NaN = missing), imputes and standardizes them
like the network, and answers like the XGBoost exports: `label` and `probabilities` (rows x K; K = 2 for binary)
for classifiers, `variable` (rows x 1) for regression.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.training.onnx_export import (
    INPUT_NAME,
    MAX_VALIDATION_ROWS,
    TARGET_OPSET,
    TOLERANCE,
    OnnxExport,
    max_difference,
    onnx_predictions,
)

if TYPE_CHECKING:
    from bottega.training.torch.nets import TabularNet


def to_onnx(net: TabularNet) -> bytes:
    """The ONNX model of `net` (opset 15, dynamic row count)."""
    import torch

    from bottega.training.torch.nets import OnnxHead

    head = OnnxHead(net.cpu().eval()).eval()
    outputs = ["variable"] if net.task == "regression" else ["label", "probabilities"]
    axes = {name: {0: "rows"} for name in [INPUT_NAME, *outputs]}
    with tempfile.TemporaryDirectory(prefix="bottega-onnx-") as tmp, warnings.catch_warnings():
        path = Path(tmp) / "model.onnx"
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*The feature will be removed.*")
        torch.onnx.export(
            head,
            (torch.zeros(2, len(net.mean)),),
            path,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=TARGET_OPSET,
            dynamo=False,
        )
        return path.read_bytes()


def export_torch_onnx(net: TabularNet, features: Any, native: Any, task: str, out: Path) -> OnnxExport:
    """Export, validate on `features` (holdout rows) against the network's `native` predictions, and write `out`
    only when the difference is within TOLERANCE; otherwise no file and a warning saying why."""
    rows = min(len(features), MAX_VALIDATION_ROWS)
    try:
        data = to_onnx(net)
        exported = onnx_predictions(data, features[:rows], task)
    except Exception as exc:  # the export is optional: any failure leaves the native model and a warning
        return OnnxExport(None, None, 0, f"ONNX export failed, so the version has no ONNX flavor: {exc}")
    diff = max_difference(native[:rows], exported, task)
    if not diff <= TOLERANCE:
        warning = (
            f"ONNX export differs from the torch model by {diff:.3g} (> {TOLERANCE:g}) on {rows} holdout rows; "
            "the version has no ONNX flavor"
        )
        return OnnxExport(None, diff, rows, warning)
    out.write_bytes(data)
    return OnnxExport(out, diff, rows, None)
