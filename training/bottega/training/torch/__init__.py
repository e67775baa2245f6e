"""PyTorch trainers: a built-in tabular MLP or a user module, trained in-process, with torchrun (DDP), with
Spark's TorchDistributor (DDP) or with horovodrun (Horovod), exported to ONNX and evaluated like every other model.

Nothing here imports torch at import time; `spec` is pydantic only, the other modules import torch when called.
"""
