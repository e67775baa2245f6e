"""The feature store: definitions, offline store with point-in-time joins, pipelines and online stores."""
