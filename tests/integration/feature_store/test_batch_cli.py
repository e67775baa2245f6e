"""`bottega features apply | run | get | search | training-set` on the DuckDB engine against an in-process API:
source paths relative to the definitions file, apply-time checks, freshness after a run, duplicate labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import harness, migrated_sqlite
from cli_harness import cli_invoker

DAY = datetime(2026, 11, 1, tzinfo=UTC)
DEFINITIONS = """
project: eats
entities:
  - name: restaurant
    join_keys: {restaurant_id: int}
batch_groups:
  - name: daily_prep
    entity: restaurant
    max_age: 2d
    source: {path: data/orders.parquet, timestamp_column: ordered_at}
    transform_sql: >-
      SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time,
      avg(prep) AS avg_prep, count(*) AS n_orders FROM source GROUP BY ALL
    features:
      - {name: avg_prep, dtype: float}
      - {name: n_orders, dtype: int}
"""


def write_orders(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    times = [DAY + timedelta(days=d, hours=h) for d in range(6) for h in (3, 9) for _ in (1, 2)]
    ids = [r for _d in range(6) for _h in (3, 9) for r in (1, 2)]
    pq.write_table(
        pa.table(
            {
                "restaurant_id": ids,
                "ordered_at": pa.array(times, pa.timestamp("us", tz="UTC")),
                "prep": [float(i) for i in range(len(ids))],
            }
        ),
        path,
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BOTTEGA_OFFLINE_URL", str(tmp_path / "offline"))
    monkeypatch.setenv("BOTTEGA_ONLINE_STORE", "sqlite")
    monkeypatch.setenv("BOTTEGA_ONLINE_SQLITE_PATH", str(tmp_path / "online.db"))
    with harness(migrated_sqlite(tmp_path), tmp_path / "home") as api:
        yield cli_invoker(api, monkeypatch, "features", api.project("eats", owner="alice"))


def flat(text: str) -> str:
    """CLI output with rich's panel borders and line wrapping taken out."""
    return " ".join(text.replace("│", " ").split())


def window(start: int, end: int) -> list[str]:
    return ["--start", (DAY + timedelta(days=start)).isoformat(), "--end", (DAY + timedelta(days=end)).isoformat()]


def test_paths_are_relative_to_the_file_and_freshness_follows_the_newest_run(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "repo"
    write_orders(project / "data" / "orders.parquet")
    (project / "features.yaml").write_text(DEFINITIONS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cli("apply", str(project / "features.yaml"))
    got = cli("get", "eats", "daily_prep")
    assert got["definition"]["source"]["path"] == str(project / "data" / "orders.parquet")
    assert got["stats"] is None

    ran = cli("run", "eats", "daily_prep", *window(0, 5))
    assert ran["rows_offline"] == 8
    newest = DAY + timedelta(days=4)
    stats = cli("get", "eats", "daily_prep")["stats"]
    assert datetime.fromisoformat(stats["last_event_time"]) == newest
    assert stats["freshness_seconds"] > 0
    hits = cli("search", "avg_prep")["items"]
    assert hits[0]["stats"]["freshness_seconds"] == pytest.approx(stats["freshness_seconds"])
    assert "last_event_time" in cli("get", "eats", "daily_prep", as_json=False)
    assert f"{stats['freshness_seconds']:g}s"[:6] in cli("search", "avg_prep", as_json=False)

    cli("run", "eats", "daily_prep", *window(0, 2))  # an old backfill does not move freshness back
    after = cli("get", "eats", "daily_prep")["stats"]
    assert datetime.fromisoformat(after["last_event_time"]) == newest
    assert after["freshness_seconds"] >= stats["freshness_seconds"]


def test_apply_checks_the_sql_against_the_source(cli: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "data" / "orders.parquet")
    path = tmp_path / "features.yaml"
    path.write_text(DEFINITIONS.replace("avg(prep)", "avg(prep_time)"))
    refused = flat(cli("apply", str(path), as_json=False, code=2))
    assert "prep_time" in refused
    assert "restaurant_id, ordered_at, prep" in refused
    path.write_text(DEFINITIONS.replace("count(*) AS n_orders", "count(*) AS orders"))
    assert "does not return ['n_orders']" in flat(cli("apply", str(path), as_json=False, code=2))
    path.write_text(DEFINITIONS.replace("data/orders.parquet", "data/missing.parquet"))
    assert "does not exist" in flat(cli("apply", str(path), as_json=False, code=2))
    assert cli("apply", str(path), "--no-check")["groups"][0]["outcome"] == "created"
    assert cli("list", "eats")["total"] == 1


def test_training_set_reports_and_applies_the_duplicates_policy(cli: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "data" / "orders.parquet")
    (tmp_path / "features.yaml").write_text(DEFINITIONS)
    cli("apply", str(tmp_path / "features.yaml"))
    cli("run", "eats", "daily_prep", *window(0, 7))
    times = [DAY + timedelta(days=3, hours=h) for h in range(4)]
    rows = {"restaurant_id": [1, 2, 1, 2], "timestamp": times, "late": [0, 1, 1, 0]}
    table = pa.table(rows)
    copies = pa.concat_tables([table, table.slice(0, 1), table.slice(0, 1)])
    conflict = pa.table({"restaurant_id": [2], "timestamp": [times[1]], "late": [0]})
    labels = pa.concat_tables([copies, conflict.cast(copies.schema)])
    pq.write_table(labels, tmp_path / "labels.parquet")
    args = ["training-set", str(tmp_path / "labels.parquet"), "-f", "eats:daily_prep:avg_prep"]
    out = ["--out", str(tmp_path / "set.parquet")]
    made = cli(*args, *out)
    assert made["rows"] == 7
    assert made["duplicates"]["duplicate_rows"] == 2
    assert made["duplicates"]["conflicting_rows"] == 2
    human = cli(*args, *out, as_json=False)
    assert "2 exact duplicate rows and 2 conflicting rows" in flat(human)
    assert cli(*args, *out, "--on-duplicates", "keep")["rows"] == 7
    refused = flat(cli(*args, *out, "--on-duplicates", "error", as_json=False, code=2))
    assert "2 exact duplicate rows" in refused
    assert "restaurant_id" in refused
    assert "choose warn, keep or error" in flat(cli(*args, *out, "--on-duplicates", "drop", as_json=False, code=2))
    clean = cli("training-set", str(_clean(tmp_path, table)), "-f", "eats:daily_prep:avg_prep", *out)
    assert json.dumps(clean["duplicates"]).count(": 0") == 2


def _clean(tmp_path: Path, table: pa.Table) -> Path:
    pq.write_table(table, tmp_path / "clean.parquet")
    return tmp_path / "clean.parquet"


def _one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


def test_user_errors_are_one_line_with_exit_2(cli: Any, tmp_path: Path) -> None:
    write_orders(tmp_path / "data" / "orders.parquet")
    path = tmp_path / "features.yaml"
    path.write_text(DEFINITIONS.replace("count(*) AS n_orders", "count(*) + 0.5 AS n_orders"))
    cli("apply", str(path), "--no-check")
    wrong_type = _one_error_line(cli("run", "eats", "daily_prep", *window(0, 7), as_json=False, code=2))
    assert "n_orders" in wrong_type
    assert "int" in wrong_type

    path.write_text(DEFINITIONS)
    cli("apply", str(path))
    cli("run", "eats", "daily_prep", *window(0, 7))
    pq.write_table(pa.table({"restaurant_id": [1], "timestamp": [1.5], "late": [0]}), tmp_path / "numeric.parquet")
    refs = ["-f", "eats:daily_prep:avg_prep", "--out", str(tmp_path / "set.parquet")]
    numeric = _one_error_line(cli("training-set", str(tmp_path / "numeric.parquet"), *refs, as_json=False, code=2))
    assert "timestamp" in numeric
    missing = _one_error_line(cli("training-set", str(tmp_path / "nope.parquet"), *refs, as_json=False, code=2))
    assert "nope.parquet" in missing
    assert "does not exist" in _one_error_line(cli("get", "eats", "ghost", as_json=False, code=2))
    bad_ref = _one_error_line(cli("resolve", "eats:Daily:x", as_json=False, code=2))
    assert "project:group:feature" in bad_ref
