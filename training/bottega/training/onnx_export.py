"""XGBoost -> ONNX (onnxmltools, opset 15), validated against the booster on holdout rows with ONNX Runtime.

The export is kept only when the largest absolute difference between ONNX Runtime and XGBoost stays within
`TOLERANCE` on the holdout rows: probabilities for classifiers; for regression the difference is divided by
max(1, |prediction|), because ONNX's float32 arithmetic cannot do better than ~1e-7 relative on large values.
Otherwise the version gets no ONNX flavor and the result carries a warning saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOLERANCE = 1e-5
TARGET_OPSET = 15
INPUT_NAME = "input"
MAX_VALIDATION_ROWS = 2000


@dataclass
class OnnxExport:
    path: Path | None
    max_abs_diff: float | None
    rows_checked: int
    warning: str | None

    @property
    def ok(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": TOLERANCE,
            "rows_checked": self.rows_checked,
            "opset": TARGET_OPSET,
            "input": INPUT_NAME,
            "warning": self.warning,
        }


def convert(booster: Any, n_features: int) -> Any:
    """The ONNX model of a booster; its input is one float32 tensor (rows x n_features) named `input`."""
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    # onnxmltools reads features as f0..fN: convert a copy without the booster's feature names.
    plain = xgb.Booster(model_file=bytearray(booster.save_raw("ubj")))
    plain.feature_names = None
    plain.feature_types = None
    return onnxmltools.convert_xgboost(
        plain, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], target_opset=TARGET_OPSET
    )


def onnx_predictions(model_bytes: bytes, features: Any, task: str) -> Any:
    """What ONNX Runtime gives, in the shape `xgb.predict` uses (P(class 1), class probabilities or values)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: np.asarray(features, dtype=np.float32)})
    if task == "regression":
        return np.asarray(outputs[0], dtype=np.float64).reshape(-1)
    prob = np.asarray(outputs[1], dtype=np.float64)
    return prob[:, 1] if task == "binary" else prob


def max_difference(native: Any, exported: Any, task: str) -> float:
    import numpy as np

    diff = np.abs(np.asarray(native, dtype=np.float64) - np.asarray(exported, dtype=np.float64))
    if task == "regression":
        diff = diff / np.maximum(1.0, np.abs(native))
    return float(diff.max()) if diff.size else 0.0


def export_onnx(booster: Any, features: Any, native: Any, task: str, out: Path) -> OnnxExport:
    """Convert, validate on `features` (holdout rows) against the booster's `native` predictions, and write
    `out` only when the difference is within TOLERANCE."""
    rows = min(len(features), MAX_VALIDATION_ROWS)
    try:
        from bottega.core.extras import require

        require("onnxmltools", "xgboost")
        require("onnxruntime", "torch")
        model = convert(booster, features.shape[1])
        data = model.SerializeToString()
        exported = onnx_predictions(data, features[:rows], task)
    except Exception as exc:  # the export is optional: any failure leaves the native model and a warning
        return OnnxExport(None, None, 0, f"ONNX export failed, so the version has no ONNX flavor: {exc}")
    diff = max_difference(native[:rows], exported, task)
    if not diff <= TOLERANCE:
        warning = (
            f"ONNX export differs from XGBoost by {diff:.3g} (> {TOLERANCE:g}) on {rows} holdout rows; "
            "the version has no ONNX flavor"
        )
        return OnnxExport(None, diff, rows, warning)
    out.write_bytes(data)
    return OnnxExport(out, diff, rows, None)
