"""The feature group the training and batch-scoring tests share: `shop:customer_stats:f0..fN` keyed by the
`customer` entity (`customer_id`), registered in the catalog as a batch group whose offline rows the tests write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bottega.feature_store.types import GroupSchema, ValueType


def customer_stats_schema(features: int = 4, max_age: timedelta = timedelta(days=2)) -> GroupSchema:
    return GroupSchema(
        "shop",
        "customer_stats",
        (("customer_id", ValueType.int),),
        tuple((f"f{i}", ValueType.float) for i in range(features)),
        max_age,
    )


def register_customer_stats(sdk: Any, features: int = 4, max_age: str = "2d") -> None:
    """The `customer` entity and the `customer_stats` group (float features f0..f<features-1>) in project `shop`."""
    sdk.features.put_entity("shop", "customer", {"customer_id": "int"})
    sdk.features.register_group(
        "shop",
        {
            "name": "customer_stats",
            "entity": "customer",
            "max_age": max_age,
            "features": [{"name": f"f{i}", "dtype": "float"} for i in range(features)],
            "source": {"path": "/unused.parquet"},
            "transform_sql": "SELECT * FROM source",
        },
    )
