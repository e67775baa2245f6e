"""`bottega jobs ...` (job types, runs, schedules) and `bottega worker` (the function `worker`, registered by main)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from bottega.cli.common import client, done, emit, fail, state
from bottega.cli.errors import FAILURE

app = typer.Typer(help="Platform jobs: job types, runs and cron schedules.", no_args_is_help=True)
RUN_COLUMNS = ["id", "job_type", "status", "schedule", "attempt", "worker", "created_at", "finished_at", "error"]
SCHEDULE_COLUMNS = ["name", "job_type", "cron", "enabled", "next_run_at", "params"]
RUN_FIELDS = [
    "id", "project", "job_type", "params", "status", "cancel_requested", "schedule", "scheduled_for", "attempt",
    "worker", "created_by", "created_at", "started_at", "finished_at", "heartbeat_at", "result", "error",
]  # fmt: skip
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (VALUE parsed as JSON when it can be); repeat")
]
ParamsOption = Annotated[str | None, typer.Option("--params", help="params as one JSON object")]


def parse_params(pairs: list[str] | None, raw: str | None) -> dict[str, Any]:
    """`--params '{...}'` merged with `--param key=value` pairs (values parsed as JSON, else kept as text)."""
    params: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--params") from exc
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--params")
        params.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@app.command("types")
def job_types(ctx: typer.Context) -> None:
    """The job types the server accepts."""
    with client(ctx) as sdk:
        types = sdk.jobs.job_types()
    if state(ctx).as_json:
        emit(ctx, types)
        return
    rows = [{"name": t.name, "description": t.description, "params": _params_line(t.params_schema)} for t in types]
    emit(ctx, rows, ["name", "description", "params"], "job types")


def _params_line(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parts = []
    for name, spec in properties.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        default = f"={spec['default']}" if isinstance(spec, dict) and "default" in spec else ""
        parts.append(f"{name}:{kind}{default}{'' if name not in required else ' (required)'}")
    if schema.get("additionalProperties") is True or (not properties and schema.get("additionalProperties") is None):
        parts.append("any keys")
    return ", ".join(parts)


def _show_run(ctx: typer.Context, run: Any) -> None:
    emit(ctx, run, RUN_FIELDS if not state(ctx).as_json else None)
    if not state(ctx).as_json:
        console = Console()
        console.rule("log tail")
        console.print(run.log_tail or "(empty)", markup=False, highlight=False)


@app.command("submit")
def submit(
    ctx: typer.Context,
    project: str,
    job_type: str,
    param: ParamOption = None,
    params: ParamsOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until it finished; exit 1 unless it succeeded")] = False,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")] = None,
) -> None:
    """Queue a run of JOB_TYPE in PROJECT."""
    values = parse_params(param, params)
    with client(ctx) as sdk:
        run = sdk.jobs.submit(project, job_type, values)
        if not wait:
            done(ctx, f"queued {job_type} run {run.id}", run)
            return
        final = _wait(sdk, project, run.id, timeout)
    _finish(ctx, final)


def _wait(sdk: Any, project: str, run_id: str, timeout: float | None) -> Any:
    try:
        return sdk.jobs.wait(project, run_id, timeout)
    except TimeoutError as exc:
        raise fail(str(exc)) from exc


def _finish(ctx: typer.Context, run: Any) -> None:
    _show_run(ctx, run)
    if run.status != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    project: str,
    status: Annotated[
        str | None, typer.Option(help="queued, running, cancelling, succeeded, failed, cancelled")
    ] = None,
    job_type: Annotated[str | None, typer.Option("--job-type")] = None,
    schedule: Annotated[str | None, typer.Option(help="runs queued by this schedule")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Runs of PROJECT, newest first."""
    with client(ctx) as sdk:
        page = sdk.jobs.list(project, status=status, job_type=job_type, schedule=schedule, limit=limit, offset=offset)
    emit(ctx, page, RUN_COLUMNS, f"job runs of {project}")


@app.command("get")
def get_run(ctx: typer.Context, project: str, run_id: str) -> None:
    """One run, with its log tail."""
    with client(ctx) as sdk:
        run = sdk.jobs.get(project, run_id)
    _show_run(ctx, run)


@app.command("cancel")
def cancel_run(ctx: typer.Context, project: str, run_id: str) -> None:
    """Cancel a queued run, or ask the worker to stop a running one."""
    with client(ctx) as sdk:
        run = sdk.jobs.cancel(project, run_id)
    message = f"cancelled run {run_id}" if run.status == "cancelled" else f"asked the worker to stop run {run_id}"
    done(ctx, message, run)


@app.command("wait")
def wait_run(
    ctx: typer.Context,
    project: str,
    run_id: str,
    timeout: Annotated[float | None, typer.Option(help="give up after this many seconds (exit 2)")] = None,
) -> None:
    """Wait until a run finished; exit 1 unless it succeeded."""
    with client(ctx) as sdk:
        final = _wait(sdk, project, run_id, timeout)
    _finish(ctx, final)


@app.command("schedules")
def list_schedules(
    ctx: typer.Context,
    project: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--paused", help="filter by state")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Cron schedules of PROJECT."""
    with client(ctx) as sdk:
        page = sdk.jobs.list_schedules(project, enabled=enabled, limit=limit, offset=offset)
    emit(ctx, page, SCHEDULE_COLUMNS, f"job schedules of {project}")


@app.command("schedule")
def create_schedule(
    ctx: typer.Context,
    project: str,
    name: str,
    job_type: str,
    cron: Annotated[str, typer.Option(help="UTC; 5 fields, or 6 with seconds first; or @hourly, @daily, ...")],
    param: ParamOption = None,
    params: ParamsOption = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it disabled")] = False,
) -> None:
    """Run JOB_TYPE in PROJECT on a cron schedule called NAME."""
    values = parse_params(param, params)
    with client(ctx) as sdk:
        schedule = sdk.jobs.create_schedule(project, name, job_type, cron, values, enabled=not paused)
    when = f"next at {schedule.next_run_at:%Y-%m-%d %H:%M:%S} UTC" if schedule.next_run_at else "paused"
    done(ctx, f"scheduled {name} ({job_type}, {schedule.cron}); {when}", schedule)


@app.command("show-schedule")
def get_schedule(ctx: typer.Context, project: str, name: str) -> None:
    """One schedule with its next occurrence and recent runs."""
    with client(ctx) as sdk:
        schedule = sdk.jobs.get_schedule(project, name)
    if state(ctx).as_json:
        emit(ctx, schedule)
        return
    emit(ctx, schedule, [*SCHEDULE_COLUMNS, "created_by", "created_at", "updated_at"])
    emit(ctx, schedule.recent_runs, RUN_COLUMNS, "recent runs")


@app.command("unschedule")
def delete_schedule(
    ctx: typer.Context, project: str, name: str, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False
) -> None:
    """Delete a schedule (owners); its past runs stay."""
    if not yes:
        typer.confirm(f"Delete schedule {name} of {project}?", abort=True)
    with client(ctx) as sdk:
        sdk.jobs.delete_schedule(project, name)
    done(ctx, f"deleted schedule {name}")


@app.command("pause")
def pause(ctx: typer.Context, project: str, name: str) -> None:
    """Stop a schedule from queueing runs (it keeps its settings)."""
    with client(ctx) as sdk:
        done(ctx, f"paused schedule {name}", sdk.jobs.update_schedule(project, name, enabled=False))


@app.command("resume")
def resume(ctx: typer.Context, project: str, name: str) -> None:
    """Resume a paused schedule from its next occurrence (missed ones are not caught up)."""
    with client(ctx) as sdk:
        schedule = sdk.jobs.update_schedule(project, name, enabled=True)
    done(ctx, f"resumed schedule {name}; next at {schedule.next_run_at}", schedule)


@app.command("update-schedule")
def update_schedule(
    ctx: typer.Context,
    project: str,
    name: str,
    cron: Annotated[str | None, typer.Option(help="a new cron expression")] = None,
    param: ParamOption = None,
    params: ParamsOption = None,
) -> None:
    """Change a schedule's cron and/or params (params given replace the old ones as a whole)."""
    values = parse_params(param, params) if (param or params) else None
    with client(ctx) as sdk:
        done(ctx, f"updated schedule {name}", sdk.jobs.update_schedule(project, name, cron=cron, params=values))


def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="process at most one run, then exit")] = False,
    poll_interval: Annotated[float, typer.Option("--poll-interval", help="seconds between claims when idle")] = 2.0,
    job_type: Annotated[
        list[str] | None, typer.Option("--job-type", help="only these job types (repeat); default: all known")
    ] = None,
    name: Annotated[str | None, typer.Option(help="worker name (default host:pid)")] = None,
) -> None:
    """Run platform jobs: claim queued runs from the API and execute them (needs an admin key:
    `bottega keys create --admin`). Ctrl-C finishes the current run; a second Ctrl-C (or SIGTERM) abandons it,
    handing it back to the queue."""
    from bottega.api.jobs.types import JobTypeRegistry
    from bottega.api.jobs.worker import Worker
    from bottega.sdk import Client

    st = state(ctx)
    console = Console(stderr=True)
    registry = JobTypeRegistry.discover()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    for chatty in ("httpx", "httpcore"):  # one line per heartbeat would flood the console and the runs' log tails
        logging.getLogger(chatty).setLevel(logging.WARNING)
    echo = logging.StreamHandler(sys.stderr)
    echo.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    with client(ctx) as sdk:
        try:
            runner = Worker(
                sdk.jobs,
                registry,
                name=name,
                job_types=job_type,
                poll_interval_s=poll_interval,
                client_factory=lambda: Client(st.url, st.token),
                capture_output=True,
                echo=echo,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--job-type") from exc
        console.print(f"worker {runner.name}: job types {', '.join(runner.job_types)}", highlight=False, markup=False)
        try:
            processed = _supervise(runner, once, console)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the API: {exc}", FAILURE) from exc
    last = runner.last
    if once and processed == 0:
        done(ctx, "no queued run to process", {"processed": 0})
    elif last is not None:
        done(ctx, f"run {last.run_id} ({last.job_type}) {last.status}", {"processed": processed, **vars(last)})


def _supervise(runner: Any, once: bool, console: Console) -> int:
    """Run the worker in a thread; the main thread turns Ctrl-C / SIGTERM into a drain, then an abandon."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            outcome["processed"] = runner.run(once=once)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        runner.stop(abandon=True)

    previous = signal.signal(signal.SIGTERM, on_term)
    # A process started in the background inherits SIGINT as ignored; `kill -INT` must still drain the worker.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=target, name="bottega-worker", daemon=True).start()
    try:
        while not finished.is_set():
            try:
                # time.sleep, not Thread.join: a join interrupted by Ctrl-C can leave the thread looking finished
                time.sleep(0.2)
            except KeyboardInterrupt:
                if not runner.stopping:
                    console.print(
                        "stopping after the current run; Ctrl-C again to abandon it", highlight=False, markup=False
                    )
                    runner.stop()
                else:
                    console.print(
                        "abandoning the current run (it goes back to the queue)", highlight=False, markup=False
                    )
                    runner.stop(abandon=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if "error" in outcome:
        raise outcome["error"]
    return int(outcome.get("processed", 0))
