"""The worker process of a custom Python model (PyML). Standard library only: it runs inside the model's own venv.

    python -I pyml_worker.py --socket /tmp/x/worker.sock --model-dir /cache/project/model/3

It imports `model.py` from the model directory (which also goes on `sys.path`, so the model can import its own
modules), calls `load(model_dir)` once, and only then listens on the Unix socket, so a connection that succeeds means
the model is loaded. A failing `load` prints its traceback on stderr and exits with status 3.

Protocol: frames of a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Requests are
`{"op": "predict", "rows": [{input name: value, ...}, ...]}` or `{"op": "ping"}`; answers are
`{"ok": true, "result": [...]}` (one JSON value per row) or `{"ok": false, "error": "...", "traceback": "..."}`.
An exception in `predict` is answered as an error and the worker keeps serving. Connections are served one at a
time, each until the peer closes it.

If `load` returns an object with a `predict` method, that object answers; otherwise the module's `predict` does.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
LOAD_FAILED = 3


def read_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes; EOFError when the peer closes first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = sock.recv_into(view[done:], size - done)
        if got == 0:
            raise EOFError("the peer closed the connection")
        done += got
    return bytes(buffer)


def read_frame(sock: socket.socket) -> Any:
    (size,) = HEADER.unpack(read_exact(sock, HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
    return json.loads(read_exact(sock, size))


def _plain(value: Any) -> Any:
    """JSON for numpy-like values a model may return (arrays and scalars)."""
    for method in ("tolist", "item"):
        if hasattr(value, method):
            return getattr(value, method)()
    raise TypeError(f"a {type(value).__name__} is not JSON serializable")


def encode_frame(message: Any) -> bytes:
    body = json.dumps(message, default=_plain, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def load_model(model_dir: Path) -> Callable[[list[dict[str, Any]]], Any]:
    """Import model.py, call its `load(model_dir)`; the predict function to call."""
    path = model_dir / "model.py"
    sys.path.insert(0, str(model_dir))
    spec = importlib.util.spec_from_file_location("model", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    load = getattr(module, "load", None)
    if not callable(load):
        raise TypeError("model.py must define load(path)")
    loaded = load(str(model_dir))
    predict = getattr(loaded, "predict", None) if loaded is not None else None
    if not callable(predict):
        predict = getattr(module, "predict", None)
    if not callable(predict):
        raise TypeError("model.py must define predict(rows) (or load(path) must return an object with predict)")
    return predict  # type: ignore[no-any-return]


def answer(predict: Callable[[list[dict[str, Any]]], Any], request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or request.get("op") not in ("predict", "ping"):
        return {"ok": False, "error": "unknown request: expected op 'predict' or 'ping'"}
    if request["op"] == "ping":
        return {"ok": True, "result": os.getpid()}
    rows = request.get("rows")
    if not isinstance(rows, list):
        return {"ok": False, "error": "a predict request needs a list of rows"}
    try:
        result = predict(rows)
        if hasattr(result, "tolist"):
            result = result.tolist()
        result = list(result)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    if len(result) != len(rows):
        return {"ok": False, "error": f"predict returned {len(result)} values for {len(rows)} rows"}
    return {"ok": True, "result": result}


def serve(server: socket.socket, predict: Callable[[list[dict[str, Any]]], Any]) -> None:
    while True:
        conn, _ = server.accept()
        with conn:
            while True:
                try:
                    request = read_frame(conn)
                except (EOFError, OSError, ValueError):
                    break
                reply = answer(predict, request)
                try:
                    frame = encode_frame(reply)
                except (TypeError, ValueError) as exc:
                    frame = encode_frame({"ok": False, "error": f"predict returned a value JSON cannot carry: {exc}"})
                try:
                    conn.sendall(frame)
                except OSError:
                    break


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (best effort, elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a custom Python model over a Unix socket")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    try:
        predict = load_model(Path(args.model_dir))
    except BaseException:
        traceback.print_exc()
        return LOAD_FAILED
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server.bind(args.socket)
    server.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # e.g. the service died: clean up on the way out
    try:
        serve(server, predict)
    finally:
        server.close()
        clean_up(Path(args.socket))
    return 0


def clean_up(sock: Path) -> None:
    """Remove the socket and the private folder the service made for this worker (`bottega-pyml-*`)."""
    folder = sock.parent
    with contextlib.suppress(OSError):
        sock.unlink()
    if folder.name.startswith("bottega-pyml-"):
        for leftover in folder.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
