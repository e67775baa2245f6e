"""The folder a distributed PyTorch run works in: what the launcher hands over and what rank 0 hands back.

    job.json        {"net": NetConfig, "loop": LoopConfig}
    train.parquet   the training rows: columns f0..f{n-1} (float64, null = missing) and label
    eval.parquet    the evaluation rows, same columns
    epochs.jsonl    rank 0 appends one line per epoch: {"epoch": 3, "metrics": {"eval.loss": ...}}
    model.pt        rank 0: the state dict of the trained TabularNet (the best epoch's with early stopping)
    result.json     rank 0, last: {"best_epoch", "epochs_run", "history", "world_size", "backend"}

Standard library and pyarrow only, so the launcher can write a job without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

JOB = "job.json"
EPOCHS = "epochs.jsonl"
STATE = "model.pt"
RESULT = "result.json"
PARTS = ("train", "eval")


def write_part(path: Path, features: np.ndarray, label: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {f"f{j}": pa.array(features[:, j], from_pandas=True) for j in range(features.shape[1])}
    columns["label"] = pa.array(label)
    pq.write_table(pa.table(columns), path)


def read_part(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features rows x n float64 with NaN for nulls, labels) of a part written by `write_part`."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = [n for n in table.column_names if n != "label"]
    features = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        features[:, j] = table[name].to_numpy(zero_copy_only=False)
    return features, np.asarray(table["label"].to_numpy(zero_copy_only=False), dtype=np.float64)


def write_job(folder: Path, document: dict[str, Any], parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    (folder / JOB).write_text(json.dumps(document))
    for name in PARTS:
        write_part(folder / f"{name}.parquet", *parts[name])


def append_epoch(folder: Path, epoch: int, metrics: dict[str, float]) -> None:
    with (folder / EPOCHS).open("a") as out:
        out.write(json.dumps({"epoch": epoch, "metrics": metrics}) + "\n")
        out.flush()


class EpochFollower:
    """Reads the epochs rank 0 has appended since the last call (complete lines only)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / EPOCHS
        self.offset = 0

    def new(self) -> list[tuple[int, dict[str, float]]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as source:
            source.seek(self.offset)
            chunk = source.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        out = []
        for line in complete.decode().splitlines():
            record = json.loads(line)
            out.append((int(record["epoch"]), {k: float(v) for k, v in record["metrics"].items()}))
        return out
