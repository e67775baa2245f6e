"""The `model:` section of a PyTorch training spec (pydantic only: importing this stays light).

    model:
      type: pytorch
      task: binary                       # binary | multiclass | regression
      architecture: {kind: mlp, hidden: [64, 32], dropout: 0.1, activation: relu}
      # or a user module:  architecture: {kind: module, module: "mynets.tabular:ResNet", params: {width: 64}}
      epochs: 30
      batch_size: 256                    # the global batch: split across DDP processes
      lr: 0.001
      optimizer: adam                    # adam | adamw | sgd (momentum 0.9)
      weight_decay: 0.0
      early_stopping_patience: 5         # epochs without a better eval loss; the best epoch's weights are kept
    compute: {kind: torchrun, processes: 2}   # or local, {kind: torch_distributor, processes: 2},
                                              # or {kind: horovod, processes: 2}

`architecture: mlp` and `architecture: "package.module:ClassName"` are shorthands. A user module is a
`torch.nn.Module` subclass built as `ClassName(n_inputs, n_outputs, **params)` whose `forward(x)` maps a float32
batch (rows x n_inputs, standardized, no NaN) to raw scores (rows x n_outputs): logits for classification (n_outputs
is 1 for binary, K for K classes), the standardized target for regression (n_outputs 1).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bottega.core.names import FUNCTION_PATTERN

TORCH_COMPUTES = ("torchrun", "torch_distributor", "horovod")
"""The distributed launchers of PyTorch models: DDP (torchrun, Spark's TorchDistributor) or Horovod, each over
`compute.processes` processes."""
TORCH_COMPUTE_KINDS = ("local", *TORCH_COMPUTES)
MODULE_PATTERN = FUNCTION_PATTERN

ParamScalar = str | int | float | bool
LayerWidth = Annotated[int, Field(ge=1, le=65_536)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MlpArchitecture(_Strict):
    """The built-in tabular MLP: Linear -> activation -> dropout per hidden layer, then a Linear output layer."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[LayerWidth] = Field(default_factory=lambda: [64, 32], max_length=32, description="layer widths")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "tanh", "gelu", "silu", "leaky_relu"] = "relu"


class ModuleArchitecture(_Strict):
    """A user module `package.module:ClassName`, built as `ClassName(n_inputs, n_outputs, **params)`."""

    kind: Literal["module"] = "module"
    module: str = Field(pattern=MODULE_PATTERN, description="`package.module:ClassName`, importable by the trainer")
    params: dict[str, ParamScalar | list[ParamScalar]] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("n_inputs", "n_outputs"):
            if key in value:
                raise ValueError(f"params.{key} is not allowed here: the trainer passes it from the data")
        return value


Architecture = Annotated[MlpArchitecture | ModuleArchitecture, Field(discriminator="kind")]


class TorchModel(_Strict):
    """A PyTorch network trained with mini-batch gradient descent on standardized inputs."""

    type: Literal["pytorch"]
    task: Literal["binary", "multiclass", "regression"]
    architecture: Architecture = Field(default_factory=MlpArchitecture)
    epochs: int = Field(default=20, ge=1, le=100_000)
    batch_size: int = Field(default=256, ge=1, le=10_000_000, description="global batch size")
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    early_stopping_patience: int | None = Field(default=None, ge=1, le=100_000)

    @field_validator("architecture", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": "module", "module": value} if ":" in value else {"kind": value}
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "module" if "module" in value else "mlp", **value}
        return value


def check_compute(model_type: str, kind: str, processes: int, workers: int) -> None:
    """Raise ValueError (naming the field) when the compute does not fit the model type."""
    if kind in TORCH_COMPUTES and model_type != "pytorch":
        raise ValueError(f"compute.kind: compute {kind!r} trains PyTorch models (model.type: pytorch)")
    if model_type == "pytorch" and kind not in TORCH_COMPUTE_KINDS:
        raise ValueError(f"compute.kind: a pytorch model trains with {', '.join(TORCH_COMPUTE_KINDS)}; got {kind!r}")
    if kind in TORCH_COMPUTES and workers != 1:
        raise ValueError(f"compute.workers: {kind} takes `compute.processes` (the number of training processes)")
    if processes != 1 and kind not in TORCH_COMPUTES:
        kinds = f"{', '.join(TORCH_COMPUTES[:-1])} and {TORCH_COMPUTES[-1]}"
        raise ValueError(f"compute.processes: only for {kinds}; compute {kind!r} uses 1")
