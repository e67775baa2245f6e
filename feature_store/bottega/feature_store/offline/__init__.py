"""The offline store (Parquet per feature group, partitioned by event date) and point-in-time joins."""
