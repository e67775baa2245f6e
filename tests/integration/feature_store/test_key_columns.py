"""Users keep their own key column names: data whose key is `userId` goes through every step with one
`key_columns: {user_id: userId}` mapping where it enters (a batch group's transform result, a label table, a
training spec, and from the version's signature a prediction request and a batch-scoring input), against an
in-process API on SQLite, the DuckDB offline store and the SQLite online store."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_harness import harness, migrated_sqlite

from bottega.core.errors import InvalidInput
from bottega.feature_store.batch.duckdb_pipeline import run_batch
from bottega.feature_store.catalog import batch_group
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.sqlite import SqliteOnlineStore
from bottega.sdk import Client
from bottega.serving.batch.local import score_local
from bottega.serving.batch.plan import BatchInputError, ScoreRequest
from bottega.serving.features.decode import decode_request
from bottega.serving.features.join import FeatureJoiner
from bottega.serving.features.plan import FeaturePlan
from bottega.serving.runtimes.loader import ArtifactCache
from bottega.training.runner import train

USERS = 30
REF = "media:user_history:last_rating"
NOW = datetime.now(UTC)
T0 = NOW.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=21)  # online reads judge age by the clock


@dataclass
class World:
    sdk: Client
    root: Path
    offline: OfflineStore
    online: SqliteOnlineStore
    ratings: pa.Table


def _ratings() -> pa.Table:
    """One rating per user per day for 20 days, keyed `userId` as the user's data has it."""
    rng = random.Random(5)
    rows = [(u, T0 + timedelta(days=d, hours=u % 5), float(rng.randint(1, 5))) for u in range(USERS) for d in range(20)]
    return pa.table(
        {
            "userId": pa.array([r[0] for r in rows], pa.int64()),
            "ratedAt": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "rating": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def _group(root: Path, key_columns: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "user_history",
        "entity": "user",
        "max_age": "3d",
        "features": [{"name": "last_rating", "dtype": "float"}],
        "source": {"path": str(root / "ratings.parquet"), "timestamp_column": "ratedAt"},
        "transform_sql": "SELECT userId, ratedAt AS event_time, rating AS last_rating FROM source",
        "key_columns": key_columns,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("keys")
    ratings = _ratings()
    pq.write_table(ratings, root / "ratings.parquet")
    with harness(migrated_sqlite(root), root / "home") as api:
        sdk = api.sdk(api.project("media"))
        sdk.features.put_entity("media", "user", {"user_id": "int"})
        sdk.features.register_group("media", _group(root, {"user_id": "userId"}))
        definition, schema = batch_group(sdk, "media", "user_history")
        offline, online = OfflineStore(root / "offline"), SqliteOnlineStore(root / "online.db")
        run_batch(definition, schema, offline, online, T0, T0 + timedelta(days=30))
        yield World(sdk, root, offline, online, ratings)
        online.close()


def _latest(ratings: pa.Table, user: int, at: datetime) -> float | None:
    seen = [r for r in ratings.to_pylist() if r["userId"] == user and r["ratedAt"] <= at]
    newest = max(seen, key=lambda r: r["ratedAt"], default=None)
    return None if newest is None or at - newest["ratedAt"] > timedelta(days=3) else newest["rating"]


def test_the_batch_group_stores_the_join_key_and_the_server_checks_the_mapping(world: World) -> None:
    stored = world.offline.read(batch_group(world.sdk, "media", "user_history")[1])
    assert "user_id" in stored.column_names
    assert "userId" not in stored.column_names
    assert stored.num_rows == world.ratings.num_rows
    with pytest.raises(InvalidInput, match="'member_id' is not a join key"):
        world.sdk.features.register_group("media", _group(world.root, {"member_id": "userId"}))


def test_a_training_set_reads_and_keeps_the_label_tables_names(world: World) -> None:
    rng = random.Random(2)
    at = [T0 + timedelta(days=rng.uniform(0, 24)) for _ in range(200)]
    labels = pa.table(
        {"userId": [rng.randrange(USERS) for _ in at], "timestamp": pa.array(at, pa.timestamp("us", tz="UTC"))}
    )
    with pytest.raises(ValueError, match=r"lacks entity keys \['user_id'\]"):
        world.sdk.get_training_set(labels, [REF], offline_root=str(world.offline.root))
    joined = world.sdk.get_training_set(
        labels, [REF], offline_root=str(world.offline.root), key_columns={"user_id": "userId"}
    )
    assert joined.column_names == ["userId", "timestamp", "user_history__last_rating"]
    expected = [_latest(world.ratings, r["userId"], r["timestamp"]) for r in labels.to_pylist()]
    assert joined.column("user_history__last_rating").to_pylist() == expected
    with pytest.raises(ValueError, match="'userid' is not a join key"):
        world.sdk.get_training_set(labels, [REF], offline_root=str(world.offline.root), key_columns={"userid": "x"})


def _train(world: World) -> int:
    rng = random.Random(4)
    rows = []
    for _ in range(400):
        user, at = rng.randrange(USERS), T0 + timedelta(days=rng.uniform(1, 19))
        rows.append((user, at, rng.uniform(0, 1), (_latest(world.ratings, user, at) or 3.0) > 3.0))
    labels = pa.table(
        {
            "userId": pa.array([r[0] for r in rows], pa.int64()),
            "timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "noise": [r[2] for r in rows],
            "liked": pa.array([int(r[3]) for r in rows], pa.int64()),
        }
    )
    pq.write_table(labels, world.root / "labels.parquet")
    spec = {
        "project": "media",
        "model_name": "likes",
        "dataset": {
            "labels": str(world.root / "labels.parquet"),
            "entity_keys": ["userId"],
            "key_columns": {"user_id": "userId"},
            "label_column": "liked",
            "features": [REF],
            "request_features": ["noise"],
            "offline_root": str(world.offline.root),
        },
        "split": {"kind": "random", "eval_fraction": 0.25, "seed": 1},
        "model": {"type": "xgboost", "task": "binary", "params": {"max_depth": 2, "nthread": 1}, "num_boost_round": 10},
    }
    return train(world.sdk, spec).version


def test_the_version_carries_the_mapping_to_requests_and_batch_inputs(world: World, tmp_path: Path) -> None:
    version = _train(world)
    signature = world.sdk.models.get_version("media", "likes", str(version)).signature.model_dump(mode="json")
    assert signature["key_columns"] == {"user_id": "userId"}

    plan = FeaturePlan.build(signature, world.sdk.features.resolve([REF]), {})
    plan.register(world.online)
    body = orjson.dumps({"instances": [{"userId": u, "noise": 0.5} for u in range(USERS)]})
    rows, _ = decode_request(body, plan, max_rows=100)
    assembled = asyncio.run(FeatureJoiner(world.online, timeout_s=10.0).assemble(plan, rows))
    newest = {u: _latest(world.ratings, u, datetime.now(UTC)) for u in range(USERS)}
    column = plan.input_names.index(REF)
    assert [float(v) for v in assembled.matrix[:, column]] == [newest[u] for u in range(USERS)]
    with pytest.raises(Exception, match=r"instances\[0\]\.userId: missing"):
        decode_request(orjson.dumps({"instances": [{"user_id": 1, "noise": 0.5}]}), plan, max_rows=10)

    at = T0 + timedelta(days=10, hours=12)
    inputs = pa.table(
        {"userId": list(range(USERS)), "timestamp": pa.array([at] * USERS, pa.timestamp("us", tz="UTC"))}
    ).append_column("noise", pa.array([0.5] * USERS))
    pq.write_table(inputs, tmp_path / "input.parquet")
    cache = ArtifactCache(tmp_path / "cache", world.sdk)
    request = ScoreRequest(
        project="media",
        model="likes",
        version=version,
        input=str(tmp_path / "input.parquet"),
        output=str(tmp_path / "out.parquet"),
        offline_root=str(world.offline.root),
    )
    score_local(world.sdk, request, cache)
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.column_names[:2] == ["userId", "timestamp"]  # kept under the input's names
    assert scored.column("features_fresh").to_pylist() == [1] * USERS

    renamed = inputs.rename_columns(["uid", "timestamp", "noise"])
    pq.write_table(renamed, tmp_path / "other.parquet")
    other = {"input": str(tmp_path / "other.parquet"), "output": str(tmp_path / "other_out.parquet")}
    with pytest.raises(BatchInputError, match="lacks column"):
        score_local(world.sdk, ScoreRequest(**{**request.__dict__, **other}), cache)
    score_local(world.sdk, ScoreRequest(**{**request.__dict__, **other, "key_columns": {"user_id": "uid"}}), cache)
    assert pq.read_table(tmp_path / "other_out.parquet").column("probability") == scored.column("probability")
