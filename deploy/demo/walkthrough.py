"""`make demo`: one model's life on embedded defaults, against the API and prediction service `deploy/demo.sh` started.

Restaurants and their orders (generated): a batch feature group computes each restaurant's daily average prep time
and order count; its pipeline writes the offline store (Parquet) and the online store (SQLite); a point-in-time
training set of past deliveries trains an XGBoost model that predicts a late delivery; the version is deployed and
the prediction service answers with features read from the online store.

Environment: BOTTEGA_URL, BOTTEGA_TOKEN, BOTTEGA_HOME (set by deploy/demo.sh), BOTTEGA_DEMO_SERVE_URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bottega.sdk import Client

PROJECT = "eats"
GROUP = "restaurant_stats"
MODEL = "late_delivery"
DEPLOYMENT = "late-delivery"
RESTAURANTS = 40
DAYS = 30
BIN = Path(sys.executable).parent

DEFINITIONS = """\
project: eats
entities:
  - name: restaurant
    join_keys: {{restaurant_id: int}}
batch_groups:
  - name: restaurant_stats
    entity: restaurant
    description: daily prep time and order count per restaurant
    max_age: 2d
    source: {{path: {orders}, timestamp_column: ordered_at}}
    transform_sql: >
      SELECT restaurant_id, date_trunc('day', ordered_at) + INTERVAL 1 DAY AS event_time,
             avg(prep_time) AS avg_prep_min, count(*) AS n_orders
      FROM source GROUP BY ALL
    features:
      - {{name: avg_prep_min, dtype: float}}
      - {{name: n_orders, dtype: int}}
"""


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def bottega(*args: str) -> str:
    done = subprocess.run([str(BIN / "bottega"), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bottega {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def generate(folder: Path, today: datetime) -> tuple[Path, Path]:
    """Orders of the last DAYS days, and past deliveries labelled late (1) or on time (0)."""
    rng = np.random.default_rng(7)
    slowness = rng.uniform(8, 30, RESTAURANTS)  # each restaurant's typical prep time (minutes)
    start = today - timedelta(days=DAYS)
    n = 60 * RESTAURANTS * DAYS // 4
    restaurant = rng.integers(1, RESTAURANTS + 1, n)
    offset_s = rng.uniform(0, DAYS * 86400, n)
    ordered_at = [start + timedelta(seconds=float(s)) for s in offset_s]
    prep = slowness[restaurant - 1] + rng.normal(0, 4, n)
    orders = folder / "orders.parquet"
    pq.write_table(
        pa.table(
            {
                "ordered_at": pa.array(ordered_at, pa.timestamp("us", tz="UTC")),
                "restaurant_id": restaurant,
                "prep_time": prep,
            }
        ),
        orders,
    )
    m = 8000
    who = rng.integers(1, RESTAURANTS + 1, m)
    when = [start + timedelta(days=2, seconds=float(s)) for s in rng.uniform(0, (DAYS - 3) * 86400, m)]
    distance = rng.uniform(0.3, 8.0, m)
    hour = np.array([w.hour for w in when])
    risk = 0.12 * slowness[who - 1] + 0.45 * distance + 1.2 * ((hour >= 18) & (hour <= 21)) - 5.0
    late = (rng.uniform(0, 1, m) < 1 / (1 + np.exp(-risk))).astype(np.int64)
    labels = folder / "deliveries.parquet"
    pq.write_table(
        pa.table(
            {
                "restaurant_id": who,
                "timestamp": pa.array(when, pa.timestamp("us", tz="UTC")),
                "distance_km": distance,
                "hour": hour.astype(np.int64),
                "late": late,
            }
        ),
        labels,
    )
    return orders, labels


def spec(labels: Path) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "model_name": MODEL,
        "seed": 7,
        "dataset": {
            "labels": str(labels),
            "entity_keys": ["restaurant_id"],
            "timestamp_column": "timestamp",
            "label_column": "late",
            "features": [f"{PROJECT}:{GROUP}:avg_prep_min", f"{PROJECT}:{GROUP}:n_orders"],
            "request_features": ["distance_km", "hour"],
        },
        "split": {"kind": "random", "eval_fraction": 0.2, "seed": 11},
        "model": {"type": "xgboost", "task": "binary", "params": {"max_depth": 4, "eta": 0.2}, "num_boost_round": 120},
        "evaluation": {"permutation_repeats": 1},
        "gates": ["auc >= 0.70"],
    }


def wait_served(serve_url: str, timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            ready = httpx.get(f"{serve_url}/readyz", timeout=2).json()
            if any(d.endswith("/" + DEPLOYMENT) for d in ready.get("deployments", [])):
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"the prediction service at {serve_url} did not load {DEPLOYMENT!r} within {timeout_s:.0f} s")


def main() -> None:
    home = Path(os.environ["BOTTEGA_HOME"])
    serve_url = os.environ.get("BOTTEGA_DEMO_SERVE_URL", "http://127.0.0.1:8701")
    api_url = os.environ["BOTTEGA_URL"]
    data = home / "demo-data"
    data.mkdir(parents=True, exist_ok=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    client = Client()

    step("generating restaurants, orders and past deliveries")
    orders, labels = generate(data, today)
    print(f"    {pq.read_metadata(orders).num_rows} orders, {pq.read_metadata(labels).num_rows} labelled deliveries")

    step(f"project {PROJECT!r} and the batch feature group {GROUP!r}")
    bottega("projects", "create", PROJECT, "--description", "restaurant models (demo)")
    (data / "features.yaml").write_text(DEFINITIONS.format(orders=orders))
    print(bottega("features", "apply", str(data / "features.yaml")).rstrip())

    step("running its pipeline: offline store (Parquet) + online store (SQLite)")
    ran = json.loads(
        bottega("--json", "features", "run", PROJECT, GROUP, "--start",
                (today - timedelta(days=DAYS + 1)).isoformat(), "--end", (today + timedelta(days=1)).isoformat())
    )  # fmt: skip
    print(f"    {ran['rows_offline']} offline rows, {ran['rows_online']} restaurants materialized online")

    step("a point-in-time training set and an XGBoost model")
    result = client.train(spec(labels))
    metrics = ", ".join(f"{k}={result.metrics[k]:.3f}" for k in ("auc", "log_loss", "accuracy") if k in result.metrics)
    print(f"    run {result.run_id}: {MODEL} v{result.version} ({result.flavor}); {metrics}")
    print(f"    gates {'passed: alias candidate' if result.candidate else 'failed'}")

    step(f"deploying {MODEL} v{result.version} as {DEPLOYMENT!r}")
    deployed_at = time.monotonic()
    client.deployments.create(
        PROJECT, DEPLOYMENT, {"targets": [{"model": MODEL, "version": result.version, "weight": 100}]},
        reason="make demo",
    )  # fmt: skip
    waited = wait_served(serve_url)
    print(f"    served {waited:.2f} s after the deploy call")

    step("predictions (store features joined from the online store)")
    instances = [
        {"restaurant_id": 3, "distance_km": 1.2, "hour": 12},
        {"restaurant_id": 17, "distance_km": 6.5, "hour": 19},
        {"restaurant_id": 999, "distance_km": 2.0, "hour": 20},  # an unknown restaurant: MISSING features
    ]
    response = httpx.post(f"{serve_url}/v1/models/{DEPLOYMENT}:predict", json={"instances": instances}, timeout=10)
    response.raise_for_status()
    body = response.json()
    print(f"    served by {body['model']} v{body['version']} (request {body['request_id']}), "
          f"{(time.monotonic() - deployed_at):.1f} s after deploying")  # fmt: skip
    for row, p, status in zip(instances, body["predictions"], body["feature_status"], strict=True):
        flags = ", ".join(f"{k.split(':')[-1]}={v}" for k, v in status.items())
        print(f"    restaurant {row['restaurant_id']:>3}  {row['distance_km']:>4} km  {row['hour']:>2}h  "
              f"P(late)={p:.3f}  [{flags}]")  # fmt: skip

    step("try it yourself")
    print(f"    API docs:            {api_url}/api/v1/docs")
    print(f"    prediction service:  {serve_url}/v1/models/{DEPLOYMENT}:predict")
    print(
        f"    curl -s -X POST {serve_url}/v1/models/{DEPLOYMENT}:predict -H 'content-type: application/json' \\\n"
        '         -d \'{"instances": [{"restaurant_id": 5, "distance_km": 3.1, "hour": 19}]}\''
    )
    print(f"    export BOTTEGA_URL={api_url} BOTTEGA_TOKEN=$(cat {home}/bootstrap-token)")
    print("    .venv/bin/bottega models list eats    # stop everything: make demo-stop")
    client.close()


if __name__ == "__main__":
    main()
