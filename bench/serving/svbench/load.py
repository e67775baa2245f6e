"""Closed-loop HTTP load: wrk (one thread, `-c` connections) with a Lua script that cycles through pre-built POST
requests and prints exact percentiles from wrk's microsecond histogram in its `done()` hook.

Without wrk (`apt-get install wrk`), a small asyncio client does the same job (keep-alive connections, one request
in flight each); it is slower than wrk and is meant for smoke runs, the result says which tool measured it.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PERCENTILES = (50, 90, 99, 99.9)
LUA = r"""
-- bench/serving: POST pre-built requests (one JSON body per line of the file given after `--`), round robin.
local requests, count, next_index = {}, 0, 0

function init(args)
  local path, bodies = args[1], args[2]
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(bodies) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("POST", path, headers, line)
    end
  end
  if count == 0 then error("no request bodies in " .. bodies) end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    parts[#parts + 1] = string.format('"p%s": %d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.2f, "stdev": %.2f, %s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(parts, ", ")))
end
"""


@dataclass(frozen=True)
class Load:
    url: str
    bodies: Path
    connections: int
    seconds: float
    cpus: str | None = None
    """`taskset -c` list the load tool is pinned to (None: not pinned)."""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_load(load: Load, script_dir: Path, *, tool: str = "auto") -> dict[str, Any]:
    """One measurement: requests, req/s, errors, latency percentiles in microseconds, and the tool used."""
    use_wrk = tool == "wrk" or (tool == "auto" and wrk_path() is not None)
    if use_wrk:
        if wrk_path() is None:
            raise RuntimeError("wrk is not installed: apt-get install -y wrk (or pass --load-tool python)")
        result = _wrk(load, script_dir)
    else:
        result = asyncio.run(_python_load(load))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds > 0 else 0.0
    result["connections"] = load.connections
    result["error_count"] = sum(result["errors"].values())
    return result


def _wrk(load: Load, script_dir: Path) -> dict[str, Any]:
    script = script_dir / "post.lua"
    if not script.exists():
        script_dir.mkdir(parents=True, exist_ok=True)
        script.write_text(LUA)
    parts = urlsplit(load.url)
    base = f"{parts.scheme}://{parts.netloc}"
    argv = ["wrk", "-t1", f"-c{load.connections}", f"-d{max(1, round(load.seconds))}s", "--timeout", "10s"]
    argv += ["-s", str(script), base, "--", parts.path, str(load.bodies)]
    if load.cpus is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", load.cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=load.seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            result["tool"] = "wrk"
            return result
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}): {done.stdout[-800:]} {done.stderr[-800:]}")


async def _python_load(load: Load) -> dict[str, Any]:
    parts = urlsplit(load.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(line)}\r\n\r\n"
        ).encode()
        + line
        for line in load.bodies.read_bytes().splitlines()
        if line
    ]
    latencies: list[int] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    received = [0]
    deadline = time.perf_counter() + load.seconds

    async def connection(offset: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors["connect"] += 1
            return
        index = offset
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter_ns()
                writer.write(requests[index % len(requests)])
                index += 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                body = await reader.readexactly(length)
                latencies.append((time.perf_counter_ns() - started) // 1000)
                received[0] += len(head) + len(body)
                if int(head.split(b" ", 2)[1]) > 399:
                    errors["status"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors["read"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(i * 7) for i in range(load.connections)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": received[0],
        "errors": errors,
        "latency_us": _summary(latencies),
        "tool": "python",
    }


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    raise ValueError("a response without Content-Length")


def _summary(latencies: list[int]) -> dict[str, float]:
    if not latencies:
        return {"min": 0, "max": 0, "mean": 0.0, "stdev": 0.0, **{f"p{q}": 0 for q in PERCENTILES}}
    ordered = sorted(latencies)
    n = len(ordered)
    mean = sum(ordered) / n
    stdev = (sum((x - mean) ** 2 for x in ordered) / n) ** 0.5
    result: dict[str, float] = {"min": ordered[0], "max": ordered[-1], "mean": mean, "stdev": stdev}
    for q in PERCENTILES:
        result[f"p{q}"] = ordered[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))]
    return result
