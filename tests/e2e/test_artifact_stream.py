"""A 300 MB artifact through a real server process: streamed both ways, verified, in bounded server memory.

The server is `uvicorn bottega.api.app:create_app --factory` on a free port with SQLite under a temporary home. The
test samples the server's resident memory (RSS) while the SDK uploads and downloads the file: the peak growth over
the idle baseline must stay far below the file size, which proves neither side of the server buffers the body. The
file is also far over `max_json_bytes`, so JSON body limits do not apply to streamed uploads. Then a same-size
corruption of a stored blob is caught on download (the SDK raises IntegrityFailure and leaves no file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from live_server import LiveServer, live_server

from bottega.core.errors import IntegrityFailure
from bottega.sdk import Client

pytestmark = pytest.mark.slow

TOKEN = "btg_e2eartifact1_" + "s" * 43
MIB = 1024 * 1024
FILE_MIB = 300
MAX_JSON_BYTES = 2 * MIB
RSS_GROWTH_LIMIT = 100 * MIB
PROJECT = "streams"


@contextmanager
def uvicorn_server(root: Path) -> Iterator[LiveServer]:
    """A real `bottega server` on SQLite with a small JSON limit (far below the streamed file)."""
    env = {
        "BOTTEGA_DATABASE_URL": f"sqlite:///{root / 'home' / 'bottega.db'}",
        "BOTTEGA_BOOTSTRAP_TOKEN": TOKEN,
        "BOTTEGA_MAX_JSON_BYTES": str(MAX_JSON_BYTES),
        "BOTTEGA_EMBEDDED_WORKER": "false",
    }
    with live_server(root / "home", extra_env=env) as server:
        yield server


@dataclass
class RssSampler:
    """Samples a process's RSS every few milliseconds in a background thread; `peak` is the highest seen."""

    pid: int
    interval: float = 0.005
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        process = psutil.Process(self.pid)
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self.samples += 1
            time.sleep(self.interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


def make_file(path: Path, mib: int) -> str:
    """Write `mib` MiB of random bytes in 1 MiB chunks; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def warm_up(sdk: Client, run_id: str, root: Path) -> None:
    """Exercise both routes once so the baseline includes imported modules and first-use caches."""
    small = root / "warm.bin"
    small.write_bytes(os.urandom(3 * MIB))
    sdk.runs.upload_artifact(PROJECT, run_id, small, "warm.bin")
    sdk.runs.download_artifact(PROJECT, run_id, "warm.bin", root / "warm-back.bin")


def test_300mb_artifact_streams_through_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="bottega-e2e-stream-"))
    try:
        with uvicorn_server(root) as server, Client(server.url, TOKEN, timeout=300) as sdk:
            sdk.projects.create(PROJECT)
            run_id = sdk.runs.create(PROJECT, "big-model").id
            warm_up(sdk, run_id, root)
            source = root / "model.bin"
            started = time.monotonic()
            sha = make_file(source, FILE_MIB)
            size = source.stat().st_size
            made = time.monotonic() - started
            assert size > 100 * MAX_JSON_BYTES, "the file must be far over the JSON body limit"

            baseline = rss(server.process.pid)
            started = time.monotonic()
            with RssSampler(server.process.pid).running() as up:
                uploaded = sdk.runs.upload_artifact(PROJECT, run_id, source, "models/model.bin")
            upload_s = time.monotonic() - started
            assert (uploaded.sha256, uploaded.size) == (sha, size)

            dest = root / "download" / "model.bin"
            between = rss(server.process.pid)
            started = time.monotonic()
            with RssSampler(server.process.pid).running() as down:
                sdk.runs.download_artifact(PROJECT, run_id, "models/model.bin", dest)
            download_s = time.monotonic() - started
            assert sha256_of(dest) == sha
            assert dest.stat().st_size == size

            up_growth, down_growth = up.peak - baseline, down.peak - baseline
            with capsys.disabled():
                print(
                    f"\n[artifact stream] {size / MIB:.0f} MiB file (made in {made:.1f} s); server RSS baseline "
                    f"{baseline / MIB:.1f} MiB\n"
                    f"[artifact stream] upload   {upload_s:5.1f} s ({size / MIB / upload_s:6.1f} MiB/s), peak RSS "
                    f"{up.peak / MIB:.1f} MiB, growth {up_growth / MIB:+.1f} MiB ({up.samples} samples)\n"
                    f"[artifact stream] download {download_s:5.1f} s ({size / MIB / download_s:6.1f} MiB/s), peak RSS "
                    f"{down.peak / MIB:.1f} MiB, growth {down_growth / MIB:+.1f} MiB ({down.samples} samples; "
                    f"RSS before it {between / MIB:.1f} MiB)"
                )
            assert up.samples > 10
            assert down.samples > 10
            assert up_growth < RSS_GROWTH_LIMIT, f"upload grew the server by {up_growth / MIB:.1f} MiB"
            assert down_growth < RSS_GROWTH_LIMIT, f"download grew the server by {down_growth / MIB:.1f} MiB"

            # A same-size corruption of the stored blob: the server aborts the stream, the SDK refuses the bytes.
            blob = server.home / "artifacts" / "blobs" / sha[:2] / sha
            with blob.open("r+b") as damaged:
                damaged.seek(size // 2)
                byte = damaged.read(1)
                damaged.seek(size // 2)
                damaged.write(bytes([byte[0] ^ 0xFF]))
            bad_dest = root / "corrupted"
            bad_dest.mkdir()
            with pytest.raises(IntegrityFailure) as caught:
                sdk.runs.download_artifact(PROJECT, run_id, "models/model.bin", bad_dest)
            assert list(bad_dest.iterdir()) == [], "no partial file may be left behind"
            assert "aborting the download" in server.log.read_text()
            with capsys.disabled():
                print(f"[artifact stream] corrupted blob refused: {caught.value.detail[:160]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_an_interrupted_upload_leaves_nothing_behind() -> None:
    root = Path(tempfile.mkdtemp(prefix="bottega-e2e-cut-"))
    try:
        with uvicorn_server(root) as server, Client(server.url, TOKEN) as sdk:
            sdk.projects.create(PROJECT)
            run_id = sdk.runs.create(PROJECT, "cut").id
            host, port = server.url.removeprefix("http://").split(":")
            head = (
                f"PUT /api/v1/projects/{PROJECT}/runs/{run_id}/artifacts/cut.bin HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {50 * MIB}\r\n\r\n"
            )
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(head.encode())
                for _ in range(5):
                    sock.sendall(os.urandom(MIB))
            tmp = server.home / "artifacts" / "tmp"
            deadline = time.monotonic() + 10
            while any(tmp.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert list(tmp.iterdir()) == [], "the partial upload must be discarded"
            assert not (server.home / "artifacts" / "blobs").exists()
            assert sdk.runs.list_artifacts(PROJECT, run_id).total == 0
            assert "Traceback" not in server.log.read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)
