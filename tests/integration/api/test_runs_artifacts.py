"""Run artifacts: streamed upload and download with sha256 checks, integrity failures, path rules, listing."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import ApiHarness, harness
from sqlalchemy import func, select

from bottega.api.db.engine import make_engine
from bottega.api.db.tables import Blob, RunArtifact
from bottega.core.errors import IntegrityFailure, InvalidInput, NotFound, PayloadTooLarge
from bottega.sdk import Client

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def sdk(api: ApiHarness) -> Client:
    return api.sdk(api.project("eats", owner="alice"))


@pytest.fixture
def run_id(sdk: Client) -> str:
    return sdk.runs.create("eats", "trainer").id


def url(run_id: str, path: str = "") -> str:
    base = f"/api/v1/projects/eats/runs/{run_id}/artifacts"
    return f"{base}/{path}" if path else base


def blob_files(api: ApiHarness) -> list[Path]:
    return sorted(p for p in (api.settings.home / "artifacts").rglob("*") if p.is_file())


def blob_path(api: ApiHarness, sha: str) -> Path:
    return api.settings.home / "artifacts" / "blobs" / sha[:2] / sha


def count_rows(api: ApiHarness) -> tuple[int, int]:
    engine = make_engine(api.settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            blobs = conn.scalar(select(func.count()).select_from(Blob))
            artifacts = conn.scalar(select(func.count()).select_from(RunArtifact))
        return int(blobs or 0), int(artifacts or 0)
    finally:
        engine.dispose()


def write(path: Path, size: int, seed: int = 0) -> bytes:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    path.write_bytes(data)
    return data


def test_round_trip_with_sha256(api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    data = write(source, 3 * 1024 * 1024 + 123)
    sha = hashlib.sha256(data).hexdigest()
    seen: list[tuple[int, int]] = []
    uploaded = sdk.runs.upload_artifact(
        "eats", run_id, source, "models/model.bin", progress=lambda d, t: seen.append((d, t))
    )
    assert (uploaded.path, uploaded.sha256, uploaded.size) == ("models/model.bin", sha, len(data))
    assert seen[-1] == (len(data), len(data))
    assert len(seen) == 4  # 1 MiB chunks
    assert blob_path(api, sha).read_bytes() == data
    downloaded: list[tuple[int, int]] = []
    out = sdk.runs.download_artifact(
        "eats",
        run_id,
        "models/model.bin",
        tmp_path / "out" / "copy.bin",
        progress=lambda d, t: downloaded.append((d, t)),
    )
    assert out == tmp_path / "out" / "copy.bin"
    assert out.read_bytes() == data
    assert downloaded[-1] == (len(data), len(data))
    into_dir = sdk.runs.download_artifact("eats", run_id, "models/model.bin", tmp_path)
    assert into_dir == tmp_path / "model.bin"
    run = sdk.runs.get("eats", run_id)
    assert (run.artifacts.count, run.artifacts.total_size) == (1, len(data))
    assert [a.path for a in run.artifacts.items] == ["models/model.bin"]


def test_download_headers_and_etag(api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    data = write(source, 1000)
    sha = hashlib.sha256(data).hexdigest()
    sdk.runs.upload_artifact("eats", run_id, source)
    token = api.tokens["alice"]
    response = api.call("GET", url(run_id, "a.txt"), token)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["x-bottega-sha256"] == sha
    assert response.headers["content-length"] == "1000"
    assert response.headers["etag"] == f'"{sha}"'
    assert response.headers["content-type"] == "application/octet-stream"
    cached = api.call("GET", url(run_id, "a.txt"), token, headers={"If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304
    assert cached.content == b""
    stale = api.call("GET", url(run_id, "a.txt"), token, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200


def test_odd_but_valid_paths_and_empty_files(sdk: Client, run_id: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    sdk.runs.upload_artifact("eats", run_id, empty, "reports/roc curve é #1.txt")
    listed = sdk.runs.list_artifacts("eats", run_id).items
    assert [(a.path, a.size) for a in listed] == [("reports/roc curve é #1.txt", 0)]
    assert listed[0].sha256 == hashlib.sha256(b"").hexdigest()
    out = sdk.runs.download_artifact("eats", run_id, "reports/roc curve é #1.txt", tmp_path / "back")
    assert out.read_bytes() == b""


def test_reupload_replaces_and_identical_bytes_share_a_blob(
    api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path
) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    write(first, 5000, seed=1)
    data2 = write(second, 7000, seed=2)
    sdk.runs.upload_artifact("eats", run_id, first, "model.bin")
    replaced = sdk.runs.upload_artifact("eats", run_id, second, "model.bin")
    assert replaced.size == 7000
    assert sdk.runs.download_artifact("eats", run_id, "model.bin", tmp_path / "d").read_bytes() == data2
    sdk.runs.upload_artifact("eats", run_id, second, "copy/model.bin")
    other_run = sdk.runs.create("eats", "other").id
    sdk.runs.upload_artifact("eats", other_run, second, "model.bin")
    assert count_rows(api) == (2, 3)  # two distinct contents, three artifact rows
    assert len([p for p in blob_files(api) if "/blobs/" in p.as_posix()]) == 2


def test_listing_with_prefix_and_pages(sdk: Client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    write(source, 10)
    for path in ("plots/b.png", "plots/a.png", "model/x.onnx", "plots_old/c.png"):
        sdk.runs.upload_artifact("eats", run_id, source, path)
    page = sdk.runs.list_artifacts("eats", run_id)
    assert [a.path for a in page.items] == ["model/x.onnx", "plots/a.png", "plots/b.png", "plots_old/c.png"]
    assert [a.path for a in sdk.runs.list_artifacts("eats", run_id, prefix="plots/").items] == [
        "plots/a.png",
        "plots/b.png",
    ]
    second = sdk.runs.list_artifacts("eats", run_id, limit=3, offset=3)
    assert ([a.path for a in second.items], second.total) == (["plots_old/c.png"], 4)


def test_wrong_declared_sha_stores_nothing(api: ApiHarness, sdk: Client, run_id: str) -> None:
    token = api.tokens["alice"]
    headers = {**OCTET, "X-Bottega-Sha256": "0" * 64}
    response = api.call("PUT", url(run_id, "model.bin"), token, content=b"x" * 5000, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nothing was stored" in response.json()["detail"]
    assert blob_files(api) == []
    assert count_rows(api) == (0, 0)
    assert sdk.runs.list_artifacts("eats", run_id).total == 0
    malformed = {**OCTET, "X-Bottega-Sha256": "abc"}
    assert api.call("PUT", url(run_id, "m"), token, content=b"x", headers=malformed).status_code == 422
    right = {**OCTET, "X-Bottega-Sha256": hashlib.sha256(b"x" * 5000).hexdigest().upper()}
    assert api.call("PUT", url(run_id, "model.bin"), token, content=b"x" * 5000, headers=right).status_code == 201


def test_upload_without_declared_sha_is_hashed_by_the_server(api: ApiHarness, run_id: str) -> None:
    response = api.call("PUT", url(run_id, "raw.bin"), api.tokens["alice"], content=b"hello", headers=OCTET)
    assert response.status_code == 201
    assert response.json()["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert response.json()["size"] == 5


@pytest.mark.parametrize(
    "path",
    ["a/%2E%2E/b", "%2E%2E", "a/%2E/b", "a//b", "a/", "%2Fetc%2Fpasswd", "a%5Cb", "a%00b", "x" * 1025],
)
def test_bad_artifact_paths_are_422(api: ApiHarness, run_id: str, path: str) -> None:
    token = api.tokens["alice"]
    response = api.call("PUT", url(run_id, path), token, content=b"data", headers=OCTET)
    assert response.status_code == 422, (path, response.text)
    assert response.json()["errors"][0]["field"] == "path.path"
    assert api.call("GET", url(run_id, path), token).status_code == 422
    assert blob_files(api) == []


def test_upload_errors(api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path) -> None:
    token = api.tokens["alice"]
    json_body = api.call("PUT", url(run_id, "a"), token, content=b"{}", headers={"Content-Type": "application/json"})
    assert json_body.status_code == 422
    assert json_body.json()["errors"][0]["field"] == "header.content-type"
    ghost = uuid.uuid4().hex
    assert api.call("PUT", url(ghost, "a"), token, content=b"data", headers=OCTET).status_code == 404
    assert blob_files(api) == []
    with pytest.raises(InvalidInput, match="not a file"):
        sdk.runs.upload_artifact("eats", run_id, tmp_path / "missing")
    real = tmp_path / "real"
    real.write_bytes(b"data")
    for bad in ("a/../b", "/abs", "a//b", ""):
        with pytest.raises(InvalidInput, match="artifact path"):
            sdk.runs.upload_artifact("eats", run_id, real, bad or "/")
        with pytest.raises(InvalidInput, match="artifact path"):
            sdk.runs.download_artifact("eats", run_id, bad, tmp_path / "out")
    real.unlink()
    assert blob_files(api) == []
    with pytest.raises(NotFound, match="no artifact 'nope'"):
        sdk.runs.download_artifact("eats", run_id, "nope", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial file for a refused download


def test_corrupted_blob_is_caught_by_the_sdk(
    api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "src" / "weights.bin"
    source.parent.mkdir()
    data = write(source, 2 * 1024 * 1024 + 10)
    sha = sdk.runs.upload_artifact("eats", run_id, source).sha256
    stored = blob_path(api, sha)
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(damaged))
    dest = tmp_path / "dest"
    dest.mkdir()
    with caplog.at_level(logging.ERROR, logger="bottega.api.runs"), pytest.raises(IntegrityFailure) as caught:
        sdk.runs.download_artifact("eats", run_id, "weights.bin", dest)
    assert "does not match the server's checksum" in caught.value.detail
    assert caught.value.extra["expected_sha256"] == sha
    assert list(dest.iterdir()) == []  # no partial or temporary file left
    assert any("aborting the download" in r.getMessage() and sha in r.getMessage() for r in caplog.records)
    # The raw response is cut short of its Content-Length: the held-back last chunk never goes out.
    response = api.call("GET", url(run_id, "weights.bin"), api.tokens["alice"])
    assert int(response.headers["content-length"]) == len(data)
    assert len(response.content) < len(data)


def test_truncated_blob_is_refused_before_streaming(api: ApiHarness, sdk: Client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    write(source, 4096)
    sha = sdk.runs.upload_artifact("eats", run_id, source).sha256
    stored = blob_path(api, sha)
    stored.write_bytes(stored.read_bytes()[:1000])
    response = api.call("GET", url(run_id, "model.bin"), api.tokens["alice"])
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:bottega:problem:integrity"
    assert "1000 bytes, 4096 were stored" in body["detail"]
    dest = tmp_path / "dest"
    with pytest.raises(IntegrityFailure, match="4096 were stored"):
        sdk.runs.download_artifact("eats", run_id, "model.bin", dest)
    assert not dest.exists() or list(dest.parent.glob(".dest.*")) == []
    os.remove(stored)
    with pytest.raises(IntegrityFailure, match="missing from the artifact store"):
        sdk.runs.download_artifact("eats", run_id, "model.bin", dest)


@pytest.fixture
def small_limit_api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    with harness(database_url, tmp_path / "home", max_upload_bytes=10_000) as h:
        yield h


def test_uploads_over_the_limit_are_413_and_store_nothing(small_limit_api: ApiHarness, tmp_path: Path) -> None:
    api = small_limit_api
    sdk = api.sdk(api.project("eats", owner="alice"))
    run_id = sdk.runs.create("eats", "r").id
    big = tmp_path / "big"
    write(big, 10_001)
    with pytest.raises(PayloadTooLarge):
        sdk.runs.upload_artifact("eats", run_id, big)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(11):
            yield b"x" * 1000

    response = api.call("PUT", url(run_id, "big"), api.tokens["alice"], content=chunked(), headers=OCTET)
    assert response.status_code == 413
    assert [p for p in blob_files(api) if p.is_file()] == []
    assert count_rows(api) == (0, 0)
    small = tmp_path / "small"
    write(small, 10_000)
    assert sdk.runs.upload_artifact("eats", run_id, small).size == 10_000
