"""An httpx client for the Bottega API."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8700"


class Client:
    """Talks to a Bottega API server.

    `url` and `token` default to the environment variables `BOTTEGA_URL` and `BOTTEGA_TOKEN`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("BOTTEGA_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("BOTTEGA_TOKEN")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def health(self) -> dict[str, Any]:
        """The server's liveness document (`GET /healthz`); raises httpx errors when it cannot be reached."""
        response = self._http.get("/healthz")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
