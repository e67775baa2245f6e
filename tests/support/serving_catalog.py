"""The catalog world the serving feature-plan tests share: two stored groups (restaurant and user entities) and an
on-demand group whose function is written to a temporary module, registered in an embedded API on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from api_harness import harness, migrated_sqlite

TRANSFORM = """
def ratio(row):
    prep = row["prep"]
    return {"ratio": None if prep is None else prep / (1.0 + row["distance_km"]), "far": row["distance_km"] > 5.0}


def trip(row):
    return {"far": row["distance_km"] > 5.0}
"""
REFS = [
    "eats:daily_prep:avg_prep",
    "eats:daily_prep:n_orders",
    "eats:user_stats:visits",
    "eats:prep_ratio:ratio",
    "eats:prep_ratio:far",
]
SIGNATURE = {
    "inputs": [{"name": "distance_km", "type": "float64"}, {"name": "hour", "type": "int64"}],
    "store_features": REFS,
    "outputs": [{"name": "probability", "type": "float64"}],
}


@contextmanager
def catalog_resolution(folder: Path) -> Iterator[Any]:
    """The Resolution of REFS (plus a string feature and `eats:trip:far`, computed from a request field only) from a
    freshly registered catalog under `folder`."""
    module = f"serving_odt_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(TRANSFORM)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        with harness(migrated_sqlite(folder), folder / "home") as api:
            sdk = api.sdk(api.project("eats"))
            sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
            sdk.features.put_entity("eats", "user", {"user_id": "string"})
            source = {"source": {"path": "/unused.parquet"}, "transform_sql": "SELECT * FROM source"}
            sdk.features.register_group(
                "eats",
                {
                    "name": "daily_prep",
                    "entity": "restaurant",
                    "max_age": "1h",
                    "features": [{"name": "avg_prep", "dtype": "float"}, {"name": "n_orders", "dtype": "int"}],
                    **source,
                },
            )
            sdk.features.register_group(
                "eats",
                {
                    "name": "user_stats",
                    "entity": "user",
                    "max_age": "1d",
                    "features": [{"name": "visits", "dtype": "int"}, {"name": "nick", "dtype": "string"}],
                    **source,
                },
            )
            sdk.features.register_group(
                "eats",
                {
                    "name": "prep_ratio",
                    "entity": "restaurant",
                    "function": f"{module}:ratio",
                    "inputs": {"prep": "eats:daily_prep:avg_prep"},
                    "request_features": [{"name": "distance_km", "dtype": "float"}],
                    "features": [{"name": "ratio", "dtype": "float"}, {"name": "far", "dtype": "bool"}],
                },
            )
            sdk.features.register_group(
                "eats",
                {
                    "name": "trip",
                    "entity": "restaurant",
                    "function": f"{module}:trip",
                    "request_features": [{"name": "distance_km", "dtype": "float"}],
                    "features": [{"name": "far", "dtype": "bool"}],
                },
            )
            yield sdk.features.resolve([*REFS, "eats:user_stats:nick", "eats:trip:far"])
