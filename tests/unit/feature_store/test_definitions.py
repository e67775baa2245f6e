"""Feature definitions in Python and YAML, and the errors that name what to fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bottega.feature_store.definitions import Definitions, load_definitions, parse_duration
from bottega.feature_store.types import FeatureRef, ValueType

YAML = """
project: eats
entities:
  - name: restaurant
    join_keys: {restaurant_id: int}
batch_groups:
  - name: restaurant_stats
    entity: restaurant
    max_age: 2d
    source: {path: /data/orders.parquet, timestamp_column: ordered_at}
    transform_sql: SELECT restaurant_id, ordered_at AS event_time, prep_time FROM source
    schedule: "0 * * * *"
    features:
      - {name: prep_time, dtype: float}
stream_groups:
  - name: restaurant_live
    entity: restaurant
    max_age: 1h
    topic: orders
    event_schema: {restaurant_id: int, amount: float}
    aggregations:
      - {name: orders_1h, function: count, window: 1h}
      - {name: amount_14d, function: sum, field: amount, window: 14d}
    features:
      - {name: orders_1h, dtype: int}
      - {name: amount_14d, dtype: float}
"""


def test_yaml_definitions_give_store_schemas(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(YAML)
    defs = load_definitions(path)
    schemas = defs.schemas()
    stats = schemas[("eats", "restaurant_stats")]
    assert stats.entity_keys == (("restaurant_id", ValueType.int),)
    assert stats.max_age == timedelta(days=2)
    assert stats.ref("prep_time") == FeatureRef.parse("eats:restaurant_stats:prep_time")
    live = defs.stream_groups[0]
    assert live.aggregations[1].window == timedelta(days=14)
    assert schemas[("eats", "restaurant_live")].feature_types == {"orders_1h": "int", "amount_14d": "float"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["batch_groups"][0].update(entity="user"), "unknown entity 'user'"),
        (lambda d: d["batch_groups"][0].update(max_age="2 days"), "must look like 90s"),
        (lambda d: d["stream_groups"][0]["aggregations"][1].pop("field"), "sum needs a field"),
        (lambda d: d["stream_groups"][0]["features"].pop(), "must be exactly the aggregations"),
        (lambda d: d["batch_groups"][0]["features"].append({"name": "prep_time", "dtype": "float"}), "twice"),
        (lambda d: d["batch_groups"][0].update(colour="red"), "colour"),
        (lambda d: d["entities"][0]["join_keys"].update(id="uuid"), "join_keys.id"),
        (lambda d: d["batch_groups"][0].update(key_columns={"rest_id": "restId"}), "'rest_id' is not a join key"),
        (
            lambda d: d["stream_groups"][0].update(key_columns={"user_id": "u"}),
            "'restaurant_live': key_columns: 'user_id' is not a join key",
        ),
    ],
)
def test_invalid_definitions_name_the_problem(mutate: object, message: str) -> None:
    import yaml

    data = yaml.safe_load(YAML)
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ValidationError, match=message):
        Definitions.model_validate(data)


def test_durations_and_refs() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError, match="project:group:feature"):
        FeatureRef.parse("eats:stats")
    with pytest.raises(ValueError, match="feature name"):
        FeatureRef.parse("eats:stats:Bad-Name")
    with pytest.raises(ValueError, match=r"the project must be lowercase letters, digits and _ \. -"):
        FeatureRef.parse("Eats Team:stats:avg")  # the catalog's project rule, as everywhere else
