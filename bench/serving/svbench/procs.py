"""Child processes of a benchmark run: started in their own process group (optionally pinned to CPUs with
`taskset`), waited for over HTTP, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None


def start(
    name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None, cpus: str | None = None
) -> Child:
    """Start `argv` with stdout and stderr to `log`; `cpus` pins it (and its threads and children) with taskset."""
    if cpus is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", cpus, *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return Child(name, process, log)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_http(child: Child, url: str, *, timeout: float = 120.0, ok: tuple[int, ...] = (200,)) -> None:
    """Wait until `url` answers one of `ok`; raise with the child's log when it exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}): {child.tail()}")
        if http_status(url) in ok:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{child.name}: {url} not ready within {timeout:.0f} s: {child.tail()}")


def stop(child: Child, timeout: float = 15.0) -> None:
    if not child.alive():
        return
    try:
        os.killpg(child.process.pid, signal.SIGTERM)
        child.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid` (all their threads), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state ppid pgrp session ... utime (12th) stime (13th)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks
