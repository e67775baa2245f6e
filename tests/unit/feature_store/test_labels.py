"""Duplicate and conflicting label rows: counted once, then warned about, kept or refused."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bottega.feature_store.labels import (
    DuplicateLabels,
    check_labels,
    find_duplicates,
    label_duplicates,
    with_duplicates,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def labels(copies: int = 3, conflicts: int = 2) -> pa.Table:
    ids = list(range(10))
    times = [T0 + timedelta(hours=i) for i in ids]
    late = [i % 2 for i in ids]
    ids += [0] * copies + [1] * conflicts  # exact copies of row 0; rows 1 with the other label
    times += [times[0]] * copies + [times[1]] * conflicts
    late += [late[0]] * copies + [1 - late[1]] * conflicts
    return pa.table({"restaurant_id": ids, "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")), "late": late})


def test_counts_exact_duplicates_and_conflicting_rows() -> None:
    found = find_duplicates(labels(), ["restaurant_id"], "timestamp")
    # 3 extra copies of row 0, 1 extra copy of the conflicting row; rows 1 come in two versions: 2 distinct rows
    assert (found.rows, found.duplicate_rows, found.conflicting_rows) == (15, 4, 2)
    assert found.example_key == {"restaurant_id": 0, "timestamp": T0.isoformat()}
    clean = find_duplicates(labels(0, 0), ["restaurant_id"], "timestamp")
    assert (clean.found, clean.duplicate_rows, clean.conflicting_rows, clean.example_key) == (False, 0, 0, None)


def test_policies(caplog: pytest.LogCaptureFixture) -> None:
    table = labels()
    with pytest.raises(DuplicateLabels) as refused:
        check_labels(table, ["restaurant_id"], "timestamp", "error")
    assert "4 exact duplicate rows and 2 conflicting rows" in str(refused.value)
    assert "'restaurant_id': 0" in str(refused.value)
    with caplog.at_level(logging.WARNING, logger="bottega.feature_store.labels"):
        warned = check_labels(table, ["restaurant_id"], "timestamp", "warn")
    assert warned.duplicate_rows == 4
    assert "4 exact duplicate rows" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bottega.feature_store.labels"):
        kept = check_labels(table, ["restaurant_id"], "timestamp", "keep")
    assert kept == warned
    assert caplog.text == ""
    with pytest.raises(ValueError, match="choose one of error, warn, keep"):
        check_labels(table, ["restaurant_id"], "timestamp", "drop")


def test_the_counts_ride_in_the_table_metadata_through_parquet(tmp_path: object) -> None:
    table = labels()
    found = find_duplicates(table, ["restaurant_id"], "timestamp")
    marked = with_duplicates(table, found)
    assert marked.num_rows == table.num_rows
    assert label_duplicates(marked) == found
    assert label_duplicates(table) is None
    path = f"{tmp_path}/set.parquet"
    pq.write_table(marked, path)
    assert label_duplicates(pq.read_table(path)) == found
