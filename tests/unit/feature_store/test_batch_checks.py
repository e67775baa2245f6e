"""Apply-time checks of batch groups (a zero-row DuckDB bind of the SQL against the source) and source paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bottega.feature_store.batch.checks import TransformCheckError, check_definitions, check_transform
from bottega.feature_store.definitions import (
    BatchFeatureGroup,
    Definitions,
    Entity,
    Feature,
    Source,
    load_definitions,
    resolve_path,
)
from bottega.feature_store.types import ValueType

RESTAURANT = Entity(name="restaurant", join_keys={"restaurant_id": ValueType.int})


def source(path: Path) -> Path:
    times = pa.array([datetime(2026, 11, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"restaurant_id": [1], "ordered_at": times, "prep": [3.5]}), path)
    return path


def group(path: str, sql: str | None = None, transform: str | None = None) -> BatchFeatureGroup:
    return BatchFeatureGroup(
        name="daily_prep",
        entity="restaurant",
        max_age=timedelta(days=2),
        features=[Feature(name="avg_prep", dtype=ValueType.float)],
        source=Source(path=path),
        transform_sql=None
        if transform
        else sql or "SELECT restaurant_id, ordered_at AS event_time, prep AS avg_prep FROM source",
        transform=transform,
    )


def check(fg: BatchFeatureGroup) -> str | None:
    return check_transform(fg, fg.schema_for("eats", RESTAURANT))


def test_a_column_the_source_lacks_is_named_with_the_columns_it_has(tmp_path: Path) -> None:
    path = str(source(tmp_path / "orders.parquet"))
    assert check(group(path)) is None
    with pytest.raises(TransformCheckError) as refused:
        check(group(path, "SELECT restaurant_id, ordered_at AS event_time, prep_time AS avg_prep FROM source"))
    message = str(refused.value)
    assert "'daily_prep'" in message
    assert "'prep_time'" in message
    assert "restaurant_id, ordered_at, prep" in message


def test_key_columns_name_the_join_keys_in_the_sql_output(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    times = pa.array([datetime(2026, 11, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"restaurantId": [1], "ordered_at": times, "prep": [3.5]}), path)
    sql = "SELECT restaurantId, ordered_at AS event_time, prep AS avg_prep FROM source"
    with pytest.raises(TransformCheckError, match=r"does not return \['restaurant_id'\]"):
        check(group(str(path), sql))
    mapped = group(str(path), sql).model_copy(update={"key_columns": {"restaurant_id": "restaurantId"}})
    assert check(mapped) is None
    wrong = mapped.model_copy(update={"key_columns": {"restaurant_id": "restId"}})
    with pytest.raises(TransformCheckError, match="no column 'restId'"):
        check(wrong)


def test_declared_outputs_must_come_out_of_the_sql(tmp_path: Path) -> None:
    path = str(source(tmp_path / "orders.parquet"))
    with pytest.raises(TransformCheckError, match=r"does not return \['event_time', 'avg_prep'\]"):
        check(group(path, "SELECT restaurant_id, ordered_at, prep FROM source"))


def test_a_missing_source_is_an_error_and_urls_or_python_transforms_are_noted(tmp_path: Path) -> None:
    with pytest.raises(TransformCheckError, match="does not exist"):
        check(group(str(tmp_path / "nowhere.parquet")))
    assert "URL" in (check(group("s3://bucket/orders/*.parquet")) or "")
    path = str(source(tmp_path / "orders.parquet"))
    assert "Python transform" in (check(group(path, transform="pkg.mod:fn")) or "")
    assert "not checked" in (check(group(path, "SELECT * FROM source LATERAL VIEW explode(x) t AS y")) or "")


def test_relative_source_paths_are_read_from_the_definitions_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_path("s3://bucket/x.parquet", tmp_path) == "s3://bucket/x.parquet"
    assert resolve_path("https://host/x.csv", tmp_path) == "https://host/x.csv"
    assert resolve_path("/abs/x.parquet", tmp_path) == "/abs/x.parquet"
    assert resolve_path("../data/*.parquet", tmp_path / "defs") == str(tmp_path / "data" / "*.parquet")
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "data").mkdir()
    source(tmp_path / "defs" / "data" / "orders.parquet")
    (tmp_path / "defs" / "features.yaml").write_text(
        "project: eats\n"
        "entities: [{name: restaurant, join_keys: {restaurant_id: int}}]\n"
        "batch_groups:\n"
        "  - name: daily_prep\n"
        "    entity: restaurant\n"
        "    max_age: 2d\n"
        "    source: {path: data/orders.parquet}\n"
        "    transform_sql: SELECT restaurant_id, ordered_at AS event_time, prep AS avg_prep FROM source\n"
        "    features: [{name: avg_prep, dtype: float}]\n"
    )
    monkeypatch.chdir(tmp_path)
    definitions = load_definitions("defs/features.yaml")
    assert definitions.batch_groups[0].source.path == str(tmp_path / "defs" / "data" / "orders.parquet")
    assert check_definitions(definitions) == []
    assert isinstance(definitions, Definitions)
