"""The artifact cache and runtimes against a real API: download once, sha256 verified on every fetch, corrupt files
refused by name and repaired by the next fetch; custom Python models (PyML) registered, fetched and served from their
own venv, with a requirement installed offline from a wheel that travels with the version."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from api_harness import harness, migrated_sqlite
from serving_models import build_wheel, register_pyml, register_tree, train_tiny, write_pyml

from bottega.sdk import Client
from bottega.serving.runtimes.base import ModelLoadError, ModelUnavailable, PredictionFailed
from bottega.serving.runtimes.loader import VENVS, ArtifactCache, load_runtime
from bottega.serving.runtimes.onnx import OnnxRuntime
from bottega.serving.runtimes.python import PythonRuntime
from bottega.serving.runtimes.xgboost import XGBoostRuntime

PROJECT = "eats"


@dataclass
class Api:
    client: Client
    cache: ArtifactCache
    work: Path


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with harness(migrated_sqlite(tmp_path), tmp_path / "home") as h:
        client = h.sdk(h.project(PROJECT))
        yield Api(client, ArtifactCache(tmp_path / "cache", client), tmp_path / "work")


def test_fetch_verifies_and_loads_the_onnx_flavor(api: Api) -> None:
    tiny = train_tiny("binary")
    version = register_tree(api.client, PROJECT, "eta", tiny, api.work / "eta")
    loaded = api.cache.fetch(PROJECT, "eta", version.version)
    assert loaded.root == api.cache.root / PROJECT / "eta" / str(version.version)
    assert sorted(loaded.files) == ["evaluation.json", "model.onnx", "model.ubj"]
    assert loaded.task == "binary"
    assert not [p for p in loaded.root.parent.iterdir() if ".tmp-" in p.name]
    runtime = load_runtime(loaded)
    assert isinstance(runtime, OnnxRuntime)
    rows = tiny.features[:50]
    assert np.abs(runtime.predict(rows) - tiny.native(rows)).max() <= 1e-5
    native = load_runtime(loaded, prefer=("xgboost",))
    assert isinstance(native, XGBoostRuntime)
    np.testing.assert_array_equal(native.predict(rows), tiny.native(rows))
    inode = loaded.root.stat().st_ino
    again = api.cache.fetch(PROJECT, "eta", version.version)  # reused: same folder, re-hashed
    assert again.root.stat().st_ino == inode


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_corrupt_cached_file_is_refused_by_name_and_repaired(api: Api, damage: str) -> None:
    tiny = train_tiny("multiclass")
    version = register_tree(api.client, PROJECT, "cuisine", tiny, api.work / "cuisine")
    loaded = api.cache.fetch(PROJECT, "cuisine", version.version)
    target = loaded.files["model.onnx"]
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-10]))
    else:
        target.unlink()
    problem = {"flip": "hashes to", "truncate": "has .* bytes, not", "delete": "is missing"}[damage]
    with pytest.raises(ModelLoadError, match=rf"cached artifact 'model\.onnx' {problem}"):
        api.cache.fetch(PROJECT, "cuisine", version.version)
    assert not loaded.root.exists()  # the bad copy is gone, so the next fetch downloads again
    repaired = api.cache.fetch(PROJECT, "cuisine", version.version)
    recorded = {a.path: a.sha256 for a in version.artifacts}
    assert hashlib.sha256(repaired.files["model.onnx"].read_bytes()).hexdigest() == recorded["model.onnx"]
    runtime = load_runtime(repaired)
    rows = tiny.features[:20]
    assert runtime.predict(rows).shape == (20, 3)
    assert np.abs(runtime.predict(rows) - tiny.native(rows)).max() <= 1e-5


def test_unknown_versions_fail_to_load(api: Api) -> None:
    with pytest.raises(ModelLoadError, match=r"eats/nothing:3: the version cannot be read from the API"):
        api.cache.fetch(PROJECT, "nothing", 3)
    assert not (api.cache.root / PROJECT / "nothing" / "3").exists()


ADDER = """
    import tinyplus

    def load(path):
        pass

    def predict(rows):
        if any(r["a"] is None for r in rows):
            raise ValueError("a is required")
        return [tinyplus.plus(r["a"], r["b"]) for r in rows]
"""

PLAIN = """
    import os

    def load(path):
        global SCALE
        with open(os.path.join(path, "scale.txt")) as f:
            SCALE = float(f.read())

    def predict(rows):
        return [{"score": SCALE * r["a"], "pid": os.getpid()} for r in rows]
"""


def test_pyml_without_requirements(api: Api) -> None:
    folder = write_pyml(api.work / "plain", PLAIN, "", extra={"scale.txt": b"2.5"})
    version = register_pyml(api.client, PROJECT, "plain", folder, [("a", "float64")])
    started = time.monotonic()
    runtime = load_runtime(api.cache.fetch(PROJECT, "plain", version.version))
    print(f"PyML without requirements: fetched, venv and worker ready in {time.monotonic() - started:.2f} s")
    try:
        assert isinstance(runtime, PythonRuntime)
        got = runtime.predict(np.array([[2.0], [4.0]]))
        assert [g["score"] for g in got] == [5.0, 10.0]
        pid = got[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ModelUnavailable):
            runtime.predict(np.array([[1.0]]))
        deadline = time.monotonic() + 5
        while True:
            try:
                again = runtime.predict(np.array([[1.0]]))
                break
            except ModelUnavailable:
                assert time.monotonic() < deadline, "the worker did not come back within 5 s"
                time.sleep(0.05)
        assert again[0]["score"] == 2.5
        assert again[0]["pid"] != pid
    finally:
        runtime.close()


def test_pyml_with_a_requirement_installed_from_a_shipped_wheel(api: Api) -> None:
    wheel = build_wheel(api.work / "build")
    requirements = "--no-index\n--find-links wheels\ntinyplus==0.1\n"
    folder = write_pyml(api.work / "adder", ADDER, requirements, extra={f"wheels/{wheel.name}": wheel.read_bytes()})
    version = register_pyml(api.client, PROJECT, "adder", folder, [("a", "int64"), ("b", "float64")])
    loaded = api.cache.fetch(PROJECT, "adder", version.version)
    started = time.monotonic()
    runtime = load_runtime(loaded)
    created = time.monotonic() - started
    try:
        assert runtime.predict(np.array([[1.0, 0.5], [2.0, 2.0]])).tolist() == [1.5, 4.0]
        with pytest.raises(PredictionFailed, match="ValueError: a is required"):
            runtime.predict(np.array([[np.nan, 1.0]]))
        assert runtime.predict(np.array([[40.0, 2.0]])).tolist() == [42.0]  # the worker stayed up
        venvs = [p for p in (api.cache.root / VENVS).iterdir() if not p.name.startswith(".")]
        assert len(venvs) == 1
        site = list(venvs[0].glob("lib/python*/site-packages/tinyplus"))
        assert site, "tinyplus was not installed into the model's venv"
    finally:
        runtime.close()
    started = time.monotonic()
    second = load_runtime(loaded)  # the venv is reused: only the worker starts
    reused = time.monotonic() - started
    second.close()
    print(f"PyML venv with one wheel requirement: created in {created:.2f} s; load with the cached venv {reused:.2f} s")
    assert reused < created


def test_pyml_requirement_that_cannot_install_is_a_load_error(api: Api) -> None:
    folder = write_pyml(api.work / "bad", ADDER, "--no-index\nno-such-package-bottega==1.0\n")
    version = register_pyml(api.client, PROJECT, "bad", folder, [("a", "int64"), ("b", "float64")])
    loaded = api.cache.fetch(PROJECT, "bad", version.version)
    with pytest.raises(ModelLoadError, match=r"requirements\.txt: pip install failed.*no-such-package-bottega"):
        load_runtime(loaded)
    assert not [p for p in (api.cache.root / VENVS).iterdir() if not p.name.startswith(".")]
    assert not list((api.cache.root / VENVS).glob(".*.tmp-*"))
