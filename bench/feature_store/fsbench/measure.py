"""Measuring helpers shared by both sides (standard library only): percentiles, peak RSS, child processes."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean/max of latencies given in seconds, reported in microseconds."""
    return {
        "n": len(seconds),
        "p50_us": percentile(seconds, 50) * 1e6,
        "p99_us": percentile(seconds, 99) * 1e6,
        "mean_us": sum(seconds) / len(seconds) * 1e6,
        "max_us": max(seconds) * 1e6,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_result(path: str | Path, result: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(dict(result), indent=2, default=str))


@dataclass
class ChildResult:
    """What a child benchmark process reported (its JSON), or why it did not."""

    ok: bool
    data: dict[str, Any]
    error: str | None
    wall_s: float
    peak_rss_mb: float | None  # as watched from outside (the child reports its own too)


def _tree_rss_mb(pid: int) -> float | None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in both environments
        return None
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return float(total) / 2**20
    except psutil.Error:
        return None


def run_child(
    argv: Sequence[str],
    out: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3_600,
    rss_limit_mb: float | None = None,
    log_path: Path | None = None,
) -> ChildResult:
    """Run a benchmark child that writes its JSON result to `out`; kill it past `timeout_s` or past `rss_limit_mb`
    of resident memory (its whole process tree), so one side cannot exhaust the shared machine."""
    out.unlink(missing_ok=True)
    log_file = open(log_path, "w") if log_path else None  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=log_file or sys.stderr,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    peak: float | None = None
    reason: str | None = None
    try:
        while proc.poll() is None:
            rss = _tree_rss_mb(proc.pid)
            if rss is not None:
                peak = max(peak or 0.0, rss)
                if rss_limit_mb is not None and rss > rss_limit_mb:
                    reason = f"killed: resident memory passed the {rss_limit_mb:.0f} MiB guard ({rss:.0f} MiB)"
            if time.perf_counter() - started > timeout_s:
                reason = f"killed: still running after {timeout_s:.0f} s"
            if reason:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_file:
            log_file.close()
    wall = time.perf_counter() - started
    if reason is None and proc.returncode != 0:
        reason = f"exited with status {proc.returncode}" + (f" (log: {log_path})" if log_path else "")
    if reason is None and not out.exists():
        reason = "wrote no result"
    data = json.loads(out.read_text()) if reason is None else {}
    if reason is None and "error" in data:
        reason = str(data["error"])
    return ChildResult(ok=reason is None, data=data, error=reason, wall_s=wall, peak_rss_mb=peak)
