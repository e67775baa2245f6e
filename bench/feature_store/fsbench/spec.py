"""What both sides of the benchmarks agree on: names, feature groups, sizes. Standard library only, because the
Feast side imports it too (from its own virtual environment)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

PROJECT = "bench"
ENTITY = "driver"
KEY = "driver_id"
TIMESTAMP = "event_timestamp"  # the column of the generated Parquet files (Feast's usual name)
MAX_AGE_DAYS = 7  # Bottega max_age == Feast ttl
HISTORY_DAYS = 30
# Three feature groups of five features each: x0 is an int, x1..x4 are floats.
GROUPS = ("stats_a", "stats_b", "stats_c")
ONLINE_GROUPS = ("stats_a", "stats_b")  # 1 entity x 10 features from 2 groups
MATERIALIZE_GROUP = "stats_m"


def features(group: str) -> list[tuple[str, str]]:
    """(name, dtype) of a group's features, dtype being `int` or `float`."""
    prefix = group.rsplit("_", 1)[1]
    return [(f"{prefix}{i}", "int" if i == 0 else "float") for i in range(5)]


@dataclass(frozen=True)
class Sizes:
    """Every size the benchmarks use; the defaults are the issue's."""

    online_entities: int = 100_000
    reads: int = 10_000
    warmup_reads: int = 500
    train_entities: int = 100_000
    history_rows: int = 1_000_000  # per feature group
    labels: int = 1_000_000
    materialize_rows: int = 1_000_000
    stream_rate: int = 10_000  # events per second
    stream_seconds: float = 60.0
    stream_entities: int = 100_000
    stream_probes: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            online_entities=5_000,
            reads=1_000,
            warmup_reads=100,
            train_entities=5_000,
            history_rows=50_000,
            labels=50_000,
            materialize_rows=20_000,
            stream_rate=1_000,
            stream_seconds=10.0,
            stream_entities=5_000,
            stream_probes=50,
        )

    def with_rows(self, rows: int) -> Sizes:
        """`--rows N`: the training labels, history rows per group and materialized rows become N."""
        if rows <= 0:
            raise ValueError("--rows must be positive")
        return dataclasses.replace(self, history_rows=rows, labels=rows, materialize_rows=rows)

    def tag(self) -> str:
        """A folder name for the data of these sizes (the data is reused between runs)."""
        return (
            f"e{self.online_entities}-t{self.train_entities}-h{self.history_rows}-l{self.labels}"
            f"-m{self.materialize_rows}"
        )
