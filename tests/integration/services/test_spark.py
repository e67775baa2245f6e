"""A local[2] Spark job writing and reading Parquet, with the venv's interpreter for the Python workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F


@pytest.mark.spark
def test_parquet_round_trip_with_a_python_udf(spark: SparkSession, tmp_path: Path) -> None:
    df = spark.range(0, 1000).withColumn("group", F.col("id") % 7)
    squared = F.udf(lambda x: x * x, "long")  # runs in Python workers: proves PYSPARK_PYTHON is right
    df = df.withColumn("sq", squared(F.col("id")))
    target = str(tmp_path / "table")
    df.write.partitionBy("group").parquet(target)

    back = spark.read.parquet(target)
    assert back.count() == 1000
    totals = {row["group"]: row["n"] for row in back.groupBy("group").agg(F.count("*").alias("n")).collect()}
    assert sum(totals.values()) == 1000
    assert len(totals) == 7
    row = back.where("id = 31").select("sq").first()
    assert row is not None
    assert row["sq"] == 961
    assert (tmp_path / "table" / "group=3").is_dir()
