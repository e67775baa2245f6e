"""Calling the prediction service (`bottega serve`) from Python.

    from bottega.sdk.predict import PredictionClient

    with PredictionClient("http://127.0.0.1:8701") as service:
        result = service.predict("late-delivery", [{"restaurant_id": 5, "distance_km": 3.1, "hour": 19}])
        result.predictions, result.version, result.feature_status

Errors come back as the same `bottega.core.errors` classes as the API's (NotFound for an unknown deployment,
InvalidInput naming the field, Unavailable when the model cannot answer now, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

DEFAULT_SERVE_URL = "http://127.0.0.1:8701"


@dataclass(frozen=True)
class Prediction:
    deployment: str
    model: str
    version: int
    request_id: str
    predictions: list[Any]
    """per row: P(positive class) (binary), class probabilities (multiclass) or the value (regression)."""
    feature_status: list[dict[str, str]]
    """per row: store feature -> FRESH / STALE / MISSING / DEFAULT."""
    as_of: str | None = None
    """set on a replay: the store features were joined from the offline store at this time (ISO-8601)."""
    classes: list[Any] | None = None
    """multiclass models that name their classes: the class labels, in the order of each row's probabilities."""
    predicted_classes: list[Any] | None = None
    """multiclass models that name their classes: per row, the label of the most probable class."""


class PredictionClient:
    """`url` defaults to `BOTTEGA_SERVE_URL`, else the local default port."""

    def __init__(self, url: str | None = None, *, timeout: float = 10.0, http: httpx.Client | None = None) -> None:
        self.url = (url or os.environ.get("BOTTEGA_SERVE_URL") or DEFAULT_SERVE_URL).rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout)

    def predict(
        self,
        deployment: str,
        instances: list[dict[str, Any]],
        *,
        project: str | None = None,
        version: int | str | None = None,
        routing_key: str | None = None,
        request_id: str | None = None,
        as_of: datetime | str | None = None,
    ) -> Prediction:
        """Score `instances` (request features and entity keys by name) with `deployment`.

        `version` pins a version the deployment serves (`3` or `model:3`); `routing_key` makes routing sticky;
        `project` is needed only when the replica serves the name in several projects. `as_of` (a tz-aware
        datetime or ISO-8601 text) replays history: the store features are joined point in time from the offline
        store at that time instead of read from the online store (at most `BOTTEGA_SERVE_AS_OF_MAX_ROWS` rows,
        default 100), and the answer and the prediction log say so."""
        from bottega.sdk.transport import raise_for_problem

        headers: dict[str, str] = {}
        if version is not None:
            headers["X-Bottega-Version"] = str(version)
        if routing_key is not None:
            headers["X-Bottega-Routing-Key"] = routing_key
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        path = f"/v1/projects/{project}/models/{deployment}:predict" if project else f"/v1/models/{deployment}:predict"
        body: dict[str, Any] = {"instances": instances}
        if as_of is not None:
            body["as_of"] = as_of.isoformat() if isinstance(as_of, datetime) else as_of
        response = self._http.post(path, json=body, headers=headers)
        if response.is_error:
            raise_for_problem(response)
        body = response.json()
        return Prediction(
            deployment=body["deployment"],
            model=body["model"],
            version=int(body["version"]),
            request_id=body["request_id"],
            predictions=list(body["predictions"]),
            feature_status=list(body["feature_status"]),
            as_of=body.get("as_of"),
            classes=body.get("classes"),
            predicted_classes=body.get("predicted_classes"),
        )

    def ready(self) -> dict[str, Any]:
        """The service's `/readyz` document (deployments served, load errors), whatever its status code."""
        body: dict[str, Any] = self._http.get("/readyz").json()
        return body

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
