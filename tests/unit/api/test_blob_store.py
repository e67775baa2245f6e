"""The content-addressed blob store: streamed puts, verified reads, damage detection and repair."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bottega.api.artifacts.store import BlobStore
from bottega.core.errors import IntegrityFailure, InvalidInput, PayloadTooLarge


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def put(store: BlobStore, data: bytes, **kwargs: object) -> tuple[str, int]:
    return asyncio.run(store.put_stream(chunks(data), **kwargs))  # type: ignore[arg-type]


def test_put_and_read_back(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    data = b"bottega" * 1000
    sha, size = put(store, data)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join(store.open_verified(sha, size)) == data
    assert not list((tmp_path / "tmp").iterdir())


def test_wrong_declared_hash_and_limit_store_nothing(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    with pytest.raises(InvalidInput, match="nothing was stored"):
        put(store, b"abc", expected_sha256="0" * 64)
    with pytest.raises(PayloadTooLarge):
        put(store, b"x" * 100, max_bytes=10)
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*"))
    assert not list((tmp_path / "tmp").iterdir())


def test_corruption_is_detected_and_a_truncated_copy_is_repaired(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    data = bytes(range(256)) * 50
    sha, size = put(store, data)
    path = Path(store.path(sha))
    damaged = bytearray(data)
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityFailure, match="corrupted"):
        b"".join(store.open_verified(sha, size))
    assert store.verify(sha) is False
    path.write_bytes(data[:10])
    with pytest.raises(IntegrityFailure, match="10 bytes"):
        store.open_verified(sha, size)
    put(store, data)  # uploading the same bytes again repairs a truncated copy
    assert store.verify(sha) is True
