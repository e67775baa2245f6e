"""`bottega models ...`: the model DB (models, immutable versions, artifacts, aliases)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from bottega.cli import evaluations
from bottega.cli.common import client, done, emit, fail, state
from bottega.cli.errors import FAILURE

app = typer.Typer(help="The model DB: models, immutable versions, artifacts and aliases.", no_args_is_help=True)
MODEL_COLUMNS = ["name", "description", "latest_version", "aliases", "tags", "updated_at"]
VERSION_COLUMNS = ["version", "flavor", "aliases", "metrics", "run_id", "created_by", "created_at", "description"]
ProjectArg = Annotated[str, typer.Argument(help="project name")]
ModelArg = Annotated[str, typer.Argument(help="model name")]
VersionArg = Annotated[str, typer.Argument(help="version number, alias, or `latest`")]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {item!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _json_arg(value: str | None, what: str) -> Any:
    """Inline JSON, or `@file` / a path to a JSON file."""
    if value is None:
        return None
    text = value
    path = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or (not value.lstrip().startswith(("{", "[")) and path.is_file()):
        try:
            text = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"{what}: cannot read {path}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc


@contextmanager
def _progress(ctx: typer.Context, label: str, show: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A rich transfer bar on stderr (none with --json), as an SDK progress callback."""
    if state(ctx).as_json or not show:
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
        task = bar.add_task(label, total=None)

        def update(done_bytes: int, total: int) -> None:
            bar.update(task, completed=done_bytes, total=total)

        yield update


@app.command("create")
def create_model(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    description: str = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE; repeat for several")] = None,
) -> None:
    """Create a model (an empty home for versions)."""
    with client(ctx) as sdk:
        model = sdk.models.create(project, name, description, _pairs(tag, "tag"))
    done(ctx, f"created model {project}/{model.name}", model)


@app.command("list")
def list_models(
    ctx: typer.Context,
    project: ProjectArg,
    q: Annotated[str | None, typer.Option(help="a substring of the name")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE that must match; repeat for several")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Models of a project."""
    with client(ctx) as sdk:
        page = sdk.models.list(project, q=q, tags=_pairs(tag, "tag"), limit=limit, offset=offset)
    emit(ctx, page, MODEL_COLUMNS, f"models of {project}")


@app.command("get")
def get_model(ctx: typer.Context, project: ProjectArg, name: ModelArg) -> None:
    """One model, with its latest version number and aliases."""
    with client(ctx) as sdk:
        emit(ctx, sdk.models.get(project, name))


@app.command("update")
def update_model(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    description: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE to set; repeat for several")] = None,
    untag: Annotated[list[str] | None, typer.Option(help="KEY to remove; repeat for several")] = None,
) -> None:
    """Change a model's description or tags."""
    tags: dict[str, str | None] = {**_pairs(tag, "tag"), **dict.fromkeys(untag or [])}
    with client(ctx) as sdk:
        model = sdk.models.update(project, name, description=description, tags=tags or None)
    done(ctx, f"updated model {project}/{name}", model)


@app.command("delete")
def delete_model(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete a model and all its versions (owners; refused while it has aliases)."""
    if not yes:
        typer.confirm(f"Delete model {project}/{name} and every version of it?", abort=True)
    with client(ctx) as sdk:
        sdk.models.delete(project, name)
    done(ctx, f"deleted model {project}/{name}")


@app.command("versions")
def list_versions(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    oldest_first: Annotated[bool, typer.Option("--oldest-first", help="ascending version numbers")] = False,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Versions of a model, newest first."""
    with client(ctx) as sdk:
        page = sdk.models.list_versions(project, name, newest_first=not oldest_first, limit=limit, offset=offset)
    emit(ctx, page, VERSION_COLUMNS, f"versions of {project}/{name}")


def _render_version(value: Any) -> None:
    console = Console()
    overview = Table(show_header=False, title=f"{value.model} v{value.version}")
    overview.add_column("field", style="bold")
    overview.add_column("value")
    for key in ("flavor", "run_id", "aliases", "description", "created_by", "created_at"):
        cell = getattr(value, key)
        overview.add_row(key, ", ".join(cell) if isinstance(cell, list) else "" if cell is None else str(cell))
    console.print(overview)
    signature = Table(title="signature")
    for col in ("kind", "name", "type", "shape"):
        signature.add_column(col)
    for kind, fields in (("input", value.signature.inputs), ("output", value.signature.outputs)):
        for field in fields:
            signature.add_row(kind, field.name, field.type, "" if field.shape is None else str(field.shape))
    for ref in value.signature.store_features:
        signature.add_row("store feature", ref, "", "")
    console.print(signature)
    for title, mapping in (("metrics", value.metrics), ("lineage", value.lineage)):
        table = Table(title=title)
        table.add_column("key", style="bold")
        table.add_column("value")
        for key, item in mapping.items():
            table.add_row(key, "" if item is None else item if isinstance(item, str) else json.dumps(item, default=str))
        console.print(table)
    artifacts = Table(title="artifacts")
    for col in ("path", "size", "sha256"):
        artifacts.add_column(col)
    for artifact in value.artifacts:
        artifacts.add_row(artifact.path, str(artifact.size), artifact.sha256)
    console.print(artifacts)
    if value.evaluation:
        console.print(f"evaluation report: {len(json.dumps(value.evaluation))} bytes (see --json)")


@app.command("version")
def show_version(ctx: typer.Context, project: ProjectArg, name: ModelArg, version: VersionArg = "latest") -> None:
    """One version: signature, metrics, lineage, artifacts (`--json` adds the evaluation report)."""
    with client(ctx) as sdk:
        found = sdk.models.get_version(project, name, version)
    if state(ctx).as_json:
        emit(ctx, found)
    else:
        _render_version(found)


def _gather(paths: list[Path]) -> dict[str, Path]:
    from bottega.sdk.models import collect_files

    files: dict[str, Path] = {}
    for path in paths:
        for artifact, local in collect_files(path).items():
            if artifact in files:
                raise typer.BadParameter(f"two files would be stored as {artifact!r}: {files[artifact]} and {local}")
            files[artifact] = local
    return files


@app.command("register")
def register(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="files (stored by name) and folders (stored by relative path)")
    ] = None,
    flavor: Annotated[str, typer.Option(help="xgboost, onnx, torch or python")] = "python",
    run_id: Annotated[str | None, typer.Option(help="the run that produced the model")] = None,
    from_run: Annotated[bool, typer.Option("--from-run", help="add every artifact of the run")] = False,
    run_path: Annotated[
        list[str] | None, typer.Option(help="add this artifact of the run (`dir/` for a folder); repeat")
    ] = None,
    signature: Annotated[str | None, typer.Option(help="JSON, or @file")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="NAME=NUMBER; repeat for several")] = None,
    metrics: Annotated[str | None, typer.Option(help="JSON object of metrics, or @file")] = None,
    evaluation: Annotated[str | None, typer.Option(help="evaluation report: JSON, or @file")] = None,
    lineage: Annotated[str | None, typer.Option(help="JSON, or @file")] = None,
    description: str = "",
) -> None:
    """Upload files and register the next version of a model."""
    files = _gather(paths or [])
    all_metrics: dict[str, Any] = dict(_json_arg(metrics, "--metrics") or {})
    for key, raw in _pairs(metric, "metric").items():
        try:
            all_metrics[key] = float(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"metric {key}={raw!r} is not a number") from exc
    selection: bool | list[str] = list(run_path) if run_path else from_run
    with client(ctx) as sdk, _progress(ctx, f"uploading {len(files)} file(s)", bool(files)) as progress:
        version = sdk.models.register_version(
            project,
            name,
            flavor,
            files or None,
            run_id=run_id,
            from_run_artifacts=selection,
            signature=_json_arg(signature, "--signature"),
            metrics=all_metrics,
            evaluation=_json_arg(evaluation, "--evaluation"),
            lineage=_json_arg(lineage, "--lineage"),
            description=description,
            progress=progress,
        )
    done(ctx, f"registered {project}/{name} v{version.version} ({len(version.artifacts)} artifact(s))", version)


@app.command("alias")
def set_alias(ctx: typer.Context, project: ProjectArg, name: ModelArg, alias: str, version: int) -> None:
    """Point ALIAS (production, challenger, ...) at VERSION."""
    with client(ctx) as sdk:
        made = sdk.models.set_alias(project, name, alias, version)
    done(ctx, f"{project}/{name}@{alias} -> v{made.version}", made)


@app.command("unalias")
def delete_alias(ctx: typer.Context, project: ProjectArg, name: ModelArg, alias: str) -> None:
    """Remove an alias."""
    with client(ctx) as sdk:
        sdk.models.delete_alias(project, name, alias)
    done(ctx, f"removed alias {alias} of {project}/{name}")


@app.command("aliases")
def list_aliases(ctx: typer.Context, project: ProjectArg, name: ModelArg) -> None:
    """Aliases of a model."""
    with client(ctx) as sdk:
        emit(ctx, sdk.models.list_aliases(project, name), ["alias", "version", "updated_by", "updated_at"])


@app.command("download")
def download(
    ctx: typer.Context,
    project: ProjectArg,
    name: ModelArg,
    version: VersionArg = "latest",
    folder: Annotated[
        Path | None, typer.Argument(help="folder to write the artifacts into (or --dest; default: .)")
    ] = None,
    dest: Annotated[Path | None, typer.Option(help="folder to write the artifacts into (default: .)")] = None,
    path: Annotated[list[str] | None, typer.Option(help="only this artifact; repeat for several")] = None,
) -> None:
    """Download a version's artifacts; each file is re-hashed and kept only when its SHA-256 matches."""
    if folder is not None and dest is not None and folder != dest:
        raise typer.BadParameter(f"two folders given ({folder} and --dest {dest}): give one", param_hint="--dest")
    dest = folder or dest or Path(".")
    with client(ctx) as sdk, _progress(ctx, f"{name}@{version}") as progress:
        files = sdk.models.download(project, name, version, dest, paths=path, progress=progress)
    listing = {artifact: str(local) for artifact, local in files.items()}
    done(ctx, f"downloaded {len(files)} file(s) into {dest}", listing)


@app.command("verify")
def verify(ctx: typer.Context, project: ProjectArg, name: ModelArg, version: VersionArg = "latest") -> None:
    """Re-hash every stored artifact of a version on the server; exits 1 when one is damaged."""
    with client(ctx) as sdk:
        report = sdk.models.verify(project, name, version)
    emit(ctx, report.artifacts, ["path", "status", "size", "sha256", "detail"], f"{name} v{report.version}")
    if not report.ok:
        raise fail("some artifacts failed their integrity check", FAILURE)


app.command("evaluate")(evaluations.evaluate)
app.command("evaluations")(evaluations.evaluations)
