"""Custom Python models (flavor `python`, "PyML"): the user's `model.py` runs in a worker process of its own venv.

A version carries `model.py` (defining `load(path)` and `predict(rows) -> list`, one JSON-able value per row) and
optionally `requirements.txt`. The venv is made from the requirements with `python -m venv` (pip runs only when
there are requirements), cached under the cache root by the sha256 of the requirements and the Python version, and
created atomically: built in a temporary folder, then renamed into place (a file lock keeps two processes from
building the same one). Relative paths in the requirements (a wheel shipped with the version, `--find-links
wheels`) resolve against the version's folder.

`PythonRuntime` starts `pyml_worker.py` in that venv (`python -I`: nothing of the service's environment leaks in)
and talks to it over a Unix socket with a timeout per call. Rows reach the model as dicts input name -> value (the
signature's request features by name, then store features by reference; ints as int, bools as bool, missing values
as None). If the worker dies, calls in flight and new calls raise `ModelUnavailable` while a supervisor thread
restarts it with backoff; a worker that does not answer in time is killed and restarted the same way. An exception
in the model's `predict` raises `PredictionFailed` and the worker stays up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bottega.serving.runtimes.base import ModelLoadError, ModelUnavailable, PredictionFailed, Runtime
from bottega.serving.runtimes.pyml_worker import LOAD_FAILED, encode_frame, read_frame

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("bottega.serving")
WORKER_SCRIPT = Path(__file__).with_name("pyml_worker.py")
PIP_TIMEOUT_S = 900.0


# -- venvs -------------------------------------------------------------------------------------------------------


def requirements_key(text: bytes) -> str:
    """The cache key of a venv: Python version and the sha256 of the requirements (blank lines and comments
    ignored, so an empty file and no file share one venv)."""
    lines = [line.strip() for line in text.splitlines()]
    kept = b"\n".join(line for line in lines if line and not line.startswith(b"#"))
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return f"{version}-{hashlib.sha256(kept).hexdigest()}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], what: str, *, cwd: Path | None = None, timeout: float = PIP_TIMEOUT_S) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"{what} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise ModelLoadError(f"{what} failed (exit status {done.returncode}): {tail}")


def _host_has_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec("pip") is not None


def build_venv(target: Path, requirements: Path | None) -> None:
    """A venv at `target` with the requirements installed (`target` must not exist)."""
    wanted = requirements is not None and requirements_key(requirements.read_bytes()) != requirements_key(b"")
    host_pip = wanted and _host_has_pip()
    venv = [sys.executable, "-m", "venv"]
    if not wanted or host_pip:
        venv.append("--without-pip")  # the service's own pip installs into it: no ensurepip round
    _run([*venv, str(target)], "python -m venv", timeout=300)
    if not wanted or requirements is None:
        return
    python = str(target / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python] if host_pip else [python, "-m", "pip"]
    flags = ["install", "--disable-pip-version-check", "--no-input", "--quiet", "-r", str(requirements)]
    _run([*pip, *flags], f"{requirements.name}: pip install", cwd=requirements.parent)


def ensure_venv(root: Path, requirements: Path | None) -> Path:
    """The interpreter of the cached venv for `requirements`, made when missing."""
    key = requirements_key(requirements.read_bytes() if requirements is not None else b"")
    final = root / key
    python = final / "bin" / "python"
    if python.exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{key}.lock"):
        if python.exists():
            return python
        for stale in root.glob(f".{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a process that died while building
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
        try:
            tmp.rmdir()
            build_venv(tmp, requirements)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return python


# -- rows ---------------------------------------------------------------------------------------------------------


def _as_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _as_int(value: float) -> int | float | None:
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() else value


def _as_bool(value: float) -> bool | None:
    return None if math.isnan(value) else bool(value)


def converter(kind: str) -> Callable[[float], Any]:
    """How a matrix value of signature type `kind` reaches the model."""
    if kind == "bool":
        return _as_bool
    if kind in ("int8", "int16", "int32", "int64", "uint8"):
        return _as_int
    return _as_float


def to_rows(matrix: np.ndarray, names: Sequence[str], converters: Sequence[Callable[[float], Any]]) -> list[Any]:
    """Dicts input name -> plain Python value, one per row of `matrix`."""
    return [
        {name: convert(value) for name, convert, value in zip(names, converters, row, strict=True)}
        for row in matrix.tolist()
    ]


# -- the worker ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    process: subprocess.Popen[bytes]
    conn: socket.socket
    folder: Path
    started: float

    def dispose(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def spawn_worker(python: Path, model_dir: Path, timeout: float) -> Worker:
    """Start the worker and wait until it listens (it listens only once the model is loaded)."""
    folder = Path(tempfile.mkdtemp(prefix="bottega-pyml-"))
    path = folder / "worker.sock"
    log_path = folder / "worker.log"
    with log_path.open("wb") as err:
        process = subprocess.Popen(
            [str(python), "-I", str(WORKER_SCRIPT), "--socket", str(path), "--model-dir", str(model_dir)],
            cwd=model_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").strip()[-3000:]
            shutil.rmtree(folder, ignore_errors=True)
            what = "model.py failed to load" if code == LOAD_FAILED else f"the worker exited with status {code}"
            last = tail.splitlines()[-1] if tail else "no output"
            raise ModelLoadError(f"{what}: {last}\n{tail}")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            return Worker(process, conn, folder, time.monotonic())
        except OSError:
            conn.close()
        if time.monotonic() > deadline:
            Worker(process, socket.socket(socket.AF_UNIX), folder, 0).dispose()
            raise ModelLoadError(f"model.py did not finish loading within {timeout:.0f} s")
        time.sleep(0.02)


class PythonRuntime(Runtime):
    """A custom Python model served by a supervised worker process."""

    flavor: ClassVar[str] = "python"

    def __init__(
        self,
        model_dir: Path,
        python: Path,
        inputs: Sequence[tuple[str, str]],
        *,
        call_timeout_s: float = 30.0,
        start_timeout_s: float = 120.0,
        backoff_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self.model_dir = model_dir
        self.python = python
        self.names = tuple(name for name, _ in inputs)
        self.converters = tuple(converter(kind) for _, kind in inputs)
        self.n_inputs = len(self.names)
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.backoff_s = backoff_s
        self.restarts = 0
        self._call_lock = threading.Lock()
        self._state = threading.Lock()
        self._closed = threading.Event()
        self._why = ""
        self._worker: Worker | None = None
        self._first: list[ModelLoadError] = []
        started = threading.Event()
        # the supervisor thread starts every worker: Linux signals a worker when the thread that started it ends
        self._supervisor = threading.Thread(
            target=self._supervise, args=(started,), name=f"pyml-{model_dir.name}", daemon=True
        )
        self._supervisor.start()
        started.wait()
        if self._first:
            raise self._first[0]

    @property
    def worker_pid(self) -> int | None:
        worker = self._worker
        return worker.process.pid if worker is not None else None

    @property
    def available(self) -> bool:
        return self._worker is not None

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np

        self.check_width(matrix)
        result = self.call_rows(to_rows(matrix, self.names, self.converters))
        out = np.empty(len(result), dtype=object)
        for i, value in enumerate(result):
            out[i] = value
        return out

    def call_rows(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The model's answer for `rows` (dicts input name -> value)."""
        reply = self._call({"op": "predict", "rows": rows})
        if not reply.get("ok"):
            raise PredictionFailed(f"the model's predict failed: {reply.get('error', 'no detail')}")
        result: list[Any] = reply["result"]
        return result

    def _call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        if self._worker is None:
            raise ModelUnavailable(self._unavailable_reason())
        frame = encode_frame(request)
        if not self._call_lock.acquire(timeout=self.call_timeout_s):
            raise ModelUnavailable(f"the model's worker is busy: no turn within {self.call_timeout_s:.0f} s")
        try:
            worker = self._worker
            if worker is None:
                raise ModelUnavailable(self._unavailable_reason())
            remaining = max(0.001, self.call_timeout_s - (time.monotonic() - started))
            try:
                worker.conn.settimeout(remaining)
                worker.conn.sendall(frame)
                reply: dict[str, Any] = read_frame(worker.conn)
            except TimeoutError:
                self._lost(worker, f"the model did not answer within {self.call_timeout_s:.0f} s; restarting it")
                raise ModelUnavailable(self._why) from None
            except (OSError, EOFError, ValueError):
                self._lost(worker, "the model's worker process died; restarting it")
                raise ModelUnavailable(self._why) from None
            return reply
        finally:
            self._call_lock.release()

    def _unavailable_reason(self) -> str:
        return self._why or "the model's worker is not running"

    def _lost(self, worker: Worker, why: str) -> None:
        """Take `worker` out of service and kill it: the supervisor sees it exit and starts another."""
        with self._state:
            if self._worker is worker:
                self._worker = None
                self._why = why
        if worker.process.poll() is None:
            worker.process.kill()

    def _supervise(self, started: threading.Event) -> None:
        try:
            self._worker = spawn_worker(self.python, self.model_dir, self.start_timeout_s)
        except ModelLoadError as exc:
            self._first.append(exc)
            return
        finally:
            started.set()
        first, ceiling = self.backoff_s
        delay = first
        while not self._closed.is_set():
            worker = self._worker
            if worker is not None:
                code = worker.process.wait()
                if self._closed.is_set():
                    return
                self._lost(worker, f"the model's worker exited (status {code}); restarting it")
                log.warning("%s: PyML worker %d exited with status %s", self.model_dir, worker.process.pid, code)
                worker.dispose()
                if time.monotonic() - worker.started > 10 * ceiling:
                    delay = first  # a worker that lived a while: no crash loop, restart quickly
            if self._closed.wait(delay):
                return
            try:
                fresh = spawn_worker(self.python, self.model_dir, self.start_timeout_s)
            except ModelLoadError as exc:
                self._why = f"the model's worker is restarting: {exc}"
                delay = min(delay * 2, ceiling)
                continue
            with self._state:
                if self._closed.is_set():
                    fresh.dispose()
                    return
                self._worker = fresh
                self._why = ""
            self.restarts += 1
            delay = min(delay * 2, ceiling)

    def close(self) -> None:
        self._closed.set()
        with self._state:
            worker, self._worker = self._worker, None
            self._why = "the model was unloaded"
        if worker is not None:
            worker.dispose()
        self._supervisor.join(timeout=10)
