"""ONNX Runtime: the fast path for tree and torch models.

One `InferenceSession` per version with one intra-op and one inter-op thread and sequential execution (the service
scales with processes, not with threads inside one prediction). The input is one float32 tensor named `input` (rows x
inputs); NaN stands for a missing value.

What the exports of `bottega.training` answer, and what this runtime returns:
- XGBoost (onnxmltools) and torch (`OnnxHead`) classifiers: `label` (rows) and `probabilities` (rows x K, K = 2 for
  binary): binary -> P(class 1) (n,), multiclass -> (n, K);
- regression: `variable` (rows x 1) -> (n,).
The task comes from the version (`evaluation.task`, else the signature's outputs); without one, a graph with a single
output is a regressor and a classifier with two columns is binary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bottega.serving.runtimes.base import ModelLoadError, Runtime, signature_width

if TYPE_CHECKING:
    import numpy as np

INPUT_NAME = "input"
PROBABILITY_OUTPUTS = ("probabilities", "output_probability")


def session_options() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def open_session(path: Path) -> Any:
    """An ONNX Runtime session on `path`; ModelLoadError naming the file when it is missing or not a usable model."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelLoadError("ONNX Runtime is not installed: install bottega[serving]") from exc
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: the file is missing ({path})")
    try:
        return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... classes
        raise ModelLoadError(f"{path.name}: not a model ONNX Runtime can load: {exc}") from exc


def pick_output(outputs: list[Any], task: str | None, name: str) -> tuple[str, str]:
    """(output name, task) for a session's outputs: the probabilities of a classifier, the values of a regressor."""
    for out in outputs:
        if not str(out.type).startswith("tensor("):
            raise ModelLoadError(
                f"{name}: output {out.name!r} is {out.type}; export classifiers with plain tensor outputs (no ZipMap)"
            )
    if len(outputs) == 1:
        if task not in (None, "regression"):
            raise ModelLoadError(f"{name}: the version's task is {task} but the graph has one output (a regressor)")
        return outputs[0].name, "regression"
    probs = [o for o in outputs if o.name in PROBABILITY_OUTPUTS] or [o for o in outputs if len(o.shape or []) == 2]
    if not probs:
        raise ModelLoadError(f"{name}: no probabilities output among {[o.name for o in outputs]}")
    if task == "regression":
        raise ModelLoadError(f"{name}: the version's task is regression but the graph is a classifier")
    if task is None:
        width = (probs[0].shape or [None, None])[-1]
        task = "binary" if width == 2 else "multiclass"
    return probs[0].name, task


class OnnxRuntime(Runtime):
    """A model served through ONNX Runtime (`model.onnx`)."""

    flavor: ClassVar[str] = "onnx"

    def __init__(self, path: Path, *, task: str | None = None, signature: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self.session = open_session(path)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{path.name}: expected one input tensor, the graph has {len(inputs)}")
        self.input_name = inputs[0].name
        if inputs[0].type != "tensor(float)":
            raise ModelLoadError(f"{path.name}: input {self.input_name!r} is {inputs[0].type}, not a float32 tensor")
        self.output_name, self.task = pick_output(self.session.get_outputs(), task, path.name)
        self.n_inputs = self._width(inputs[0].shape, signature or {})
        self._fetch = [self.output_name]

    def _width(self, shape: list[Any], signature: Mapping[str, Any]) -> int:
        declared = shape[-1] if shape and isinstance(shape[-1], int) else None
        expected = signature_width(signature)
        if declared is not None and expected is not None and declared != expected:
            raise ModelLoadError(
                f"{self.path.name}: the graph takes {declared} inputs but the signature lists {expected} "
                "(request features + store features)"
            )
        width = declared or expected
        if width is None:
            raise ModelLoadError(f"{self.path.name}: neither the graph nor the signature says how many inputs")
        return width

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np

        self.check_width(matrix)
        out = self.session.run(self._fetch, {self.input_name: matrix.astype(np.float32, copy=False)})[0]
        result = np.asarray(out, dtype=np.float64)
        if self.task == "binary":
            return result[:, -1] if result.ndim == 2 else result.reshape(-1)
        if self.task == "regression":
            return result.reshape(-1)
        return result

    def close(self) -> None:
        self.session = None
