"""The data both sides read: Parquet files generated once per size (numpy + pyarrow, seeded, so reproducible).

Layout under `<data>/<sizes tag>/`:
- `online_<group>.parquet`: one row per entity, event times within the last hour of generation (FRESH values);
- `history_<group>.parquet`: `history_rows` rows over 30 days, unique per (entity, event time);
- `labels.parquet`: the label rows (entity, timestamp) of the training set;
- `materialize.parquet`: `materialize_rows` distinct entities, event times within the last day;
- `manifest.json`: the sizes and the generation time. Data older than a day is regenerated, since online values
  must be fresh and Cassandra TTLs count from the event time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fsbench.spec import GROUPS, HISTORY_DAYS, KEY, MATERIALIZE_GROUP, TIMESTAMP, Sizes, features

HISTORY_START = datetime(2026, 10, 1, tzinfo=UTC)
MAX_DATA_AGE_S = 86_400


def _feature_columns(rng: Any, group: str, rows: int) -> dict[str, Any]:
    import numpy as np

    columns: dict[str, Any] = {}
    for name, dtype in features(group):
        if dtype == "int":
            columns[name] = rng.integers(0, 1_000, rows, dtype=np.int64)
        else:
            columns[name] = np.round(rng.random(rows) * 100.0, 6)
    return columns


def _table(keys: Any, epoch_us: Any, columns: dict[str, Any]) -> Any:
    import pyarrow as pa

    data = {KEY: pa.array(keys), TIMESTAMP: pa.array(epoch_us).cast(pa.timestamp("us", tz="UTC"))}
    data.update({name: pa.array(values) for name, values in columns.items()})
    return pa.table(data)


def online_table(group: str, entities: int, now: datetime, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    now_us = int(now.timestamp()) * 1_000_000
    times = now_us - rng.integers(60, 3_600, entities, dtype=np.int64) * 1_000_000
    return _table(np.arange(entities, dtype=np.int64), times, _feature_columns(rng, group, entities))


def history_table(group: str, entities: int, rows: int, seed: int) -> Any:
    """`rows` rows over HISTORY_DAYS days, whole seconds, unique per (entity, event time)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keys = rng.integers(0, entities, rows, dtype=np.int64)
    seconds = rng.integers(0, HISTORY_DAYS * 86_400, rows, dtype=np.int64)
    _, first = np.unique(keys * (HISTORY_DAYS * 86_400) + seconds, return_index=True)
    keys, seconds = keys[first], seconds[first]
    times = int(HISTORY_START.timestamp()) * 1_000_000 + seconds * 1_000_000
    return _table(keys, times, _feature_columns(rng, group, len(keys)))


def labels_table(entities: int, rows: int, seed: int) -> Any:
    """Label rows from day 1 to day 31 (the first day and the last have few or stale values: nulls happen)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    keys = rng.integers(0, entities, rows, dtype=np.int64)
    seconds = rng.integers(86_400, (HISTORY_DAYS + 1) * 86_400, rows, dtype=np.int64)
    times = int(HISTORY_START.timestamp()) * 1_000_000 + seconds * 1_000_000
    return _table(keys, times, {})


def materialize_table(rows: int, now: datetime, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    now_us = int(now.timestamp()) * 1_000_000
    times = now_us - rng.integers(60, 86_400, rows, dtype=np.int64) * 1_000_000
    return _table(np.arange(rows, dtype=np.int64), times, _feature_columns(rng, MATERIALIZE_GROUP, rows))


def ensure(root: Path, sizes: Sizes, *, log: Any = print) -> Path:
    """The data folder for these sizes, generated when absent or older than a day."""
    import pyarrow.parquet as pq

    folder = root / sizes.tag()
    manifest = folder / "manifest.json"
    if manifest.exists():
        generated = json.loads(manifest.read_text()).get("generated_at", 0)
        if time.time() - generated < MAX_DATA_AGE_S:
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    for seed, group in enumerate(GROUPS, start=1):
        pq.write_table(online_table(group, sizes.online_entities, now, seed), folder / f"online_{group}.parquet")
        history = history_table(group, sizes.train_entities, sizes.history_rows, 100 + seed)
        pq.write_table(history, folder / f"history_{group}.parquet")
    pq.write_table(labels_table(sizes.train_entities, sizes.labels, 7), folder / "labels.parquet")
    pq.write_table(materialize_table(sizes.materialize_rows, now, 8), folder / "materialize.parquet")
    stamp = {"generated_at": now.timestamp(), "now": now.isoformat(), "sizes": asdict(sizes)}
    manifest.write_text(json.dumps(stamp, indent=2))
    log(f"generated benchmark data in {folder} ({time.perf_counter() - started:.1f} s)")
    return folder


def generated_at(folder: Path) -> datetime:
    return datetime.fromtimestamp(json.loads((folder / "manifest.json").read_text())["generated_at"], tz=UTC)


def materialize_range(folder: Path) -> tuple[datetime, datetime]:
    """The [start, end) that covers every materialize row."""
    now = generated_at(folder)
    return now - timedelta(days=2), now + timedelta(seconds=1)
