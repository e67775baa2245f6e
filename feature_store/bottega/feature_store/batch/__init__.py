"""Batch feature pipelines: compute a group from its source for a time range, write offline, materialize online."""
