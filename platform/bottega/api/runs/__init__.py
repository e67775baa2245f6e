"""Experiment tracking: runs, params, step-series metrics, tags, artifacts."""
