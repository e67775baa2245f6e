"""Point-in-time correct training sets on Spark (the scale-out engine), with the same semantics as DuckDB's.

Spark has no ASOF join, so each feature group is joined with a window: label rows and feature rows of the same
entity are put in one partition ordered by time (feature rows before label rows at the same instant, so a value
whose event_time equals the label time is known), and each label row takes the last feature row before it. The
value is kept when it is not older than the group's max age. Duplicate (entity keys, event_time) rows resolve to the
latest-written file, as in the DuckDB engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bottega.feature_store.offline.pit_duckdb import ROW, check_labels, column_name, plan_groups, status_column
from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.types import TTL_MULTIPLIER, FeatureRef, GroupSchema

SPARK_TYPES = {"int": "bigint", "float": "double", "string": "string", "bool": "boolean"}


def point_in_time_join_spark(
    spark: Any,
    store: OfflineStore,
    labels: Any,
    features: Sequence[FeatureRef],
    schemas: Mapping[tuple[str, str], GroupSchema],
    *,
    timestamp_column: str = "timestamp",
    with_status: bool = False,
) -> Any:
    """The label table with one column per feature, rows in label order, as a pyarrow Table (`with_status`: and a
    FRESH / STALE / MISSING `status_column` per group, as the DuckDB engine).

    `labels` is a pyarrow Table or pandas DataFrame (collected through Arrow) or a Spark DataFrame that already
    has an int64 `__bottega_row` ordering column.
    """
    import pyarrow as pa
    from pyspark.sql import DataFrame

    groups = plan_groups(features, schemas)
    if isinstance(labels, DataFrame):
        label_df = labels
    else:
        table = labels if isinstance(labels, pa.Table) else pa.Table.from_pandas(labels, preserve_index=False)
        check_labels(table, timestamp_column, groups)
        table = table.append_column(ROW, pa.array(range(table.num_rows), type=pa.int64()))
        label_df = spark.createDataFrame(table.to_pandas())
    result = label_df
    for schema, refs in groups:
        joined = _asof(spark, store, label_df, schema, refs, timestamp_column, with_status)
        result = result.join(joined, on=ROW, how="left")
    return result.orderBy(ROW).drop(ROW).toArrow()


def _feature_rows(spark: Any, store: OfflineStore, schema: GroupSchema) -> Any:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not store.has_data(schema):
        return spark.createDataFrame(store.read(schema).to_pandas(), schema=_ddl(schema))
    raw = spark.read.parquet(*(str(f) for f in store.files(schema)))  # day and month buckets: no partition columns
    keys = [*schema.key_names, "event_time"]
    latest_file = Window.partitionBy(*keys).orderBy(F.col("__file").desc())
    rows = raw.withColumn("__file", F.input_file_name()).withColumn("__n", F.row_number().over(latest_file))
    columns = [*schema.key_names, *(n for n, _ in schema.features), "event_time"]
    return rows.where(F.col("__n") == 1).select(*columns).dropna(subset=schema.key_names)


def _ddl(schema: GroupSchema) -> str:
    fields = [f"`{n}` {SPARK_TYPES[t.value]}" for n, t in (*schema.entity_keys, *schema.features)]
    return ", ".join([*fields, "`event_time` timestamp"])


def _asof(
    spark: Any,
    store: OfflineStore,
    labels: Any,
    schema: GroupSchema,
    refs: list[FeatureRef],
    timestamp_column: str,
    with_status: bool = False,
) -> Any:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    feats = _feature_rows(spark, store, schema)
    values = [ref.feature for ref in refs]
    left = labels.select(
        *[F.col(k).cast(SPARK_TYPES[t.value]).alias(k) for k, t in schema.entity_keys],
        F.col(timestamp_column).alias("__t"),
        F.col(ROW),
        F.lit(1).alias("__is_label"),
        F.lit(None)
        .cast(
            "struct<event_time:timestamp,"
            + ",".join(f"`{v}`:{SPARK_TYPES[schema.feature_types[v].value]}" for v in values)
            + ">"
        )
        .alias("__value"),
    )
    right = feats.select(
        *schema.key_names,
        F.col("event_time").alias("__t"),
        F.lit(None).cast("bigint").alias(ROW),
        F.lit(0).alias("__is_label"),
        F.struct(F.col("event_time"), *[F.col(v) for v in values]).alias("__value"),
    )
    window = (
        Window.partitionBy(*schema.key_names)
        .orderBy("__t", "__is_label")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    merged = left.unionByName(right).withColumn("__last", F.last("__value", ignorenulls=True).over(window))
    max_us = int(schema.max_age.total_seconds() * 1_000_000)
    age_us = F.unix_micros(F.col("__t")) - F.unix_micros(F.col("__last.event_time"))
    fresh = F.col("__last").isNotNull() & (age_us <= F.lit(max_us))
    picked = [F.when(fresh, F.col(f"__last.{ref.feature}")).alias(column_name(ref)) for ref in refs]
    if with_status:
        ttl_us = int(max_us * TTL_MULTIPLIER)
        status = (
            F.when(F.col("__last").isNull(), F.lit("MISSING"))
            .when(age_us <= F.lit(max_us), F.lit("FRESH"))
            .when(age_us <= F.lit(ttl_us), F.lit("STALE"))
            .otherwise(F.lit("MISSING"))
        )
        picked.append(status.alias(status_column(schema.name)))
    return merged.where(F.col("__is_label") == 1).select(F.col(ROW), *picked)
