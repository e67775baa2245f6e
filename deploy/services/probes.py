"""Wire-level readiness probes for the development services, standard library only.

`svc.py` must run before the project's virtual environment exists, so it cannot use cassandra-driver or
kafka-python. These probes speak just enough of each protocol to prove that the server answers a real client
request, not merely that its port accepts connections.
"""

from __future__ import annotations

import socket
import struct

CQL_VERSION = 4
CQL_OP_ERROR = 0x00
CQL_OP_STARTUP = 0x01
CQL_OP_READY = 0x02
CQL_OP_QUERY = 0x07
CQL_OP_RESULT = 0x08
CONSISTENCY_ONE = 0x0001


class ProbeError(Exception):
    """The server answered, but not as a healthy server would."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ProbeError("connection closed by the server")
        chunks.extend(chunk)
    return bytes(chunks)


def _cql_frame(stream: int, opcode: int, body: bytes) -> bytes:
    return struct.pack(">BBhBi", CQL_VERSION, 0, stream, opcode, len(body)) + body


def _cql_string_map(values: dict[str, str]) -> bytes:
    out = struct.pack(">H", len(values))
    for key, value in values.items():
        for text in (key, value):
            raw = text.encode()
            out += struct.pack(">H", len(raw)) + raw
    return out


def _cql_read(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(sock, 9)
    _version, _flags, _stream, opcode, length = struct.unpack(">BBhBi", header)
    return opcode, _recv_exact(sock, length)


def _cql_error_text(body: bytes) -> str:
    code = struct.unpack(">i", body[:4])[0]
    size = struct.unpack(">H", body[4:6])[0]
    return f"CQL error {code:#x}: {body[6 : 6 + size].decode(errors='replace')}"


def cql_query_answers(host: str, port: int, timeout: float = 3.0) -> None:
    """Run `SELECT release_version FROM system.local` over the CQL v4 native protocol."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_cql_frame(1, CQL_OP_STARTUP, _cql_string_map({"CQL_VERSION": "3.0.0"})))
        opcode, body = _cql_read(sock)
        if opcode != CQL_OP_READY:
            raise ProbeError(_cql_error_text(body) if opcode == CQL_OP_ERROR else f"STARTUP got opcode {opcode}")
        query = b"SELECT release_version FROM system.local"
        body = struct.pack(">i", len(query)) + query + struct.pack(">HB", CONSISTENCY_ONE, 0)
        sock.sendall(_cql_frame(2, CQL_OP_QUERY, body))
        opcode, body = _cql_read(sock)
        if opcode != CQL_OP_RESULT:
            raise ProbeError(_cql_error_text(body) if opcode == CQL_OP_ERROR else f"QUERY got opcode {opcode}")


KAFKA_METADATA = 3
KAFKA_METADATA_VERSION = 4  # the oldest version Kafka 4.x still accepts


def _kafka_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def kafka_broker_count(host: str, port: int, timeout: float = 3.0) -> int:
    """Send a Metadata (v4) request for no topics and return how many brokers the cluster reports."""
    header = struct.pack(">hhi", KAFKA_METADATA, KAFKA_METADATA_VERSION, 7) + _kafka_string("bottega-probe")
    body = struct.pack(">i", 0) + b"\x00"  # an empty topic list, allow_auto_topic_creation=false
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        response = _recv_exact(sock, size)
    correlation_id, _throttle_ms, brokers = struct.unpack(">iii", response[:12])
    if correlation_id != 7:
        raise ProbeError(f"unexpected correlation id {correlation_id}")
    return int(brokers)
