"""Custom Python models (PyML) in a worker process of their own venv: rows, errors, crashes, restarts, timeouts."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_models import write_pyml

from bottega.serving.runtimes.base import ModelLoadError, ModelUnavailable, PredictionFailed
from bottega.serving.runtimes.python import PythonRuntime, ensure_venv, requirements_key

ECHO = """
    import json, os
    state = {}

    def load(path):
        state["path"] = path
        try:
            import numpy  # noqa: F401  (the service has numpy; this venv must not)
            state["numpy"] = True
        except ImportError:
            state["numpy"] = False

    def predict(rows):
        out = []
        for row in rows:
            if row.get("a") == -1:
                raise ValueError("a must not be -1")
            if row.get("a") == 99:
                import time
                time.sleep(30)
            if row.get("a") == 7:
                return [object()]  # not JSON
            out.append({"row": row, "pid": os.getpid(), "numpy": state["numpy"], "path": state["path"]})
        return out
"""
INPUTS = [("a", "float64"), ("n", "int64"), ("flag", "bool"), ("eats:stats:prep", "float64")]


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_venv(tmp_path_factory.mktemp("venvs"), None)


@pytest.fixture
def make(python: Path, tmp_path: Path) -> Iterator[Callable[..., PythonRuntime]]:
    opened: list[PythonRuntime] = []

    def build(source: str = ECHO, name: str = "m", **options: float) -> PythonRuntime:
        folder = write_pyml(tmp_path / name, source)
        runtime = PythonRuntime(folder, python, INPUTS, backoff_s=(0.1, 1.0), **options)
        opened.append(runtime)
        return runtime

    yield build
    for runtime in opened:
        runtime.close()


def row(a: float) -> np.ndarray:
    return np.array([[a, 3.0, 1.0, np.nan]])


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def test_rows_reach_the_model_as_typed_dicts(make: Callable[..., PythonRuntime]) -> None:
    runtime = make()
    got = runtime.predict(np.array([[1.5, 3.0, 1.0, np.nan], [np.nan, np.nan, 0.0, 2.5]]))
    assert got.dtype == object
    assert got.shape == (2,)
    assert got[0]["row"] == {"a": 1.5, "n": 3, "flag": True, "eats:stats:prep": None}
    assert got[1]["row"] == {"a": None, "n": None, "flag": False, "eats:stats:prep": 2.5}
    assert isinstance(got[0]["row"]["n"], int)
    assert got[0]["pid"] == runtime.worker_pid != os.getpid()
    assert got[0]["path"] == str(runtime.model_dir)
    assert got[0]["numpy"] is False  # the worker runs in its own venv, not the service's
    with pytest.raises(ValueError, match="rows of 4 inputs"):
        runtime.predict(np.zeros((1, 3)))


def test_an_exception_in_predict_is_a_clear_error_and_the_worker_stays(make: Callable[..., PythonRuntime]) -> None:
    runtime = make()
    pid = runtime.worker_pid
    with pytest.raises(PredictionFailed, match="ValueError: a must not be -1"):
        runtime.predict(row(-1))
    with pytest.raises(PredictionFailed, match="JSON cannot carry"):
        runtime.predict(row(7))
    assert runtime.predict(row(1))[0]["pid"] == pid
    assert runtime.restarts == 0


def test_sigkill_gives_unavailable_for_that_model_only_then_recovers(make: Callable[..., PythonRuntime]) -> None:
    victim, bystander = make(name="victim"), make(name="bystander")
    pid = victim.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ModelUnavailable):
        victim.predict(row(1))
    assert bystander.predict(row(2))[0]["row"]["a"] == 2.0
    took = wait_until(lambda: victim.available, timeout=5.0)
    result = victim.predict(row(3))[0]
    assert result["pid"] != pid
    assert victim.restarts == 1
    print(f"PyML worker restarted {took:.2f} s after SIGKILL")


def test_a_call_that_hangs_times_out_and_the_worker_is_replaced(make: Callable[..., PythonRuntime]) -> None:
    runtime = make(call_timeout_s=0.5)
    pid = runtime.worker_pid
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="did not answer within"):
        runtime.predict(row(99))
    assert time.monotonic() - started < 2
    wait_until(lambda: runtime.available)
    assert runtime.predict(row(1))[0]["pid"] != pid


def test_load_failures_name_the_problem(make: Callable[..., PythonRuntime]) -> None:
    broken = (
        "def load(path):\n    raise RuntimeError('weights.bin is missing')\n\ndef predict(rows):\n    return rows\n"
    )
    with pytest.raises(ModelLoadError, match=r"model\.py failed to load.*RuntimeError: weights\.bin is missing"):
        make(broken, name="broken")
    with pytest.raises(ModelLoadError, match=r"must define predict\(rows\)"):
        make("def load(path):\n    pass\n", name="nopredict")
    with pytest.raises(ModelLoadError, match=r"must define load\(path\)"):
        make("def predict(rows):\n    return rows\n", name="noload")
    with pytest.raises(ModelLoadError, match="SyntaxError"):
        make("def load(path) oops\n", name="syntax")


def test_load_may_return_the_model_object(make: Callable[..., PythonRuntime]) -> None:
    source = """
        class Doubler:
            def predict(self, rows):
                return [2 * r["a"] for r in rows]

        def load(path):
            return Doubler()
    """
    assert make(source).predict(row(21)).tolist() == [42.0]


def test_close_stops_the_worker(make: Callable[..., PythonRuntime]) -> None:
    runtime = make()
    process = runtime._worker.process if runtime._worker else None
    assert process is not None
    runtime.close()
    assert process.poll() is not None
    with pytest.raises(ModelUnavailable, match="unloaded"):
        runtime.predict(row(1))


def test_venv_cache_key_and_reuse(tmp_path: Path, python: Path) -> None:
    assert requirements_key(b"") == requirements_key(b"\n# nothing\n  \n")
    assert requirements_key(b"tinyplus==0.1\n") == requirements_key(b"# pinned\ntinyplus==0.1")
    assert requirements_key(b"tinyplus==0.1") != requirements_key(b"tinyplus==0.2")
    empty = tmp_path / "requirements.txt"
    empty.write_text("# no requirements\n")
    started = time.monotonic()
    first = ensure_venv(tmp_path / "venvs", empty)
    created = time.monotonic() - started
    started = time.monotonic()
    assert ensure_venv(tmp_path / "venvs", None) == first
    reused = time.monotonic() - started
    assert first.parent.parent.parent == tmp_path / "venvs"
    assert not list((tmp_path / "venvs").glob(".*.tmp-*"))
    assert not (first.parent / "pip").exists()  # no requirements: no pip in the venv
    assert reused < 0.05
    print(f"venv without requirements: created in {created:.2f} s, reused in {reused * 1e3:.2f} ms")


def test_concurrent_calls_get_their_own_answers(make: Callable[..., PythonRuntime]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    runtime = make()

    def call(i: int) -> bool:
        return all(runtime.predict(row(1000.0 + i * 100 + k))[0]["row"]["a"] == 1000 + i * 100 + k for k in range(30))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(call, range(8)))


def test_the_worker_goes_when_the_service_is_killed(python: Path, tmp_path: Path) -> None:
    """A `kill -9` of the serving process leaves no orphan worker behind."""
    import subprocess
    import sys

    folder = write_pyml(tmp_path / "m", ECHO)
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bottega.serving.runtimes.python import PythonRuntime\n"
        f"r = PythonRuntime(Path({str(folder)!r}), Path({str(python)!r}), [('a', 'float64')])\n"
        "print(r.worker_pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    before = {p.name for p in Path(tempfile.gettempdir()).glob("bottega-pyml-*")}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        mine = {p.name for p in Path(tempfile.gettempdir()).glob("bottega-pyml-*")} - before
        assert mine, "the worker's private folder was not found"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split()[2] == "Z"  # exited, waiting to be reaped by init

        wait_until(gone, timeout=5.0)
        wait_until(lambda: not [p for p in Path(tempfile.gettempdir()).glob("bottega-pyml-*") if p.name in mine])
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
