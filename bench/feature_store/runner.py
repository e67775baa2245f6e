"""Feature-store benchmarks, Bottega against Feast, each side in its own process; run through `run.sh`:

    bench/feature_store/run.sh online|training|materialize|stream|all [--quick] [--rows N] [...]

Sizes default to the issue's (10k reads, 1M label rows x 3 groups, 1M materialized rows, 10k events/s); `--quick`
is a smoke-sized run. Data is generated once per size under bench/.data/feature_store/, Feast runs from
bench/.venv-feast. Every result (both sides, ratios, peak RSS, the reproducing command) is printed and saved as
JSON under bench/.data/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from fsbench import data as fsdata  # noqa: E402 - the folder is put on the path first
from fsbench.measure import ChildResult, run_child, write_result  # noqa: E402
from fsbench.spec import GROUPS, MATERIALIZE_GROUP, Sizes  # noqa: E402

BENCHES = ("online", "training", "materialize", "stream")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/feature_store/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (seconds, not minutes)")
    parser.add_argument("--rows", type=int, help="training labels, history rows per group and materialized rows")
    parser.add_argument("--reads", type=int, help="online reads per store (default 10000)")
    parser.add_argument("--entities", type=int, help="entities in the online stores (default 100000)")
    parser.add_argument("--stores", default="sqlite,cassandra", help="online stores to compare")
    parser.add_argument("--feast-offline", default="duckdb,file", help="Feast offline stores for training sets")
    parser.add_argument("--rate", type=int, help="streaming events per second (default 10000)")
    parser.add_argument("--seconds", type=float, help="streaming measurement time (default 60)")
    parser.add_argument("--stream-store", default="cassandra", choices=["cassandra", "sqlite"])
    parser.add_argument("--stream-batch", type=int, default=2000, help="stream processor max records per poll")
    parser.add_argument(
        "--stream-workers", type=int, default=None, help="processor processes in one consumer group (default 1)"
    )
    parser.add_argument("--no-feast", action="store_true", help="only the Bottega side")
    parser.add_argument("--rss-guard-mb", type=float, default=10_000, help="kill a side past this resident memory")
    parser.add_argument("--timeout", type=float, default=3_000, help="kill a side after this many seconds")
    parser.add_argument("--feast-file-timeout", type=float, default=900, help="the same for Feast's file store")
    parser.add_argument("--data", type=Path, default=REPO / "bench" / ".data" / "feature_store")
    parser.add_argument("--feast-python", type=Path, default=REPO / "bench" / ".venv-feast" / "bin" / "python")
    parser.add_argument("--cassandra-hosts", default=os.environ.get("BOTTEGA_TEST_CASSANDRA_HOSTS"))
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("BOTTEGA_TEST_KAFKA_BOOTSTRAP"))
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rows:
        sizes = sizes.with_rows(args.rows)
    overrides = {"reads": args.reads, "online_entities": args.entities, "stream_rate": args.rate}
    overrides["stream_seconds"] = args.seconds
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v})


class Runner:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.sizes = sizes_of(args)
        self.command = "bench/feature_store/run.sh " + " ".join(shlex.quote(a) for a in argv)
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.work = args.data / "runs" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.folder: Path | None = None
        self.keyspaces: list[str] = []

    def data(self) -> Path:
        if self.folder is None:
            self.folder = fsdata.ensure(self.args.data, self.sizes)
        return self.folder

    def need(self, what: str, value: str | None) -> str:
        if not value:
            raise SystemExit(f"{what} is not set: run through bench/feature_store/run.sh, or pass it explicitly")
        return value

    def ours(self, task: str, params: dict[str, Any], name: str) -> ChildResult:
        out = self.work / f"{name}.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "_child", task, "--params", json.dumps(params)]
        argv += ["--out", str(out)]
        return self._run(argv, out, name)

    def feast(self, task: str, options: list[str], name: str, timeout: float | None = None) -> ChildResult:
        if self.args.no_feast:
            return ChildResult(False, {}, "skipped (--no-feast)", 0.0, None)
        if not self.args.feast_python.exists():
            return ChildResult(False, {}, f"no Feast environment at {self.args.feast_python}", 0.0, None)
        out, workdir = self.work / f"{name}.json", self.work / name
        argv = [str(self.args.feast_python), "-m", "fsbench.feast_side", task, "--data", str(self.data())]
        argv += ["--workdir", str(workdir), "--out", str(out), *options]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        return self._run(argv, out, name, env=env, timeout=timeout)

    def _run(
        self, argv: list[str], out: Path, name: str, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> ChildResult:
        print(f"-- {name} ...", flush=True)
        result = run_child(
            argv,
            out,
            env=env,
            cwd=HERE,
            timeout_s=timeout or self.args.timeout,
            rss_limit_mb=self.args.rss_guard_mb,
            log_path=self.work / f"{name}.log",
        )
        status = "ok" if result.ok else f"FAILED: {result.error}"
        print(f"   {name}: {status} ({result.wall_s:.1f} s, peak tree RSS {result.peak_rss_mb or 0:.0f} MiB)")
        return result

    def keyspace(self, side: str) -> str:
        name = f"bench_{side}_{uuid.uuid4().hex[:10]}"
        self.keyspaces.append(name)
        return name

    def cleanup(self) -> None:
        """Drop every keyspace this run named (a side killed by a guard could not drop its own) and the run's store
        files (SQLite databases, the stream's offline store); its logs and JSON results stay."""
        import shutil

        for path in self.work.rglob("*.db*"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.work / "stream" / "stream_offline", ignore_errors=True)
        if not self.keyspaces or not self.args.cassandra_hosts:
            return
        from cassandra.cluster import Cluster
        from fsbench.ours import split_hosts

        hosts, port = split_hosts(self.args.cassandra_hosts)
        cluster = Cluster(hosts, port=port)
        try:
            session = cluster.connect()
            for name in self.keyspaces:
                session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)
        finally:
            cluster.shutdown()

    # --- the benchmarks -------------------------------------------------------------------------------------------

    def online(self) -> dict[str, Any]:
        sizes, out = self.sizes, {}
        for store in [s.strip() for s in self.args.stores.split(",") if s.strip()]:
            hosts = (
                self.need("BOTTEGA_TEST_CASSANDRA_HOSTS", self.args.cassandra_hosts) if store == "cassandra" else None
            )
            common = {"entities": sizes.online_entities, "reads": sizes.reads, "warmup": sizes.warmup_reads}
            params = {**common, "data": str(self.data()), "store": store, "workdir": str(self.work)}
            params.update({"cassandra_hosts": hosts, "keyspace": self.keyspace("b")})
            ours = self.ours("online", params, f"online-{store}-bottega")
            options = ["--store", store, "--entities", str(sizes.online_entities), "--reads", str(sizes.reads)]
            options += ["--warmup", str(sizes.warmup_reads)]
            if hosts:
                options += ["--cassandra-hosts", hosts, "--keyspace", self.keyspace("f")]
            feast = self.feast("online", options, f"online-{store}-feast")
            entry: dict[str, Any] = {"bottega": _side(ours), "feast": _side(feast)}
            if ours.ok and feast.ok:
                b, f = ours.data["latency"], feast.data["latency"]
                entry["ratio_p50"] = f["p50_us"] / b["p50_us"]
                entry["ratio_p99"] = f["p99_us"] / b["p99_us"]
            out[store] = entry
        return out

    def training(self) -> dict[str, Any]:
        root = self.args.data / "offline" / self.sizes.tag()
        params = {"data": str(self.data()), "root": str(root), "files": {g: f"history_{g}.parquet" for g in GROUPS}}
        prepared = self.ours("prepare", params, "training-prepare")
        if not prepared.ok:
            return {"error": f"preparing the offline store failed: {prepared.error}"}
        ours = self.ours("training", {"data": str(self.data()), "root": str(root)}, "training-bottega")
        out: dict[str, Any] = {"bottega": _side(ours), "label_rows": self.sizes.labels}
        for offline in [s.strip() for s in self.args.feast_offline.split(",") if s.strip()]:
            timeout = self.args.feast_file_timeout if offline == "file" else None
            feast = self.feast("training", ["--offline", offline], f"training-feast-{offline}", timeout=timeout)
            entry: dict[str, Any] = {"feast": _side(feast)}
            if ours.ok and feast.ok:
                entry["ratio_seconds"] = feast.data["seconds"] / ours.data["seconds"]
                entry["checksums_match"] = _compare(ours.data["checksums"], feast.data["checksums"])
            out[f"feast_{offline}"] = entry
        return out

    def materialize(self) -> dict[str, Any]:
        hosts = self.need("BOTTEGA_TEST_CASSANDRA_HOSTS", self.args.cassandra_hosts)
        root = self.args.data / "offline" / self.sizes.tag()
        params = {"data": str(self.data()), "root": str(root), "files": {MATERIALIZE_GROUP: "materialize.parquet"}}
        prepared = self.ours("prepare", params, "materialize-prepare")
        if not prepared.ok:
            return {"error": f"preparing the offline store failed: {prepared.error}"}
        params = {"data": str(self.data()), "root": str(root), "cassandra_hosts": hosts}
        ours = self.ours("materialize", {**params, "keyspace": self.keyspace("b")}, "materialize-bottega")
        options = ["--offline", "duckdb", "--cassandra-hosts", hosts, "--keyspace", self.keyspace("f")]
        feast = self.feast("materialize", options, "materialize-feast")
        out: dict[str, Any] = {"rows": self.sizes.materialize_rows, "bottega": _side(ours), "feast": _side(feast)}
        if ours.ok and feast.ok:
            out["ratio_rows_per_s"] = ours.data["rows_per_s"] / feast.data["rows_per_s"]
        return out

    def stream(self) -> dict[str, Any]:
        store = self.args.stream_store
        params: dict[str, Any] = {
            "bootstrap": self.need("BOTTEGA_TEST_KAFKA_BOOTSTRAP", self.args.kafka_bootstrap),
            "store": store,
            "workdir": str(self.work / "stream"),
            "rate": self.sizes.stream_rate,
            "seconds": self.sizes.stream_seconds,
            "entities": self.sizes.stream_entities,
            "probes": self.sizes.stream_probes,
            "batch_size": self.args.stream_batch,
            "idle_timeout_s": 5.0,
        }
        if self.args.stream_workers:
            params["workers"] = self.args.stream_workers
        if store == "cassandra":
            params["cassandra_hosts"] = self.need("BOTTEGA_TEST_CASSANDRA_HOSTS", self.args.cassandra_hosts)
            params["keyspace"] = self.keyspace("s")
        Path(params["workdir"]).mkdir(parents=True, exist_ok=True)
        result = self.ours("stream", params, "stream-bottega")
        return {"bottega": _side(result)}


def _side(result: ChildResult) -> dict[str, Any]:
    data = {k: v for k, v in result.data.items() if k not in ("traceback", "checksums")}
    if not result.ok:
        data["error"] = result.error
    data["watched_peak_rss_mb"] = result.peak_rss_mb
    return data


def _compare(ours: dict[str, Any], feast: dict[str, Any]) -> dict[str, Any]:
    """Do both sides agree on every feature's non-null count and sum (relative 1e-9)?"""
    differences: dict[str, Any] = {}
    for ref, mine in ours.items():
        theirs = feast.get(ref)
        if theirs is None:
            differences[ref] = "absent on the Feast side"
            continue
        same_count = mine["non_null"] == theirs["non_null"]
        same_sum = abs(mine["sum"] - theirs["sum"]) <= 1e-9 * max(1.0, abs(mine["sum"]))
        if not (same_count and same_sum):
            differences[ref] = {"bottega": mine, "feast": theirs}
    return {"all_equal": not differences, "differences": differences}


def child(argv: list[str]) -> None:
    """A Bottega-side benchmark process: `runner.py _child TASK --params JSON --out FILE`."""
    from fsbench import ours

    parser = argparse.ArgumentParser()
    parser.add_argument("task")
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    p = json.loads(args.params)
    try:
        result = _child_task(args.task, p, ours)
    except Exception as exc:  # report it to the runner, which records the failure and goes on
        import traceback

        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    write_result(args.out, result)


def _child_task(task: str, p: dict[str, Any], ours: Any) -> dict[str, Any]:
    if task == "online":
        return dict(
            ours.bench_online(
                Path(p["data"]),
                p["store"],
                Path(p["workdir"]),
                entities=p["entities"],
                reads=p["reads"],
                warmup=p["warmup"],
                cassandra_hosts=p.get("cassandra_hosts"),
                keyspace=p.get("keyspace"),
            )
        )
    if task == "prepare":
        return dict(ours.prepare_offline(Path(p["data"]), Path(p["root"]), p["files"]))
    if task == "training":
        return dict(ours.bench_training(Path(p["data"]), Path(p["root"])))
    if task == "materialize":
        return dict(ours.bench_materialize(Path(p["data"]), Path(p["root"]), p["cassandra_hosts"], p["keyspace"]))
    if task == "stream":
        return _stream(p)
    if task == "stream-processor":
        from fsbench.stream import run_processor

        return run_processor(p)
    raise SystemExit(f"unknown child task {task!r}")


def _stream(p: dict[str, Any]) -> dict[str, Any]:
    """The streaming benchmark's parent side; the processor runs as a child of this process."""
    import subprocess

    from fsbench.stream import bench_stream

    out = Path(p["workdir"]) / "processor.json"

    def start(params: dict[str, Any]) -> Any:
        argv = [sys.executable, str(Path(__file__).resolve()), "_child", "stream-processor"]
        log = open(Path(p["workdir"]) / "processor.log", "w")  # noqa: SIM115 - the child owns it until it ends
        return subprocess.Popen([*argv, "--params", json.dumps(params), "--out", str(out)], stdout=log, stderr=log)

    def finish(proc: Any) -> dict[str, Any]:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"error": "the processor did not stop within 120 s of the end"}
        return dict(json.loads(out.read_text())) if out.exists() else {"error": "the processor wrote no result"}

    return bench_stream(p, start, finish)


def report(bench: str, result: dict[str, Any]) -> None:
    print(f"\n== {bench} ==")
    print(json.dumps(result, indent=2, default=str))


def main(argv: list[str]) -> None:
    if argv[:1] == ["_child"]:
        child(argv[1:])
        return
    args = parse(argv)
    runner = Runner(args, argv)
    benches = BENCHES if args.bench == "all" else (args.bench,)
    results: dict[str, Any] = {"command": runner.command, "sizes": dataclasses.asdict(runner.sizes)}
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    try:
        for bench in benches:
            started = time.perf_counter()
            results[bench] = getattr(runner, bench)()
            results[bench]["wall_s"] = time.perf_counter() - started
            report(bench, results[bench])
    finally:
        runner.cleanup()
    results["machine"]["load_avg_end"] = os.getloadavg()
    saved = args.data.parent / "results" / f"feature_store-{args.bench}-{runner.run_id}.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    write_result(saved, results)
    print(f"\nresults: {saved}\nreproduce: {runner.command}")


if __name__ == "__main__":
    main(sys.argv[1:])
