"""Batch scoring: a model version scores an input table with the runtimes of online serving, its store features
joined point in time from the offline store, on a local engine (DuckDB and pyarrow) or on Spark, as the job type
`serving.batch_score` that batch deployments fire on their cron."""
