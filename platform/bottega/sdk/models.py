"""SDK methods for models (placeholder: filled by its domain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bottega.sdk.client import Transport


class ModelsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api
