"""Background work of the API process: the scheduler and the embedded worker (placeholder: filled by the jobs domain).

`start(app, settings)` is called once the app has started; it returns a function that stops what it started.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from bottega.api.settings import ApiSettings


def start(app: FastAPI, settings: ApiSettings) -> Callable[[], None]:
    def stop() -> None:
        return None

    return stop
