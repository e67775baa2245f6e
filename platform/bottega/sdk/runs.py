"""SDK methods for runs (placeholder: filled by its domain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bottega.sdk.client import Transport


class RunsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api
