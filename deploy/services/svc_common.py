"""Settings and helpers shared by the service scripts (standard library only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOST = "127.0.0.1"
SERVICES = ("postgres", "cassandra", "kafka")
DEFAULT_PORTS = {
    "BOTTEGA_CASSANDRA_PORT": 19042,
    "BOTTEGA_CASSANDRA_STORAGE_PORT": 17000,
    "BOTTEGA_KAFKA_PORT": 19092,
    "BOTTEGA_KAFKA_CONTROLLER_PORT": 19093,
    "BOTTEGA_POSTGRES_PORT": 15432,
}
POSTGRES_DB = "bottega"


class ServiceError(Exception):
    """A service could not be fetched, started or stopped; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    state: Path
    cache: Path
    cassandra_port: int
    cassandra_storage_port: int
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        ports = {}
        for key, default in DEFAULT_PORTS.items():
            raw = env.get(key, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ServiceError(f"{key}={raw!r} is not a TCP port number")
            ports[key] = int(raw)
        home = Path(env.get("HOME", str(Path.home())))
        return cls(
            state=Path(env.get("BOTTEGA_SERVICES_STATE", str(REPO / ".services"))).resolve(),
            cache=Path(env.get("BOTTEGA_SERVERS_CACHE", str(home / ".cache" / "bottega" / "servers"))).resolve(),
            cassandra_port=ports["BOTTEGA_CASSANDRA_PORT"],
            cassandra_storage_port=ports["BOTTEGA_CASSANDRA_STORAGE_PORT"],
            kafka_port=ports["BOTTEGA_KAFKA_PORT"],
            kafka_controller_port=ports["BOTTEGA_KAFKA_CONTROLLER_PORT"],
            postgres_port=ports["BOTTEGA_POSTGRES_PORT"],
        )

    def client_env(self) -> dict[str, str]:
        """What a client (the tests) needs to reach the running services."""
        return {
            "BOTTEGA_TEST_CASSANDRA_HOSTS": f"{HOST}:{self.cassandra_port}",
            "BOTTEGA_TEST_KAFKA_BOOTSTRAP": f"{HOST}:{self.kafka_port}",
            "BOTTEGA_TEST_POSTGRES_URL": f"postgresql+psycopg://postgres@{HOST}:{self.postgres_port}/{POSTGRES_DB}",
        }


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise ServiceError(f"{what} exited while starting. Last lines of {log}:\n{log_tail(log)}")
        time.sleep(0.25)
    raise ServiceError(f"{what} was not ready after {timeout:.0f} s. Last lines of {log}:\n{log_tail(log)}")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH: run `make setup` (it installs the JDK 17, Maven and PostgreSQL)")
    return path
