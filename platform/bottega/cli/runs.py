"""`bottega runs ...`: experiment tracking from the shell (runs, params, metrics, tags, artifacts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from bottega.cli.common import client, done, emit, state

app = typer.Typer(help="Runs: experiment tracking with params, metrics, tags and artifacts.", no_args_is_help=True)
RUN_COLUMNS = ["id", "name", "status", "created_by", "start_time", "metrics"]
ARTIFACT_COLUMNS = ["path", "size", "sha256", "created_at"]
Project = Annotated[str, typer.Argument(help="the project")]
RunId = Annotated[str, typer.Argument(help="the run id")]


def _pairs(values: list[str] | None, what: str, sep: str = "=") -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in values or []:
        key, found, value = raw.partition(sep)
        if not found or not key:
            raise typer.BadParameter(f"{raw!r} is not KEY{sep}VALUE", param_hint=what)
        out[key] = value
    return out


def _row(run: Any) -> dict[str, Any]:
    data: dict[str, Any] = run.model_dump(mode="json")
    data["metrics"] = ", ".join(f"{k}={v['value']:.6g}" for k, v in data["metrics"].items())
    return data


@contextmanager
def _bar(description: str, enabled: bool) -> Iterator[Any]:
    """A rich transfer bar; yields a `progress(done, total)` callback (a no-op with --json)."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(completed: int, total: int) -> None:
            bar.update(task, completed=completed, total=total if total >= 0 else None)

        yield update


@app.command("create")
def create_run(
    ctx: typer.Context,
    project: Project,
    name: Annotated[str, typer.Option(help="a name for the run")] = "",
    description: str = "",
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    parent: Annotated[str | None, typer.Option(help="the parent run id")] = None,
) -> None:
    """Start a run (status running); prints its id."""
    params, tags = _pairs(param, "--param"), _pairs(tag, "--tag")
    with client(ctx) as sdk:
        run = sdk.runs.create(project, name, description=description, params=params, tags=tags, parent_run_id=parent)
    done(ctx, f"created run {run.id} in {project}", run)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    project: Project,
    status: Annotated[str | None, typer.Option(help="running, finished, failed or killed")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY:VALUE, repeatable")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY:VALUE, repeatable")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="e.g. 'auc>=0.9' (latest value), repeatable")] = None,
    name: Annotated[str | None, typer.Option(help="substring of the name")] = None,
    parent: Annotated[str | None, typer.Option(help="children of this run")] = None,
    order_by: Annotated[str | None, typer.Option(help="start_time, name, metrics.<key>; '-' descends")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Search the runs of a project."""
    with client(ctx) as sdk:
        page = sdk.runs.list(
            project,
            status=status,
            tags=_pairs(tag, "--tag", ":"),
            params=_pairs(param, "--param", ":"),
            metrics=metric,
            name=name,
            parent_run_id=parent,
            order_by=order_by,
            limit=limit,
            offset=offset,
        )
    if state(ctx).as_json:
        emit(ctx, page)
        return
    emit(ctx, [_row(run) for run in page.items], RUN_COLUMNS, f"runs of {project} ({page.total} in all)")


@app.command("get")
def get_run(ctx: typer.Context, project: Project, run_id: RunId) -> None:
    """A run with its params, tags, latest metrics and artifacts."""
    with client(ctx) as sdk:
        run = sdk.runs.get(project, run_id)
    if state(ctx).as_json:
        emit(ctx, run)
        return
    emit(ctx, run, ["id", "name", "status", "description", "parent_run_id", "created_by", "start_time", "end_time"])
    console = Console()
    for title, values in (("params", run.params), ("tags", run.tags)):
        if values:
            table = Table("key", "value", title=title)
            for key, value in values.items():
                table.add_row(key, value)
            console.print(table)
    if run.metrics:
        table = Table("key", "value", "step", "timestamp", title="metrics (latest)")
        for key, m in run.metrics.items():
            table.add_row(key, f"{m.value:.6g}", str(m.step), m.timestamp.isoformat())
        console.print(table)
    if run.artifacts.count:
        console.print(f"{run.artifacts.count} artifacts, {run.artifacts.total_size} bytes")


@app.command("log-param")
def log_param(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    params: Annotated[list[str], typer.Argument(help="KEY=VALUE ...")],
) -> None:
    """Log params (immutable: logging a key again with another value fails)."""
    values = _pairs(params, "PARAMS")
    with client(ctx) as sdk:
        run = sdk.runs.log_params(project, run_id, values)
    done(ctx, f"logged {len(values)} params on run {run_id}", run)


@app.command("log-metric")
def log_metric(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    key: str,
    value: float,
    step: Annotated[int, typer.Option(help="the step (epoch, iteration)")] = 0,
) -> None:
    """Log one metric value at a step."""
    with client(ctx) as sdk:
        sdk.runs.log_metric(project, run_id, key, value, step=step)
    done(ctx, f"logged {key}={value:g} at step {step} on run {run_id}", {"key": key, "value": value, "step": step})


@app.command("metric")
def metric_history(ctx: typer.Context, project: Project, run_id: RunId, key: str) -> None:
    """The full series of a metric, by step."""
    with client(ctx) as sdk:
        emit(ctx, sdk.runs.metric_history(project, run_id, key), ["step", "value", "timestamp"], key)


@app.command("tag")
def tag_run(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    tags: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE ...")] = None,
    delete: Annotated[list[str] | None, typer.Option("--delete", help="remove this tag, repeatable")] = None,
) -> None:
    """Set (merge) tags on a run, or remove some with --delete."""
    values = _pairs(tags, "TAGS")
    if not values and not delete:
        raise typer.BadParameter("give KEY=VALUE tags to set or --delete KEY")
    with client(ctx) as sdk:
        if values:
            sdk.runs.set_tags(project, run_id, values)
        for key in delete or []:
            sdk.runs.delete_tag(project, run_id, key)
        run = sdk.runs.get(project, run_id)
    done(ctx, f"run {run_id} tags: {run.tags}", run)


@app.command("finish")
def finish_run(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    status: Annotated[str, typer.Option(help="finished, failed or killed")] = "finished",
) -> None:
    """End a run."""
    with client(ctx) as sdk:
        run = sdk.runs.finish(project, run_id, status)
    done(ctx, f"run {run_id} is {run.status.value}", run)


@app.command("delete")
def delete_run(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete a run with its params, metrics, tags and artifact records (owners only)."""
    if not yes:
        typer.confirm(f"Delete run {run_id} of {project}?", abort=True)
    with client(ctx) as sdk:
        sdk.runs.delete(project, run_id)
    done(ctx, f"deleted run {run_id}")


@app.command("compare")
def compare_runs(ctx: typer.Context, project: Project, run_ids: Annotated[list[str], typer.Argument()]) -> None:
    """Params and latest metrics of 2 to 20 runs side by side (differences in bold)."""
    with client(ctx) as sdk:
        result = sdk.runs.compare(project, run_ids)
    if state(ctx).as_json:
        emit(ctx, result)
        return
    table = Table("", *[r.name or r.id[:8] for r in result.runs], title=f"{len(result.runs)} runs of {project}")
    for row in result.params:
        style = "bold" if row.differs else None
        table.add_row(f"param {row.key}", *[v if v is not None else "-" for v in row.values], style=style)
    for metric in result.metrics:
        style = "bold" if metric.differs else None
        cells = [f"{v:.6g}" if v is not None else "-" for v in metric.values]
        table.add_row(f"metric {metric.key}", *cells, style=style)
    Console().print(table)


def _files(local: Path, artifact_path: str | None) -> list[tuple[Path, str]]:
    if local.is_file():
        return [(local, artifact_path or local.name)]
    if not local.is_dir():
        raise typer.BadParameter(f"{local} is neither a file nor a directory", param_hint="LOCAL_PATH")
    prefix = (artifact_path or local.name).strip("/")
    return [(f, f"{prefix}/{f.relative_to(local).as_posix()}") for f in sorted(local.rglob("*")) if f.is_file()]


@app.command("upload")
def upload(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    local_path: Annotated[Path, typer.Argument(help="a file, or a directory to upload every file of")],
    artifact_path: Annotated[str | None, typer.Option("--as", help="the path inside the run")] = None,
) -> None:
    """Upload a file (or a directory) as artifacts of a run, streamed with a progress bar."""
    uploaded = []
    with client(ctx) as sdk:
        for source, target in _files(local_path, artifact_path):
            with _bar(target, not state(ctx).as_json) as progress:
                uploaded.append(sdk.runs.upload_artifact(project, run_id, source, target, progress=progress))
    message = "\n".join(f"uploaded {a.path} ({a.size} bytes, sha256 {a.sha256})" for a in uploaded)
    done(ctx, message or "nothing to upload", uploaded)


@app.command("download")
def download(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    path: Annotated[str, typer.Argument(help="the artifact path")],
    dest: Annotated[Path, typer.Argument(help="a file or a directory")] = Path("."),
) -> None:
    """Download an artifact, verified against its sha256."""
    with client(ctx) as sdk, _bar(path, not state(ctx).as_json) as progress:
        written = sdk.runs.download_artifact(project, run_id, path, dest, progress=progress)
    done(ctx, f"downloaded {path} to {written}", {"path": path, "file": str(written)})


@app.command("artifacts")
def list_artifacts(
    ctx: typer.Context,
    project: Project,
    run_id: RunId,
    prefix: Annotated[str | None, typer.Option(help="only paths under this prefix")] = None,
    limit: int = 500,
    offset: int = 0,
) -> None:
    """The artifacts of a run."""
    with client(ctx) as sdk:
        page = sdk.runs.list_artifacts(project, run_id, prefix=prefix, limit=limit, offset=offset)
    emit(ctx, page, ARTIFACT_COLUMNS, f"artifacts of run {run_id}")
