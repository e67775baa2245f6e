"""Model DB, artifacts: blob uploads, registering files and folders, downloads, and integrity failures detected."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from api_harness import ApiHarness, harness

from bottega.core.errors import IntegrityFailure, InvalidInput, NotFound
from bottega.sdk import Client

BLOBS = "/api/v1/projects/eats/blobs"
VERSION = "/api/v1/projects/eats/models/eta/versions"
OCTET = {"Content-Type": "application/octet-stream"}
MIB = 1024 * 1024


@pytest.fixture
def owner(api: ApiHarness) -> str:
    token = api.project("eats", owner="alice")
    api.sdk(token).models.create("eats", "eta")
    return token


def stored(api: ApiHarness, sha: str) -> Path:
    return Path(api.settings.resolved_artifacts_url()) / "blobs" / sha[:2] / sha


def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "weights").mkdir(parents=True)
    (root / "MLmodel").write_text("flavor: xgboost\n")
    (root / "weights" / "big.bin").write_bytes(os.urandom(2 * MIB + 512 * 1024))
    (root / "weights" / "empty.bin").write_bytes(b"")
    return root


def test_upload_a_blob(api: ApiHarness, owner: str) -> None:
    data = b"model bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    response = api.call("PUT", BLOBS, owner, content=data, headers={**OCTET, "X-Bottega-Sha256": sha})
    assert response.status_code == 201
    assert response.json() == {"sha256": sha, "size": len(data)}
    assert stored(api, sha).read_bytes() == data
    again = api.call("PUT", BLOBS, owner, content=data, headers=OCTET)  # idempotent
    assert again.status_code == 201
    assert api.call("GET", f"{BLOBS}/{sha}", owner).json() == {"sha256": sha, "size": len(data)}
    events = api.sdk(owner).audit.list(project="eats", action="blob.upload").items
    assert len(events) == 2
    assert events[0].details == {"sha256": sha, "size": len(data)}


def test_concurrent_uploads_of_the_same_bytes(api: ApiHarness, owner: str) -> None:
    data = os.urandom(256 * 1024)

    def upload(_: int) -> int:
        return api.call("PUT", BLOBS, owner, content=data, headers=OCTET).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(upload, range(8))) == {201}
    assert stored(api, hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_a_wrong_checksum_stores_nothing(api: ApiHarness, owner: str) -> None:
    data = b"damaged in transit"
    lie = hashlib.sha256(b"something else").hexdigest()
    response = api.call("PUT", BLOBS, owner, content=data, headers={**OCTET, "X-Bottega-Sha256": lie})
    assert response.status_code == 422
    assert response.json()["field"] == "sha256"
    assert not stored(api, hashlib.sha256(data).hexdigest()).exists()
    assert not stored(api, lie).exists()
    assert list((Path(api.settings.resolved_artifacts_url()) / "tmp").iterdir()) == []
    assert api.call("GET", f"{BLOBS}/{hashlib.sha256(data).hexdigest()}", owner).status_code == 404
    bad = api.call("PUT", BLOBS, owner, content=data, headers={**OCTET, "X-Bottega-Sha256": "nothex"})
    assert bad.status_code == 422


def test_uploads_must_be_octet_streams(api: ApiHarness, owner: str) -> None:
    response = api.call("PUT", BLOBS, owner, content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["field"] == "content-type"


def test_uploads_over_the_limit_are_refused(database_url: str, tmp_path: Path) -> None:
    with harness(database_url, tmp_path / "home", max_upload_bytes=1000) as small:
        token = small.project("eats", owner="alice")
        declared = small.call("PUT", BLOBS, token, content=b"x" * 1001, headers=OCTET)
        assert declared.status_code == 413

        def chunks() -> Iterator[bytes]:
            for _ in range(5):
                yield b"y" * 400

        streamed = small.call("PUT", BLOBS, token, content=chunks(), headers=OCTET)
        assert streamed.status_code == 413
        assert list((Path(small.settings.resolved_artifacts_url()) / "tmp").iterdir()) == []
        assert small.call("PUT", BLOBS, token, content=b"z" * 1000, headers=OCTET).status_code == 201


def test_blob_lookup_is_per_project(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    stranger = api.project("beta", owner="stranger")
    local = tmp_path / "w.bin"
    local.write_bytes(b"shared weights")
    sha = api.sdk(stranger).models.upload_blob("beta", local).sha256
    assert api.call("GET", f"{BLOBS}/{sha}", owner).status_code == 404  # eats never uploaded it
    assert api.call("GET", f"/api/v1/projects/beta/blobs/{sha}", stranger).status_code == 200
    assert api.call("GET", f"{BLOBS}/nothex", owner).status_code == 422


def test_sdk_upload_skips_bytes_the_project_has(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    local = tmp_path / "w.bin"
    local.write_bytes(os.urandom(3 * MIB))
    seen: list[tuple[int, int]] = []
    sdk = api.sdk(owner)
    first = sdk.models.upload_blob("eats", local, progress=lambda done, total: seen.append((done, total)))
    assert first.size == 3 * MIB
    assert seen == [(MIB, 3 * MIB), (2 * MIB, 3 * MIB), (3 * MIB, 3 * MIB)]
    sdk.models.upload_blob("eats", local)
    assert len(sdk.audit.list(project="eats", action="blob.upload").items) == 1
    stored(api, first.sha256).unlink()  # the store lost it: the next upload sends the bytes again
    sdk.models.upload_blob("eats", local)
    assert stored(api, first.sha256).stat().st_size == 3 * MIB


def test_register_a_folder_and_download_it(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    source = model_dir(tmp_path)
    sdk = api.sdk(owner)
    progress: list[tuple[int, int]] = []
    version = sdk.models.register_version(
        "eats", "eta", "xgboost", source, progress=lambda done, total: progress.append((done, total))
    )
    total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    assert progress[-1] == (total, total)
    assert [(a.path, a.size) for a in version.artifacts] == [
        ("MLmodel", 16),
        ("weights/big.bin", 2 * MIB + 512 * 1024),
        ("weights/empty.bin", 0),
    ]
    listed = sdk.models.list_artifacts("eats", "eta", 1)
    assert listed == version.artifacts
    sdk.models.set_alias("eats", "eta", "production", 1)
    files = sdk.models.download("eats", "eta", "production", tmp_path / "out")
    assert set(files) == {"MLmodel", "weights/big.bin", "weights/empty.bin"}
    for artifact in version.artifacts:
        local = files[artifact.path]
        assert local == (tmp_path / "out" / artifact.path).resolve()
        assert hashlib.sha256(local.read_bytes()).hexdigest() == artifact.sha256
        assert local.read_bytes() == (source / artifact.path).read_bytes()
    only = sdk.models.download("eats", "eta", 1, tmp_path / "one", paths=["MLmodel"])
    assert list(only) == ["MLmodel"]
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["MLmodel"]
    with pytest.raises(NotFound, match="no artifact 'nope'"):
        sdk.models.download("eats", "eta", 1, tmp_path / "none", paths=["nope"])
    report = sdk.models.verify("eats", "eta", "production")
    assert report.ok
    assert [f.status for f in report.artifacts] == ["ok", "ok", "ok"]


def test_download_headers_and_errors(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    local = tmp_path / "model file #1.bin"
    local.write_bytes(b"0123456789")
    version = api.sdk(owner).models.register_version("eats", "eta", "onnx", {"dir/model file #1.bin": local})
    sha = version.artifacts[0].sha256
    response = api.call("GET", f"{VERSION}/1/artifacts/dir/model%20file%20%231.bin", owner)
    assert response.status_code == 200
    assert response.content == b"0123456789"
    assert response.headers["x-bottega-sha256"] == sha
    assert response.headers["content-length"] == "10"
    assert response.headers["content-type"] == "application/octet-stream"
    assert "model%20file%20%231.bin" in response.headers["content-disposition"]
    assert response.headers["etag"] == f'"{sha}"'
    cached = api.call(
        "GET", f"{VERSION}/1/artifacts/dir/model%20file%20%231.bin", owner, headers={"If-None-Match": f'W/"{sha}"'}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    other_tag = {"If-None-Match": '"0000"'}
    assert api.call("GET", f"{VERSION}/1/artifacts/dir/model%20file%20%231.bin", owner, headers=other_tag).content
    missing = api.call("GET", f"{VERSION}/1/artifacts/dir/other.bin", owner)
    assert missing.status_code == 404
    assert api.call("GET", f"{VERSION}/2/artifacts/dir/other.bin", owner).status_code == 404
    assert api.call("GET", f"{VERSION}/1/artifacts/dir/model%20file%20%231.bin", None).status_code == 401


def test_a_corrupted_artifact_is_detected(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    source = model_dir(tmp_path)
    sdk = api.sdk(owner)
    version = sdk.models.register_version("eats", "eta", "xgboost", source)
    shas = {a.path: a.sha256 for a in version.artifacts}
    for name in ("MLmodel", "weights/big.bin"):
        blob = stored(api, shas[name])
        data = bytearray(blob.read_bytes())
        data[0] ^= 0xFF  # same size, different bytes
        blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    for name in ("MLmodel", "weights/big.bin"):
        with pytest.raises(IntegrityFailure, match="integrity"):
            sdk.models.download("eats", "eta", 1, out, paths=[name])
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == []  # no partial file, no temp file
    cut = api.call("GET", f"{VERSION}/1/artifacts/weights/big.bin", owner)
    assert cut.status_code == 200
    assert len(cut.content) < 2 * MIB + 512 * 1024  # the last chunk is held back: the body ends short
    report = sdk.models.verify("eats", "eta", 1)
    assert not report.ok
    assert {f.path: f.status for f in report.artifacts} == {
        "MLmodel": "corrupted",
        "weights/big.bin": "corrupted",
        "weights/empty.bin": "ok",
    }


def test_a_truncated_or_lost_artifact_is_refused_before_streaming(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    local = tmp_path / "m.bin"
    local.write_bytes(b"a" * 5000)
    other = tmp_path / "n.bin"
    other.write_bytes(b"b" * 10)
    sdk = api.sdk(owner)
    version = sdk.models.register_version("eats", "eta", "onnx", {"m.bin": local, "n.bin": other})
    shas = {a.path: a.sha256 for a in version.artifacts}
    stored(api, shas["m.bin"]).write_bytes(b"a" * 4000)
    stored(api, shas["n.bin"]).unlink()
    for name in ("m.bin", "n.bin"):
        response = api.call("GET", f"{VERSION}/1/artifacts/{name}", owner)
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "urn:bottega:problem:integrity"
        with pytest.raises(IntegrityFailure):
            sdk.models.download("eats", "eta", 1, tmp_path / "out", paths=[name])
    assert not (tmp_path / "out" / "m.bin").exists()
    report = sdk.models.verify("eats", "eta", 1)
    assert {f.path: f.status for f in report.artifacts} == {"m.bin": "size_mismatch", "n.bin": "missing"}
    assert "4000 bytes" in report.artifacts[0].detail


def test_the_sdk_re_hashes_what_it_receives(tmp_path: Path) -> None:
    """A server (or proxy) that sends the full length of the wrong bytes is caught by the SDK's own hash."""
    good = b"the real weights"
    sha = hashlib.sha256(good).hexdigest()
    version = {
        "model": "eta",
        "version": 1,
        "run_id": None,
        "flavor": "onnx",
        "signature": {},
        "metrics": {},
        "lineage": {},
        "description": "",
        "created_by": "alice",
        "created_at": "2026-11-25T00:00:00Z",
        "aliases": [],
        "evaluation": {},
        "artifacts": [{"path": "m.onnx", "sha256": sha, "size": len(good)}],
    }

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifacts/m.onnx"):
            return httpx.Response(200, content=b"the fake weights", headers={"X-Bottega-Sha256": sha})
        return httpx.Response(200, json=version)

    http = httpx.Client(transport=httpx.MockTransport(serve), base_url="http://registry")
    with Client(token="t", http=http) as client, pytest.raises(IntegrityFailure, match="hash to"):
        client.models.download("eats", "eta", 1, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_register_refuses_bad_input_before_uploading(api: ApiHarness, owner: str, tmp_path: Path) -> None:
    local = tmp_path / "m.bin"
    local.write_bytes(b"never uploaded")
    sdk = api.sdk(owner)
    with pytest.raises(InvalidInput, match=r"signature\.inputs\.0\.type"):
        sdk.models.register_version(
            "eats", "eta", "onnx", {"m.bin": local}, signature={"inputs": [{"name": "x", "type": "complex"}]}
        )
    with pytest.raises(InvalidInput, match="not a file"):
        sdk.models.register_version("eats", "eta", "onnx", {"m.bin": tmp_path / "missing"})
    with pytest.raises(InvalidInput, match="neither a file nor a directory"):
        sdk.models.register_version("eats", "eta", "onnx", tmp_path / "missing")
    assert sdk.audit.list(project="eats", action="blob.upload").total == 0
    single = sdk.models.register_version("eats", "eta", "onnx", local)  # one file: its name is the path
    assert [a.path for a in single.artifacts] == ["m.bin"]
