"""Monitoring: prediction logs joined to outcomes, accuracy over time, feature and prediction drift."""
