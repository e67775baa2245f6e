"""The blob store: bytes stored once under their SHA-256, written and read as streams.

Layout under the root URL: `blobs/<sha[:2]>/<sha>`; uploads land in `tmp/<uuid>` and are moved into place only
after their hash is known (and matches what the client declared), so a failed or lying upload leaves nothing behind.
Reads re-hash what they stream; `open_verified` raises `IntegrityFailure` at the end of a stream whose bytes no
longer match their name.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import fsspec

from bottega.core.errors import IntegrityFailure, InvalidInput, NotFound, PayloadTooLarge

log = logging.getLogger("bottega.api.artifacts")
CHUNK = 1024 * 1024
SHA256_HEX = 64


class BlobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = root.rstrip("/")

    def path(self, sha256: str) -> str:
        return f"{self.root}/blobs/{sha256[:2]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self.path(sha256)))

    def size(self, sha256: str) -> int:
        return int(self.fs.size(self.path(sha256)))

    async def put_stream(
        self, chunks: AsyncIterator[bytes], *, expected_sha256: str | None = None, max_bytes: int | None = None
    ) -> tuple[str, int]:
        """Store a stream; returns (sha256, size). Memory stays at one chunk whatever the size."""
        if expected_sha256 is not None and (len(expected_sha256) != SHA256_HEX or not _is_hex(expected_sha256)):
            raise InvalidInput("the declared sha256 must be 64 hex digits", field="sha256")
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        await anyio.to_thread.run_sync(lambda: self.fs.makedirs(f"{self.root}/tmp", exist_ok=True))
        digest = hashlib.sha256()
        size = 0
        out = await anyio.to_thread.run_sync(lambda: self.fs.open(tmp, "wb"))
        buffer = bytearray()  # regroup small network chunks into ~1 MiB writes: bounded memory, few thread hops
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"the upload is over the limit of {max_bytes} bytes")
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await anyio.to_thread.run_sync(out.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(out.write, bytes(buffer))
            await anyio.to_thread.run_sync(out.close)
            sha = digest.hexdigest()
            if expected_sha256 is not None and sha != expected_sha256.lower():
                raise InvalidInput(
                    f"the upload's sha256 is {sha}, not the declared {expected_sha256}: the bytes were damaged "
                    "in transit or the checksum is wrong; nothing was stored",
                    field="sha256",
                )
            await anyio.to_thread.run_sync(self._commit, tmp, sha)
            return sha, size
        except BaseException:
            await anyio.to_thread.run_sync(self._discard, out, tmp)
            raise

    def _commit(self, tmp: str, sha: str) -> None:
        final = self.path(sha)
        if self.fs.exists(final) and self.fs.size(final) == self.fs.size(tmp):
            self.fs.rm(tmp)  # already stored (a same-size corruption is caught by reads and `verify`)
            return
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if self.fs.exists(final):
            self.fs.rm(final)  # a damaged (truncated) copy: the fresh upload repairs it
        self.fs.mv(tmp, final)

    def _discard(self, out: Any, tmp: str) -> None:
        try:
            out.close()
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
            self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
            with self.fs.open(tmp, "wb") as out:
                out.write(data)
            self._commit(tmp, sha)
        return sha, len(data)

    def open_verified(self, sha256: str, expected_size: int | None = None) -> Iterator[bytes]:
        """Stream a blob in chunks, re-hashing as it goes; raises IntegrityFailure when the bytes do not match."""
        path = self.path(sha256)
        if not self.fs.exists(path):
            raise NotFound(f"blob {sha256} is missing from the artifact store")
        actual_size = self.size(sha256)
        if expected_size is not None and actual_size != expected_size:
            raise IntegrityFailure(f"blob {sha256} has {actual_size} bytes, {expected_size} were stored")
        return self._iterate(path, sha256)

    def open_for_response(self, sha256: str, expected_size: int, what: str) -> Iterator[bytes]:
        """`open_verified` for an HTTP response body: a missing or resized blob raises before anything is sent;
        chunks then go out one behind, and when the bytes fail their hash at the end the last chunk is never sent,
        so the response ends short of its Content-Length and every client sees a broken download."""
        return _held_back(self.open_verified(sha256, expected_size), what)

    def _iterate(self, path: str, sha256: str) -> Iterator[bytes]:
        digest = hashlib.sha256()
        with self.fs.open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                yield chunk
        if digest.hexdigest() != sha256:
            raise IntegrityFailure(f"blob {sha256} is corrupted: its bytes hash to {digest.hexdigest()}")

    def verify(self, sha256: str) -> bool:
        """Re-read a whole blob; True when its bytes still match its name."""
        try:
            for _ in self.open_verified(sha256):
                pass
        except IntegrityFailure:
            return False
        return True


def _held_back(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    previous: bytes | None = None
    try:
        for chunk in chunks:
            if previous is not None:
                yield previous
            previous = chunk
    except IntegrityFailure as exc:
        log.error("aborting the download of %s: %s", what, exc.detail)
        return
    if previous is not None:
        yield previous


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
