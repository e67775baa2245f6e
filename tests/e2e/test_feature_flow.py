"""The feature store end to end on embedded defaults: a real `bottega server`, definitions applied with the CLI, the
batch pipeline run by the CLI and by a scheduled-style job on the embedded worker, online values, a training set."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from live_server import BIN, LiveServer, live_server

from bottega.feature_store.online.base import Status
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

DAY = datetime(2026, 11, 1, tzinfo=UTC)
DEFINITIONS = """
project: eats
entities:
  - name: restaurant
    join_keys: {{restaurant_id: int}}
batch_groups:
  - name: daily_prep
    entity: restaurant
    max_age: 2d
    source: {{path: {orders}, timestamp_column: ordered_at}}
    transform_sql: >
      SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time,
             avg(prep_time) AS avg_prep, count(*) AS n_orders
      FROM source GROUP BY ALL
    features:
      - {{name: avg_prep, dtype: float}}
      - {{name: n_orders, dtype: int}}
"""


def cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "bottega"), *args], env=server.env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"bottega {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def write_orders(path: Path) -> None:
    rows = [
        (DAY + timedelta(days=d, hours=h), rid, 10.0 * rid + d) for d in range(4) for h in (8, 20) for rid in (1, 2)
    ]
    pq.write_table(
        pa.table(
            {
                "ordered_at": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
                "restaurant_id": [r[1] for r in rows],
                "prep_time": [r[2] for r in rows],
            }
        ),
        path,
    )


def test_define_compute_serve_and_train(tmp_path: Path) -> None:
    write_orders(tmp_path / "orders.parquet")
    (tmp_path / "features.yaml").write_text(DEFINITIONS.format(orders=tmp_path / "orders.parquet"))
    with live_server(tmp_path / "home") as server:
        cli(server, "projects", "create", "eats")
        applied = cli(server, "features", "apply", str(tmp_path / "features.yaml"))
        assert "daily_prep" in applied.stdout

        # The CLI computes the first days; a job on the API's embedded worker computes the rest.
        ran = json.loads(
            cli(
                server,
                "--json",
                "features",
                "run",
                "eats",
                "daily_prep",
                "--start",
                "2026-11-01T00:00:00Z",
                "--end",
                "2026-11-03T00:00:00Z",
            ).stdout
        )
        assert (ran["rows_offline"], ran["rows_online"]) == (2, 2)
        params = json.dumps({"group": "daily_prep", "start": "2026-11-03T00:00:00Z", "end": "2026-11-06T00:00:00Z"})
        job = json.loads(
            cli(
                server,
                "--json",
                "jobs",
                "submit",
                "eats",
                "features.batch",
                "--params",
                params,
                "--wait",
                "--timeout",
                "60",
            ).stdout
        )
        assert job["status"] == "succeeded", job
        assert job["result"]["rows_offline"] == 6

        schema = GroupSchema(
            "eats",
            "daily_prep",
            (("restaurant_id", ValueType.int),),
            (("avg_prep", ValueType.float), ("n_orders", ValueType.int)),
            timedelta(days=2),
        )
        online = SqliteOnlineStore(server.home / "online.db")
        online.register(schema)
        value = online.read([{"restaurant_id": 2}], [schema.ref("avg_prep")], now=DAY + timedelta(days=4, hours=1))
        online.close()
        found = value.rows[0][FeatureRef.parse("eats:daily_prep:avg_prep")]
        assert (found.value, found.status) == (23.0, Status.FRESH)

        labels = tmp_path / "labels.parquet"
        pq.write_table(
            pa.table(
                {
                    "restaurant_id": [1, 2, 1],
                    "timestamp": pa.array(
                        [DAY + timedelta(days=2, hours=12), DAY + timedelta(days=4), DAY], pa.timestamp("us", tz="UTC")
                    ),
                    "target": [0, 1, 0],
                }
            ),
            labels,
        )
        out = tmp_path / "train.parquet"
        cli(
            server,
            "features",
            "training-set",
            str(labels),
            "-f",
            "eats:daily_prep:avg_prep",
            "-f",
            "eats:daily_prep:n_orders",
            "--out",
            str(out),
        )
        train = pq.read_table(out).to_pydict()
        assert train["target"] == [0, 1, 0]
        assert train["daily_prep__avg_prep"] == [11.0, 23.0, None]  # the day-2 value; the day-4 value; nothing yet
        assert train["daily_prep__n_orders"] == [2, 2, None]

        search = json.loads(cli(server, "--json", "features", "search", "avg_prep").stdout)
        row = search["items"][0]
        assert row["ref"] == "eats:daily_prep:avg_prep"
        assert row["stats"]["rows_offline"] == 6  # reported by the last pipeline run (the job)
        assert row["stats"]["last_run_at"] is not None
