"""The SDK's HTTP transport: sends requests with the bearer token and turns problem+json answers into the same
domain errors the server raised (`bottega.core.errors`). Every sub-API (models, runs, ...) talks through it."""

from __future__ import annotations

from typing import Any

import httpx

from bottega.core.errors import BottegaError, error_class_for


class Transport:
    """Sends requests with the bearer token and turns problem+json answers into domain errors."""

    def __init__(self, http: httpx.Client, token: str | None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.is_error:
            raise_for_problem(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()


def raise_for_problem(response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    cls = error_class_for(body.get("type"), response.status_code)
    detail = str(body.get("detail") or response.text[:500] or response.reason_phrase)
    extra = {k: v for k, v in body.items() if k not in {"type", "title", "status", "detail"}}
    error: BottegaError = cls(detail, **extra)
    error.http_status = response.status_code
    raise error
