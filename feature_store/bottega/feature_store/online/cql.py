"""A lean read connection speaking the CQL native protocol (v4): the Cassandra online store's read path.

The driver costs ~0.6-1.3 ms per read here (its I/O thread, futures and per-request objects) where the node answers
a prepared single-partition SELECT in ~0.2 ms: reads go over a plain socket (sync: one per thread and host) or an
asyncio stream (one per event loop and host), every query pipelined, rows decoded from the schema's known types
(EXECUTE with skip_metadata). Writes, DDL and cluster metadata stay with the driver (see cassandra.py).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bottega.feature_store.types import GroupSchema, ValueType

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HEADER = struct.Struct(">BBhBi")  # version, flags, stream, opcode, body length
STARTUP, READY, ERROR, PREPARE, EXECUTE, RESULT = 0x01, 0x02, 0x00, 0x09, 0x0A, 0x08
STREAMS = 32768
IN_FLIGHT = 1024  # queries sent before waiting for answers
ERRORS = {0x1200: "timeout", 0x1000: "unavailable", 0x1001: "overloaded", 0x1300: "read failure"}
UNPREPARED = 0x2500
UNSET = object()


def _decoder(vtype: ValueType | None) -> Callable[[bytes], Any]:
    if vtype is ValueType.int:
        return lambda b: struct.unpack(">q", b)[0]
    if vtype is ValueType.float:
        return lambda b: struct.unpack(">d", b)[0]
    if vtype is ValueType.bool:
        return lambda b: b != b"\x00"
    if vtype is ValueType.string:
        return lambda b: b.decode("utf-8")
    return lambda b: EPOCH + timedelta(milliseconds=struct.unpack(">q", b)[0])  # event_time


def _encoder(vtype: ValueType) -> Callable[[Any], bytes]:
    if vtype is ValueType.int:
        return struct.Struct(">q").pack
    if vtype is ValueType.float:
        return struct.Struct(">d").pack
    if vtype is ValueType.bool:
        return lambda v: b"\x01" if v else b"\x00"
    return lambda v: str(v).encode("utf-8")


@dataclass(frozen=True)
class Query:
    """A group's single-partition SELECT (features, then event time) and how to encode keys and decode cells."""

    schema: GroupSchema
    cql: bytes
    consistency: int
    encoders: tuple[Callable[[Any], bytes], ...]
    decoders: tuple[Callable[[bytes], Any], ...]

    @classmethod
    def of(cls, schema: GroupSchema, table: str, consistency: int) -> Query:
        columns = [*(n for n, _ in schema.features), "event_time"]
        where = " AND ".join(f"{n} = ?" for n in schema.key_names)
        return cls(
            schema=schema,
            cql=f"SELECT {', '.join(columns)} FROM {table} WHERE {where}".encode(),
            consistency=consistency,
            encoders=tuple(_encoder(t) for _, t in schema.entity_keys),
            decoders=(*(_decoder(t) for _, t in schema.features), _decoder(None)),
        )

    def encode_key(self, key: tuple[Any, ...]) -> list[bytes]:
        return [encode(value) for encode, value in zip(self.encoders, key, strict=True)]

    def execute(self, query_id: bytes) -> bytes:
        """An EXECUTE body without its values (flags: values, skip_metadata)."""
        return struct.pack(">H", len(query_id)) + query_id + struct.pack(">HB", self.consistency, 0x03)

    def row(self, body: bytes) -> tuple[Any, ...] | None:
        """The first row of a RESULT Rows body (None when there is none)."""
        kind, flags, count = struct.unpack_from(">iii", body)
        if kind != 2 or not flags & 0x0004:
            raise ConnectionError(f"unexpected result (kind {kind}, flags {flags:#x})")
        offset = 12
        if flags & 0x0002:  # a paging state (never asked for; skip it)
            offset += 4 + max(0, struct.unpack_from(">i", body, offset)[0])
        if struct.unpack_from(">i", body, offset)[0] == 0:
            return None
        offset += 4
        cells: list[Any] = []
        for decode in self.decoders[:count]:
            (size,) = struct.unpack_from(">i", body, offset)
            offset += 4
            if size < 0:
                cells.append(None)
                continue
            cells.append(decode(body[offset : offset + size]))
            offset += size
        return tuple(cells)


@dataclass(frozen=True)
class Request:
    query: Query
    key: tuple[Any, ...]


def _string_map(values: Mapping[str, str]) -> bytes:
    out = struct.pack(">H", len(values))
    for key, value in values.items():
        for text in (key.encode(), value.encode()):
            out += struct.pack(">H", len(text)) + text
    return out


def _error(body: bytes) -> tuple[int, str]:
    code, size = struct.unpack_from(">iH", body)
    return code, body[6 : 6 + size].decode("utf-8", "replace")


class Wire:
    """What the sync and the asyncio connection share: prepared ids, frames, answers."""

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self.prepared: dict[bytes, bytes] = {}

    @staticmethod
    def prepare_frame(cql: bytes) -> tuple[int, bytes]:
        return PREPARE, struct.pack(">i", len(cql)) + cql

    @staticmethod
    def startup_frame() -> tuple[int, bytes]:
        return STARTUP, _string_map({"CQL_VERSION": "3.0.0"})

    def remember(self, cql: bytes, reply: tuple[int, bytes] | None) -> None:
        if reply is None:
            raise TimeoutError("timeout")
        opcode, body = reply
        if opcode != RESULT:
            raise ConnectionError(f"cannot prepare {cql.decode()}: {_error(body)[1]}")
        (size,) = struct.unpack_from(">H", body, 4)
        self.prepared[cql] = body[6 : 6 + size]

    def frames(self, requests: Sequence[Request]) -> list[tuple[int, bytes]]:
        out = []
        for request in requests:
            values = request.query.encode_key(request.key)
            body = [request.query.execute(self.prepared[request.query.cql]), struct.pack(">H", len(values))]
            body.extend(struct.pack(">i", len(v)) + v for v in values)
            out.append((EXECUTE, b"".join(body)))
        return out

    def answer(self, request: Request, reply: tuple[int, bytes] | None) -> Any:
        """(row or None, error or None) of one query; UNSET when the node forgot the prepared statement."""
        if reply is None:
            return None, "timeout"
        opcode, body = reply
        if opcode == RESULT:
            return request.query.row(body), None
        code, message = _error(body)
        if code == UNPREPARED:
            self.prepared.pop(request.query.cql, None)
            return UNSET
        return None, ERRORS.get(code, f"cassandra error {code:#x}: {message}")

    def unprepared(self, requests: Sequence[Request]) -> list[bytes]:
        return list(dict.fromkeys(r.query.cql for r in requests if r.query.cql not in self.prepared))


class SyncWire(Wire):
    """A blocking socket; every call pipelines its queries and stops reading at the deadline."""

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        super().__init__(host, port, connect_timeout)
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.stream = 0
        self.abandoned: set[int] = set()

    def run(self, requests: Sequence[Request], deadline: float) -> list[Any]:
        try:
            for _attempt in range(2):
                if self.sock is None:
                    self._connect(deadline)
                for cql in self.unprepared(requests):
                    self.remember(cql, self._call([self.prepare_frame(cql)], deadline)[0])
                replies: list[Any] = []
                frames = self.frames(requests)
                for start in range(0, len(frames), IN_FLIGHT):
                    replies.extend(self._call(frames[start : start + IN_FLIGHT], deadline))
                answers = [self.answer(r, reply) for r, reply in zip(requests, replies, strict=True)]
                if UNSET not in answers:
                    return answers
            return [(None, "unprepared") if a is UNSET else a for a in answers]
        except TimeoutError:
            return [(None, "timeout")] * len(requests)
        except OSError as exc:  # refused, reset, unreachable: MISSING now, a new connection next time
            self.close()
            return [(None, f"unavailable: {exc}")] * len(requests)

    def _connect(self, deadline: float) -> None:
        self.close()
        budget = min(self.connect_timeout, deadline - time.monotonic())
        if budget <= 0:
            raise TimeoutError("timeout")
        self.sock = socket.create_connection((self.host, self.port), timeout=budget)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opcode, body = self._call([self.startup_frame()], deadline)[0] or (ERROR, b"")
        if opcode != READY:
            self.close()
            raise ConnectionError(f"Cassandra refused the connection: {_error(body)[1] if body else 'no answer'}")

    def _call(self, frames: Sequence[tuple[int, bytes]], deadline: float) -> list[tuple[int, bytes] | None]:
        assert self.sock is not None
        ids: dict[int, int] = {}
        out = []
        for opcode, body in frames:
            while self.stream in self.abandoned:
                self.stream = (self.stream + 1) % STREAMS
            ids[self.stream] = len(ids)
            out.append(HEADER.pack(4, 0, self.stream, opcode, len(body)) + body)
            self.stream = (self.stream + 1) % STREAMS
        self.sock.sendall(b"".join(out))
        replies: list[tuple[int, bytes] | None] = [None] * len(frames)
        left = len(frames)
        while left:
            frame = self._frame(deadline)
            if frame is None:  # out of time: answers still coming are dropped when they arrive
                self.abandoned.update(ids)
                break
            stream, opcode, body = frame
            self.abandoned.discard(stream)
            position = ids.pop(stream, None)
            if position is not None:
                replies[position] = (opcode, body)
                left -= 1
        return replies

    def _frame(self, deadline: float) -> tuple[int, int, bytes] | None:
        assert self.sock is not None
        while True:
            if len(self.buffer) >= 9:
                _version, _flags, stream, opcode, size = HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= 9 + size:
                    body = bytes(self.buffer[9 : 9 + size])
                    del self.buffer[: 9 + size]
                    return stream, opcode, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionResetError("Cassandra closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer.clear()
        self.abandoned.clear()


class Batch:
    """The answers of one call on an AsyncWire, filled in by its reader task."""

    __slots__ = ("done", "left", "replies")

    def __init__(self, size: int, done: Any) -> None:
        self.replies: list[tuple[int, bytes] | None] = [None] * size
        self.left = size
        self.done = done


class AsyncWire(Wire):
    """An asyncio stream on one event loop; a reader task hands answers to waiting calls by stream id."""

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        super().__init__(host, port, connect_timeout)
        self.writer: Any = None
        self.reader_task: Any = None
        self.waiting: dict[int, tuple[Batch, int]] = {}
        self.free = list(range(STREAMS - 1, -1, -1))
        self.connecting: Any = None

    async def run(self, requests: Sequence[Request], deadline: float) -> list[Any]:

        try:
            for _attempt in range(2):
                if self.writer is None or self.connecting is not None:  # also: wait for a STARTUP under way
                    await self._connect(deadline)
                for cql in self.unprepared(requests):
                    self.remember(cql, (await self._call([self.prepare_frame(cql)], deadline))[0])
                replies: list[Any] = []
                frames = self.frames(requests)
                for start in range(0, len(frames), IN_FLIGHT):
                    replies.extend(await self._call(frames[start : start + IN_FLIGHT], deadline))
                answers = [self.answer(r, reply) for r, reply in zip(requests, replies, strict=True)]
                if UNSET not in answers:
                    return answers
            return [(None, "unprepared") if a is UNSET else a for a in answers]
        except TimeoutError:
            return [(None, "timeout")] * len(requests)
        except OSError as exc:
            self.close()
            return [(None, f"unavailable: {exc}")] * len(requests)

    async def _connect(self, deadline: float) -> None:
        import asyncio

        if self.connecting is None:  # one connection attempt at a time; other calls wait for it
            if self.writer is not None:
                return
            self.connecting = asyncio.ensure_future(self._open(deadline))
        task = self.connecting
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
        finally:
            if task.done():
                self.connecting = None

    async def _open(self, deadline: float) -> None:
        import asyncio

        budget = min(self.connect_timeout, deadline - time.monotonic())
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), max(0.0, budget))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer = writer
        self.reader_task = asyncio.ensure_future(self._read(reader, writer))
        reply = (await self._call([self.startup_frame()], deadline))[0]
        if reply is None or reply[0] != READY:
            self.close()
            raise ConnectionError(f"Cassandra refused the connection: {_error(reply[1])[1] if reply else 'timeout'}")

    async def _call(self, frames: Sequence[tuple[int, bytes]], deadline: float) -> list[tuple[int, bytes] | None]:
        import asyncio

        if self.writer is None or len(self.free) < len(frames):
            raise ConnectionResetError("the connection closed" if self.writer is None else "too many queries in flight")
        batch = Batch(len(frames), asyncio.get_running_loop().create_future())
        out = []
        for position, (opcode, body) in enumerate(frames):
            stream = self.free.pop()
            self.waiting[stream] = (batch, position)
            out.append(HEADER.pack(4, 0, stream, opcode, len(body)) + body)
        self.writer.write(b"".join(out))
        with contextlib.suppress(TimeoutError):  # unanswered streams stay reserved until answered
            await asyncio.wait_for(batch.done, max(0.0, deadline - time.monotonic()))
        if batch.left and self.writer is None:
            raise ConnectionResetError("the connection closed")
        return batch.replies

    async def _read(self, reader: Any, writer: Any) -> None:
        with contextlib.suppress(Exception):
            await self._answers(reader, writer)

    async def _answers(self, reader: Any, writer: Any) -> None:
        try:
            while True:
                header = await reader.readexactly(9)
                _version, _flags, stream, opcode, size = HEADER.unpack(header)
                body = await reader.readexactly(size) if size else b""
                entry = self.waiting.pop(stream, None)
                if entry is None:
                    continue
                self.free.append(stream)
                batch, position = entry
                batch.replies[position] = (opcode, body)
                batch.left -= 1
                if not batch.left and not batch.done.done():
                    batch.done.set_result(None)
        finally:  # closed, broken or cancelled: wake every waiting call (their queries read as MISSING)
            if self.writer is writer:
                self._drop()

    def _drop(self) -> None:
        waiting, self.waiting = self.waiting, {}
        self.free = list(range(STREAMS - 1, -1, -1))
        for batch, _ in waiting.values():
            if not batch.done.done():
                batch.done.set_result(None)
        if self.writer is not None:
            self.writer.close()
        self.writer = None

    def close(self) -> None:
        if self.reader_task is not None:
            self.reader_task.cancel()
        self.reader_task = None
        self._drop()
