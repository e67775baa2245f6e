"""Platform overhead of XGBoost training: `bottega train` against raw `xgboost.train`, and xgboost.spark with N
workers against the local trainer, on the same generated data (wall time and final eval AUC).

    .venv/bin/python bench/training/xgb_overhead.py                    # 1M x 50, 100 rounds
    .venv/bin/python bench/training/xgb_overhead.py --rows 200000      # smaller, for a busy laptop

Each side runs in a fresh child process (`xgb_sides.py` has them) and times itself from reading the data to the
final metric; the Bottega sides talk to a real `bottega server` (SQLite, artifacts on disk) started here under
`bench/.data/training/runs/<run>/`. The Spark side builds its local[N] session before its clock starts (the
session's start-up is reported apart). Results are printed with the command that reproduces them and saved under
`bench/.data/training/results/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".data" / "training"
SIDES = ("raw", "bottega", "spark")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--nthread", type=int, default=2, help="XGBoost threads of raw and local (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="Spark workers (1 thread each)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated: raw,bottega,spark")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest is reported")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spark-driver-memory", default="4g")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    args = parser.parse_args(argv)
    unknown = set(args.sides.split(",")) - set(SIDES)
    if unknown:
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))}; use {', '.join(SIDES)}")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def bottega_server(home: Path, timeout: float = 120) -> Iterator[tuple[str, str]]:
    """A real `bottega server` on embedded defaults under `home`; yields (url, admin token)."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")}
    env.update({"BOTTEGA_HOME": str(home), "BOTTEGA_URL": url})
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / "server.log"
    command = [str(Path(sys.executable).parent / "bottega"), "server", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bottega server exited; see {log}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bottega server not ready after {timeout:.0f} s; see {log}")
            time.sleep(0.2)
        yield url, (home / "bootstrap-token").read_text().strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def child(side: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run in the child process: one side, its result as a dict."""
    sys.path.insert(0, str(HERE))
    import xgb_sides

    path = Path(job["path"])
    knobs = {k: job[k] for k in ("rounds", "depth", "eta", "nthread", "seed")}
    if side == "raw":
        raw: dict[str, Any] = xgb_sides.raw_side(path, job["rows"], **knobs)
        return raw
    from bottega.sdk import Client

    compute, workers, extra = "local", 1, {}
    if side == "spark":
        compute, workers = "spark", job["workers"]
        extra["spark_session_seconds"] = start_spark(workers, job["spark_driver_memory"])
    spec = xgb_sides.make_spec(
        path, job["rows"], job["features"], compute=compute, workers=workers, model=f"xgb-{side}", **knobs
    )
    return {**xgb_sides.bottega_side(Client(job["url"], job["token"]), spec), **extra}


def start_spark(workers: int, memory: str) -> float:
    """Start the local[workers] session the trainer will use (it takes the active one); returns its seconds."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    start = time.perf_counter()
    session = (
        SparkSession.builder.master(f"local[{workers}]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return time.perf_counter() - start


def run_child(side: str, job: dict[str, Any], log: Path, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    with log.open("ab") as err:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "_child", side, json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"side {side} failed (exit {done.returncode}); its log: {log}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def fastest_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run of a side (noise on a shared machine only adds time), with every run's seconds."""
    best = min(results, key=lambda r: r["seconds"])
    return {
        **best,
        "runs": results,
        "all_seconds": [r["seconds"] for r in results],
        "all_cpu_seconds": [r["cpu_seconds"] for r in results],
    }


def report(results: dict[str, dict[str, Any]], command: str) -> str:
    lines = [f"{'side':<18}{'seconds':>10}{'CPU s':>9}{'process s':>11}{'vs raw':>9}{'vs local':>10}{'eval AUC':>10}"]
    raw = results.get("raw", {}).get("seconds")
    local = results.get("bottega", {}).get("seconds")
    for r in results.values():
        vs_raw = f"{r['seconds'] / raw:.2f}x" if raw else "-"
        vs_local = f"{r['seconds'] / local:.2f}x" if local else "-"
        lines.append(
            f"{r['side']:<18}{r['seconds']:>10.2f}{r['cpu_seconds']:>9.2f}{r['process_seconds']:>11.2f}{vs_raw:>9}"
            f"{vs_local:>10}"
            f"{r['auc']:>10.4f}"
        )
    for r in results.values():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        extra = f"; Spark session start {r['spark_session_seconds']:.2f} s" if "spark_session_seconds" in r else ""
        runs = ", ".join(f"{v:.2f}" for v in r["all_seconds"])
        lines.append(f"  {r['side']} stages (s): {stages}{extra}; runs (s): {runs}")
    lines.extend(overhead_lines(results))
    lines.append(f"reproduce: {command}")
    return "\n".join(lines)


def beyond_rounds(run: dict[str, Any]) -> float | None:
    """A run's seconds outside its boosting rounds 2..N (reading, matrices, the first round's sketch, evaluation,
    exports, uploads): the part that does not depend on how fast the machine boosts at that moment."""
    rounds = run.get("rounds_seconds")
    return None if rounds is None else float(run["seconds"] - rounds)


def overhead_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """The ratio with the boosting time held equal: the raw side's fastest rounds plus each side's least time
    outside them (on a shared machine the rounds' time swings with the load and drowns the overhead)."""
    raw, ours = results.get("raw"), results.get("bottega")
    if raw is None or ours is None:
        return []
    raw_beyond = [b for b in map(beyond_rounds, raw["runs"]) if b is not None]
    ours_beyond = [b for b in map(beyond_rounds, ours["runs"]) if b is not None]
    rounds = min(r["rounds_seconds"] for r in [*raw["runs"], *ours["runs"]] if r.get("rounds_seconds"))
    if not raw_beyond or not ours_beyond:
        return []
    ratio = (rounds + min(ours_beyond)) / (rounds + min(raw_beyond))
    return [
        f"outside the boosting rounds (least of the runs): raw {min(raw_beyond):.2f} s, bottega "
        f"{min(ours_beyond):.2f} s; rounds 2..N at best {rounds:.2f} s; ratio at equal boosting time {ratio:.3f}x"
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["_child"]:
        print(json.dumps(child(argv[1], json.loads(argv[2]))))
        return 0
    args = parse(argv)
    sys.path.insert(0, str(HERE))
    import xgb_sides

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = DATA / "runs" / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"data: {args.rows} x {args.features} (generated once under {DATA})", flush=True)
    path = xgb_sides.generate(DATA, args.rows, args.features)
    job = {**vars(args), "path": str(path)}
    results: dict[str, dict[str, Any]] = {}
    with bottega_server(run_dir / "home") as (url, token):
        from bottega.sdk import Client

        with Client(url, token) as sdk:
            sdk.projects.create(xgb_sides.PROJECT)
        job.update(url=url, token=token)
        chosen = [s for s in SIDES if s in args.sides.split(",")]
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in chosen}
        for i in range(args.repeat):  # the sides take turns, so a busy spell on the machine hits each alike
            for side in chosen:
                print(f"{side}: run {i + 1}/{args.repeat}", flush=True)
                runs[side].append(run_child(side, job, run_dir / f"{side}.log", args.timeout))
        results = {side: fastest_of(runs[side]) for side in chosen}
    command = "bench/training/xgb_overhead.py " + shlex.join(argv)
    text = report(results, f".venv/bin/python {command}".strip())
    print(text)
    out = DATA / "results" / f"xgb_overhead-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = dict(vars(args))
    out.write_text(json.dumps({"settings": settings, "results": results, "command": command}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
