"""A real `bottega server` process on a free port, on embedded defaults under a temporary BOTTEGA_HOME."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def token(self) -> str:
        return (self.home / "bootstrap-token").read_text().strip()

    def env(self, token: str | None = None) -> dict[str, str]:
        """The environment of a client on the same machine: the API's URL, a token, the same stores."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")}
        return {**base, "BOTTEGA_URL": self.url, "BOTTEGA_TOKEN": token or self.token, "BOTTEGA_HOME": str(self.home)}


@contextmanager
def live_server(home: Path, extra_env: dict[str, str] | None = None, timeout: float = 60) -> Iterator[LiveServer]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")}
    # BOTTEGA_URL lets jobs run by the embedded worker call this very server back.
    env.update({"BOTTEGA_HOME": str(home), "BOTTEGA_URL": f"http://127.0.0.1:{port}", **(extra_env or {})})
    log = home.parent / f"server-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "bottega"), "server", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bottega server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bottega server not ready after {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield LiveServer(url=url, home=home, process=process, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
