"""A real `bottega serve` process following a live API server (tests/support/live_server.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from live_server import BIN, LiveServer, free_port


@dataclass
class LiveServing:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def predict(self, deployment: str, instances: list[dict[str, Any]], **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/models/{deployment}:predict",
            json={"instances": instances},
            headers={k.replace("_", "-"): v for k, v in headers.items()},
            timeout=10,
        )

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=5).json()
        return body

    def wait_for(self, check: Callable[[LiveServing], bool], timeout: float = 20.0, what: str = "a condition") -> float:
        """Poll `check` until it holds; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"bottega serve exited: {self.log.read_text()[-3000:]}")
            try:
                if check(self):
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{what} did not happen within {timeout} s; log: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def serving_env(api: LiveServer, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**api.env(), **(extra or {})}


@contextmanager
def live_serving(
    api: LiveServer,
    workdir: Path,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    timeout: float = 60,
) -> Iterator[LiveServing]:
    """Start `bottega serve` (its own process group, so kill -9 takes its workers too); wait for /healthz."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"serve-{port}.log"
    env = serving_env(api, extra_env)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "bottega"), "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    serving = LiveServing(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        serving.wait_for(lambda s: httpx.get(f"{s.url}/healthz", timeout=2).status_code == 200, timeout, "startup")
        yield serving
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
