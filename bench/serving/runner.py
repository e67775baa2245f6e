"""Serving benchmarks: Bottega's prediction service against a bare ONNX Runtime floor and MLflow; run through run.sh:

    bench/serving/run.sh all|floor|bottega|mlflow|deploy [--quick] [--seconds S] [--rounds N] [...]

Every load run is wrk (one thread, pinned to its own CPU) against one server process pinned to the other CPU; the
targets are measured in interleaved rounds (each target once per round) and the medians over rounds are reported, so
the ratios compare sides measured under the same machine load. Results (every round, the medians, the goals, the
reproducing command) are printed and saved as JSON under bench/.data/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from svbench import bottega_side as bs  # noqa: E402 - the folder is put on the path first
from svbench.load import Load, run_load, wrk_path  # noqa: E402
from svbench.model import ModelFiles, ModelSpec, ensure_model, mlflow_bodies, predict_bodies, write_bodies  # noqa: E402
from svbench.procs import free_port, group_cpu_seconds, start, stop, wait_http  # noqa: E402

BENCHES = ("floor", "bottega", "mlflow", "deploy")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/serving/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (short loads, one round)")
    parser.add_argument("--seconds", type=float, help="length of one load run (default 5, quick 1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds over the targets (default 5, quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up load per target before the rounds (default 3 s)")
    parser.add_argument("--concurrency", default="1,8", help="connections to measure at (comma-separated)")
    parser.add_argument("--trees", type=int, default=200, help="boosting rounds of the model (the issue: 200)")
    parser.add_argument("--entities", type=int, help="entities per store feature group (default 10000)")
    parser.add_argument("--deploy-rounds", type=int, help="deploys timed in case (d) (default 5, quick 2)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of each server process")
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list of the load tool")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--load-tool", default="auto", choices=["auto", "wrk", "python"])
    parser.add_argument("--no-mlflow", action="store_true", help="with `all`: leave MLflow out")
    parser.add_argument("--data", type=Path, default=REPO / "bench" / ".data" / "serving")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / ".data" / "results")
    parser.add_argument("--mlflow-python", type=Path, default=REPO / "bench" / ".venv-mlflow" / "bin" / "python")
    parser.add_argument("--cassandra-hosts", default=os.environ.get("BOTTEGA_TEST_CASSANDRA_HOSTS"))
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    bodies: Path
    connections: int
    pgid: int
    """the server's process group, whose CPU time is counted per request."""


class Run:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.command = "bench/serving/run.sh " + " ".join(shlex.quote(a) for a in argv)
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.work = args.data / "runs" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.seconds = args.seconds or (1.0 if args.quick else 5.0)
        self.rounds = args.rounds or (1 if args.quick else 5)
        self.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
        self.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
        self.server_cpus = None if args.no_pin else args.server_cpus
        self.load_cpus = None if args.no_pin else args.load_cpus
        self.sides = set(BENCHES) if args.bench == "all" else {args.bench}
        if args.bench == "all" and args.no_mlflow:
            self.sides.discard("mlflow")
        self.files: ModelFiles = ensure_model(
            args.data, ModelSpec(trees=args.trees, train_rows=2_000 if args.quick else 20_000)
        )
        self.targets: list[Target] = []
        self.state: bs.Stack | None = None
        self.checks: dict[str, Any] = {}
        self.notes: dict[str, Any] = {}

    def bodies(self, name: str, bodies: list[dict[str, Any]]) -> Path:
        return write_bodies(self.work / f"bodies-{name}.jsonl", bodies)

    def add(self, name: str, url: str, bodies: Path, pgid: int) -> None:
        self.targets += [Target(name, url, bodies, c, pgid) for c in self.levels]

    # --- the servers ----------------------------------------------------------------------------------------------
    def floor(self, stack: ExitStack) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "svbench.floor", "--model", str(self.files.onnx), "--port", str(port)]
        argv += ["--features", str(self.files.spec.features)]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        child = start("floor", argv, self.work / "floor.log", env=env, cpus=self.server_cpus)
        stack.callback(stop, child)
        url = f"http://127.0.0.1:{port}/predict"
        wait_http(child, url, timeout=60, ok=(405, 400, 200))
        body = self.bodies("floor", predict_bodies(self.files))
        self.checks["floor"] = check_prediction(url, body, self.reference())
        self.add("floor", url, body, child.process.pid)

    def bottega(self, stack: ExitStack) -> None:
        state = bs.start_api(self.work)
        stack.callback(bs.stop_stack, state)
        cassandra = None
        if "bottega" in self.sides and self.args.cassandra_hosts:
            cassandra = bs.Cassandra(self.args.cassandra_hosts, bs.new_keyspace())
        elif "bottega" in self.sides:
            self.notes["store"] = "case (b) skipped: no Cassandra (BOTTEGA_TEST_CASSANDRA_HOSTS / --cassandra-hosts)"
        entities = self.args.entities or (500 if self.args.quick else 10_000)
        bs.setup(state, self.files, cassandra=cassandra, entities=entities)
        serve = bs.start_serve(state, "log", prediction_log=True, cpus=self.server_cpus)
        plain = self.bodies("bottega", predict_bodies(self.files))
        url = bs.predict_url(serve, bs.PLAIN)
        self.checks["bottega"] = check_prediction(url, plain, self.reference())
        self.state = state
        if "bottega" in self.sides or "mlflow" in self.sides:
            self.add("bottega", url, plain, serve.process.pid)
        if "bottega" not in self.sides:
            return
        nolog = bs.start_serve(state, "nolog", prediction_log=False, cpus=self.server_cpus)
        url = bs.predict_url(nolog, bs.PLAIN)
        self.checks["bottega-nolog"] = check_prediction(url, plain, self.reference())
        self.add("bottega-nolog", url, plain, nolog.process.pid)
        if cassandra is not None:
            rows = bs.store_instances(self.files, entities)
            store = self.bodies("store", [{"instances": [row]} for row in rows])
            url = bs.predict_url(serve, bs.STORE)
            self.checks["bottega-store"] = check_prediction(url, store, self.reference(bs.store_vector(rows[0])))
            self.add("bottega-store", url, store, serve.process.pid)

    def mlflow(self, stack: ExitStack) -> None:
        python = self.args.mlflow_python
        if not python.exists():
            raise SystemExit(f"no MLflow environment at {python}: run through bench/serving/run.sh")
        out = self.work / "mlflow-model.json"
        argv = [str(python), "-m", "svbench.mlflow_side", "--ubj", str(self.files.ubj), "--out", str(out)]
        argv += ["--features", str(self.files.spec.features), "--workdir", str(self.work / "mlflow")]
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        logged = start("mlflow-log", argv, self.work / "mlflow-log.log", env=env)
        if logged.process.wait(timeout=600) != 0:
            raise RuntimeError(f"logging the model with MLflow failed: {logged.tail()}")
        model = json.loads(out.read_text())
        port = free_port()
        mlflow = str(python.parent / "mlflow")
        argv = [mlflow, "models", "serve", "-m", model["model_uri"], "-p", str(port), "--env-manager", "local"]
        argv += ["--workers", "1"]
        env["MLFLOW_TRACKING_URI"] = model["tracking_uri"]
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"  # it runs `uvicorn` from PATH
        child = start("mlflow", argv, self.work / "mlflow.log", env=env, cpus=self.server_cpus)
        stack.callback(stop, child)
        wait_http(child, f"http://127.0.0.1:{port}/ping", timeout=300)
        url = f"http://127.0.0.1:{port}/invocations"
        body = self.bodies("mlflow", mlflow_bodies(self.files))
        self.checks["mlflow"] = check_prediction(url, body, self.reference(), tolerance=1e-5)
        self.notes["mlflow"] = {**model, "workers": 1, "command": " ".join(shlex.quote(a) for a in argv[1:])}
        self.add("mlflow", url, body, child.process.pid)

    def reference(self, vector: list[float] | None = None) -> list[float]:
        """P(class 1) of request row 0 (or of `vector`) from ONNX Runtime in this process."""
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.files.onnx), providers=["CPUExecutionProvider"])
        row = vector if vector is not None else self.files.rows()[0]
        out = session.run(["probabilities"], {"input": np.asarray([row], dtype=np.float32)})[0]
        return [float(out[0, 1])]

    # --- the measurements -----------------------------------------------------------------------------------------
    def measure(self) -> dict[str, Any]:
        """Warm every target up, then measure each once per round; targets are ordered by concurrency so that the
        sides compared at one concurrency run back to back."""
        order = sorted(self.targets, key=lambda t: t.connections)
        for target in order:
            if self.warmup > 0:
                self.once(target, self.warmup)
        runs: dict[str, list[dict[str, Any]]] = {key(t): [] for t in order}
        for number in range(self.rounds):
            for target in order:
                result = self.once(target, self.seconds)
                runs[key(target)].append(result)
                print(f"   round {number + 1}/{self.rounds} {key(target):<22} {line(result)}", flush=True)
        return {name: {"median": medians(results), "runs": results} for name, results in runs.items()}

    def once(self, target: Target, seconds: float) -> dict[str, Any]:
        """One load run, plus the server's CPU time per request over it (its whole process group)."""
        load = Load(target.url, target.bodies, target.connections, seconds, cpus=self.load_cpus)
        before = group_cpu_seconds(target.pgid)
        result = run_load(load, self.work, tool=self.args.load_tool)
        used = group_cpu_seconds(target.pgid) - before
        result["server_cpu_s"] = used
        result["server_cpu_us_per_request"] = 1e6 * used / result["requests"] if result["requests"] else None
        return result

    def deploy(self) -> dict[str, Any]:
        rounds = self.args.deploy_rounds or (2 if self.args.quick else 5)
        assert self.state is not None, "the Bottega side is not running"
        return bs.deploy_latency(self.state, self.state.serves["log"], self.files, rounds)


def key(target: Target) -> str:
    return f"{target.name}@c{target.connections}"


def check_prediction(url: str, bodies: Path, expected: list[float], tolerance: float = 1e-6) -> dict[str, Any]:
    """POST the first body once; the answer must be 200 with predictions equal to `expected` (ONNX Runtime here)."""
    import httpx

    body = bodies.read_text().splitlines()[0]
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    doc = response.json()
    got = [float(p) for p in doc["predictions"]]
    if len(got) != len(expected) or any(abs(a - b) > tolerance for a, b in zip(got, expected, strict=True)):
        raise RuntimeError(f"{url} predicted {got}, ONNX Runtime gives {expected}")
    check: dict[str, Any] = {"prediction": got[0], "expected": expected[0]}
    if "feature_status" in doc:
        check["feature_status"] = sorted({s for row in doc["feature_status"] for s in row.values()})
        check["version"] = response.headers.get("x-bottega-version")
    return check


def line(result: dict[str, Any]) -> str:
    lat, cpu = result["latency_us"], result.get("server_cpu_us_per_request")
    return (
        f"{result['rps']:>9,.0f} req/s  p50 {lat['p50']:>6,.0f} µs  p99 {lat['p99']:>7,.0f} µs  "
        f"server CPU {cpu or 0:>6,.0f} µs/req  errors {result['error_count']}"
    )


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rps": median([r["rps"] for r in results])}
    for q in ("p50", "p90", "p99", "p99.9"):
        out[f"{q}_us"] = median([r["latency_us"][q] for r in results])
    cpu = [r["server_cpu_us_per_request"] for r in results if r.get("server_cpu_us_per_request")]
    out["cpu_us_per_request"] = median(cpu) if cpu else None
    out["errors"] = sum(r["error_count"] for r in results)
    out["requests"] = sum(r["requests"] for r in results)
    out["tool"] = results[0]["tool"] if results else None
    return out


class Goals:
    """The issue's goals from one run's measurements. Ratios are medians over rounds of the ratio within a round
    (the two sides ran back to back), which cancels most of the machine's drifting load."""

    def __init__(self, measured: dict[str, Any]) -> None:
        self.measured = measured
        self.rows: list[dict[str, Any]] = []

    def value(self, name: str, c: int, what: str) -> float | None:
        entry = self.measured.get(f"{name}@c{c}")
        if entry is None or entry["median"].get(what) is None:
            return None
        return float(entry["median"][what])

    def ratio(self, a: str, b: str, c: int, what: str) -> float | None:
        first, second = self.measured.get(f"{a}@c{c}"), self.measured.get(f"{b}@c{c}")
        if first is None or second is None:
            return None
        pairs = zip(first["runs"], second["runs"], strict=False)
        values = [_pick(x, what) / _pick(y, what) for x, y in pairs if _pick(x, what) and _pick(y, what)]
        return median(values) if values else None

    def add(self, what: str, value: float | None, goal: str, met: bool | None, unit: str, ref: str = "") -> None:
        self.rows.append({"measure": what, "value": value, "unit": unit, "reference": ref, "goal": goal, "met": met})


def _pick(result: dict[str, Any], what: str) -> float:
    if what == "rps":
        return float(result["rps"])
    if what == "cpu":
        return float(result.get("server_cpu_us_per_request") or 0.0)
    return float(result["latency_us"][what])


def goals(measured: dict[str, Any], deploy: dict[str, Any] | None, levels: list[int]) -> list[dict[str, Any]]:
    """What was measured for each of the issue's goals, against what, and whether the goal is met."""
    g = Goals(measured)
    _goals_plain(g, levels)
    _goals_store_and_log(g, levels)
    for c in levels:
        if (ratio := g.ratio("bottega", "mlflow", c, "rps")) is not None:
            ref = f"{g.value('bottega', c, 'rps'):,.0f} vs {g.value('mlflow', c, 'rps'):,.0f} req/s (medians)"
            g.add(f"MLflow: req/s Bottega / MLflow c={c}", ratio, ">= 3x", ratio >= 3, "x", ref)
    if deploy is not None:
        worst = deploy.get("max_s")
        ref = f"median {deploy['median_s']:.2f} s" if deploy.get("median_s") is not None else "no round finished"
        g.add("(d) deploy -> first prediction, worst", worst, "<= 5 s", worst is not None and worst <= 5, "s", ref)
    return g.rows


def _goals_plain(g: Goals, levels: list[int]) -> None:
    top = max(levels)
    for c in levels:
        if (ratio := g.ratio("bottega", "floor", c, "p50")) is not None:
            ref = f"{g.value('bottega', c, 'p50_us'):.0f} / {g.value('floor', c, 'p50_us'):.0f} µs (medians)"
            g.add(f"(a) p50 c={c}: Bottega / floor", ratio, "<= 1.5x", ratio <= 1.5, "x", ref)
    if (ratio := g.ratio("bottega", "floor", 1, "cpu")) is not None:
        ours, floor = g.value("bottega", 1, "cpu_us_per_request"), g.value("floor", 1, "cpu_us_per_request")
        g.add(
            "(a) server CPU/request c=1: Bottega / floor",
            ratio,
            "(<= 1.5x)",
            ratio <= 1.5,
            "x",
            f"{ours:.0f} / {floor:.0f} µs",
        )
    if (p99 := g.value("bottega", 1, "p99_us")) is not None:
        ref = f"floor {g.value('floor', 1, 'p99_us') or 0:,.0f} µs"
        g.add("(a) p99 c=1", p99, "<= 1000 µs", p99 <= 1000, "µs", ref)
    if (rps := g.value("bottega", top, "rps")) is not None:
        ref = f"floor {g.value('floor', top, 'rps') or 0:,.0f}"
        g.add(f"(a) req/s per worker c={top}", rps, ">= 8000", rps >= 8000, "req/s", ref)
    if (cpu := g.value("bottega", top, "cpu_us_per_request")) is not None:
        floor_cpu = g.value("floor", top, "cpu_us_per_request")
        ref = f"{cpu:.0f} µs CPU/req" + (f"; floor {1e6 / floor_cpu:,.0f}" if floor_cpu else "")
        g.add(f"(a) req/s per worker from CPU/req c={top}", 1e6 / cpu, "(>= 8000)", cpu <= 125, "req/s", ref)


def _goals_store_and_log(g: Goals, levels: list[int]) -> None:
    top = max(levels)
    if (p99 := g.value("bottega-store", top, "p99_us")) is not None:
        ref = f"p50 {g.value('bottega-store', top, 'p50_us'):.0f} µs"
        g.add(f"(b) p99 c={top}, 10 store features", p99, "<= 3000 µs", p99 <= 3000, "µs", ref)
    for c in levels:
        if (ratio := g.ratio("bottega", "bottega-nolog", c, "rps")) is not None:
            ref = f"{g.value('bottega', c, 'rps'):,.0f} vs {g.value('bottega-nolog', c, 'rps'):,.0f} req/s (medians)"
            g.add(f"(c) prediction-log cost c={c}", 100 * (1 - ratio), "<= 10%", ratio >= 0.9, "% of req/s", ref)
    if (ratio := g.ratio("bottega-nolog", "bottega", top, "cpu")) is not None:
        on, off = g.value("bottega", top, "cpu_us_per_request"), g.value("bottega-nolog", top, "cpu_us_per_request")
        ref = f"{on:.0f} vs {off:.0f} µs CPU/req"
        g.add(f"(c) prediction-log cost from CPU/req c={top}", 100 * (1 - ratio), "(<= 10%)", ratio >= 0.9, "%", ref)


def print_tables(measured: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'target':<24}{'req/s':>10}{'p50 µs':>9}{'p90 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}"
        f"{'CPU µs/req':>12}{'errors':>8}"
    )
    for name, entry in measured.items():
        m = entry["median"]
        print(
            f"{name:<24}{m['rps']:>10,.0f}{m['p50_us']:>9,.0f}{m['p90_us']:>9,.0f}{m['p99_us']:>9,.0f}"
            f"{m['p99.9_us']:>10,.0f}{m['cpu_us_per_request'] or 0:>12,.0f}{m['errors']:>8}"
        )
    print(f"\n{'goal':<50}{'measured':>18}  {'goal':<12}{'met':<5}reference")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:,.2f} {row['unit']}"
        met = {True: "yes", False: "no", None: "?"}[row["met"]]
        print(f"{row['measure']:<50}{value:>18}  {row['goal']:<12}{met:<5}{row['reference']}")


def run(argv: list[str]) -> dict[str, Any]:
    """Run the benchmarks `argv` asks for; returns (and saves) the results."""
    args = parse(argv)
    if args.load_tool != "python" and wrk_path() is None:
        print("wrk is not installed (apt-get install -y wrk): measuring with the slower Python client", flush=True)
    bench = Run(args, argv)
    results: dict[str, Any] = {"command": bench.command, "sides": sorted(bench.sides), "model": vars(bench.files.spec)}
    results["settings"] = {"seconds": bench.seconds, "rounds": bench.rounds, "warmup_s": bench.warmup}
    results["settings"].update({"server_cpus": bench.server_cpus, "load_cpus": bench.load_cpus})
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    deploy = None
    with ExitStack() as stack:
        if bench.sides & {"floor", "bottega"}:
            bench.floor(stack)
        if bench.sides & {"bottega", "mlflow", "deploy"}:
            bench.bottega(stack)
        if "mlflow" in bench.sides:
            bench.mlflow(stack)
        results["checks"] = bench.checks
        print(f"-- checks: {json.dumps(bench.checks)}", flush=True)
        measured = bench.measure() if bench.targets and bench.sides != {"deploy"} else {}
        if "deploy" in bench.sides:
            deploy = bench.deploy()
            print(f"-- deploy: {json.dumps(deploy)}", flush=True)
    results.update({"measured": measured, "deploy": deploy, "notes": bench.notes})
    results["goals"] = goals(measured, deploy, bench.levels)
    results["machine"]["load_avg_end"] = os.getloadavg()
    print_tables(measured, results["goals"])
    args.results.mkdir(parents=True, exist_ok=True)
    saved = args.results / f"serving-{args.bench}-{bench.run_id}.json"
    saved.write_text(json.dumps(results, indent=2, default=str))
    shutil.rmtree(bench.work / "serve-log" / "serving" / "spool", ignore_errors=True)
    print(f"\nresults: {saved}\nreproduce: {bench.command}")
    return results


if __name__ == "__main__":
    run(sys.argv[1:])
