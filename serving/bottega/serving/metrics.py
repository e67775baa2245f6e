"""Prometheus metrics of the prediction service, on a registry of its own (no process-global registry).

With several uvicorn workers `bottega serve` sets `PROMETHEUS_MULTIPROC_DIR`, and `/metrics` then aggregates every
worker's values (prometheus_client's multiprocess mode); with one worker the values live in this registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


@dataclass
class RouteMetrics:
    """The labelled children one (deployment, version) uses on every request, resolved once."""

    ok: Any
    latency: Any
    rows: Any


class ServingMetrics:
    def __init__(self, stats: Callable[[], dict[str, float]] | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "bottega_predict_requests", "Prediction requests answered", ["deployment", "version", "code"], registry=reg
        )
        self.rows = Counter("bottega_predict_rows", "Rows scored", ["deployment", "version"], registry=reg)
        self.latency = Histogram(
            "bottega_predict_latency_seconds",
            "Time from request to response, per deployment and version",
            ["deployment", "version"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.store_latency = Histogram(
            "bottega_store_latency_seconds",
            "Online-store read time per request",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.errors = Counter("bottega_predict_errors", "Failed requests by kind", ["deployment", "kind"], registry=reg)
        self.shadow = Counter(
            "bottega_shadow_predictions", "Rows scored by shadow versions", ["deployment", "version"], registry=reg
        )
        self.load_failures = Counter(
            "bottega_model_load_failures", "Model versions that failed to load", ["model"], registry=reg
        )
        mode: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.loaded = Gauge("bottega_models_loaded", "Model versions loaded", registry=reg, **mode)
        self.queue_depth = Gauge(
            "bottega_prediction_log_queue_depth", "Prediction-log records not yet shipped", registry=reg, **mode
        )
        self.dropped = Gauge(
            "bottega_prediction_log_dropped", "Prediction-log records that could not be spooled", registry=reg, **mode
        )
        self._stats = stats
        self._children: dict[tuple[str, str], RouteMetrics] = {}

    def route(self, deployment: str, version: str) -> RouteMetrics:
        key = (deployment, version)
        found = self._children.get(key)
        if found is None:
            found = RouteMetrics(
                ok=self.requests.labels(deployment, version, "200"),
                latency=self.latency.labels(deployment, version),
                rows=self.rows.labels(deployment, version),
            )
            self._children[key] = found
        return found

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self._stats is not None:
            stats = self._stats()
            self.queue_depth.set(stats.get("queue_depth", 0))
            self.dropped.set(stats.get("dropped", 0))
        if self.multiprocess:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
