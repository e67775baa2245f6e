"""The Bottega Python SDK: `from bottega.sdk import Client`.

This package is part of the light base install; it must never import the server, Spark, torch, XGBoost or the
store drivers (a test guards this).
"""

from bottega.sdk.client import Client

__all__ = ["Client"]
