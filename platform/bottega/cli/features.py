"""`bottega features ...`: the feature catalog from the shell (apply definitions files, list, search, resolve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bottega.cli.common import client, done, emit, state

app = typer.Typer(help="Feature catalog: entities and versioned feature groups.", no_args_is_help=True)
GROUP_COLUMNS = ["name", "kind", "version", "entity", "features", "max_age", "online", "owner", "updated_at"]
VERSION_COLUMNS = ["version", "kind", "breaking", "changes", "created_by", "created_at"]
SEARCH_COLUMNS = ["ref", "dtype", "entity", "owner", "max_age", "online", "freshness", "used_by", "description"]
ENTITY_COLUMNS = ["name", "join_keys", "groups", "description", "updated_at"]
Project = Annotated[str, typer.Argument(help="the project")]
GroupName = Annotated[str, typer.Argument(help="the feature group")]


def read_definitions(path: Path) -> dict[str, Any]:
    """A definitions file as a dict: YAML (needs PyYAML, imported only here) or JSON (`.json`)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="FILE") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise typer.BadParameter(f"{path} is not valid JSON: {exc}", param_hint="FILE") from exc
    else:
        try:
            import yaml
        except ImportError as exc:
            raise typer.BadParameter(
                "reading YAML needs PyYAML: `pip install pyyaml` (or give a .json file)", param_hint="FILE"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"{path} is not valid YAML: {exc}", param_hint="FILE") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(
            f"{path} must hold a mapping (project, entities, batch_groups, ...)", param_hint="FILE"
        )
    return data


def _group_row(group: Any) -> dict[str, Any]:
    definition = group.definition.model_dump(mode="json")
    return {
        "name": group.name,
        "kind": group.kind,
        "version": group.version,
        "entity": f"{group.entity.name} ({', '.join(group.entity.join_keys)})",
        "features": len(definition["features"]),
        "max_age": definition.get("max_age", "-"),
        "online": definition.get("online", True),
        "owner": definition["owner"],
        "updated_at": group.updated_at.isoformat(timespec="seconds"),
    }


def _check_batch_groups(data: dict[str, Any], project: str | None) -> None:
    """Refuse batch groups whose source is missing or whose SQL names columns the source lacks or leaves out
    declared ones (a zero-row bind with DuckDB). Definitions that do not validate are left for the API to report."""
    from pydantic import ValidationError

    from bottega.feature_store.definitions import Definitions

    if not data.get("batch_groups"):
        return
    try:
        definitions = Definitions.model_validate({**data, "project": project or data.get("project")})
    except ValidationError:
        return
    from bottega.core.extras import require

    require("duckdb", "store")
    from bottega.feature_store.batch.checks import TransformCheckError, check_definitions

    try:
        notes = check_definitions(definitions)
    except TransformCheckError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from exc
    for note in notes:
        Console(stderr=True).print(f"not checked: {note}", highlight=False, markup=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a definitions file (YAML, or .json)")],
    project: Annotated[str | None, typer.Option(help="the project (default: the file's `project`)")] = None,
    new_version: Annotated[bool, typer.Option("--new-version", help="accept breaking changes as new versions")] = False,
    fingerprint: Annotated[
        bool, typer.Option(help="import on-demand functions (from here) to fingerprint their code")
    ] = True,
    check: Annotated[
        bool,
        typer.Option(help="check each batch group's source exists and its SQL binds to the source's columns"),
    ] = True,
) -> None:
    """Register a definitions file in one transaction: its entities, then its groups. Relative source paths are
    read from the file's folder and registered absolute; batch groups are checked against their sources first."""
    from bottega.feature_store.definitions import resolve_source_paths

    data = resolve_source_paths(read_definitions(file), file.parent)
    if project is None and not data.get("project"):
        raise typer.BadParameter("the file names no project: add `project:` to it or pass --project")
    if check:
        _check_batch_groups(data, project)
    with client(ctx) as sdk:
        applied = sdk.features.register(data, project=project, new_version=new_version, fingerprint=fingerprint)
    if state(ctx).as_json:
        emit(ctx, applied)
        return
    console = Console()
    table = Table("", "name", "outcome", "version", "changes", title=f"applied {file.name} to {applied.project}")
    for entity in applied.entities:
        table.add_row("entity", entity.name, entity.outcome, "", "")
    for group in applied.groups:
        note = ("BREAKING: " if group.breaking else "") + "; ".join(group.changes)
        table.add_row(f"{group.kind} group", group.name, group.outcome, str(group.version), note)
    console.print(table)
    counts = {o: sum(g.outcome == o for g in applied.groups) for o in ("created", "updated", "unchanged")}
    console.print(
        ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) + " groups", highlight=False, markup=False
    )


@app.command("list")
def list_groups(
    ctx: typer.Context,
    project: Project,
    kind: Annotated[str | None, typer.Option(help="batch, stream or on_demand")] = None,
    entity: Annotated[str | None, typer.Option(help="groups about this entity")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """The feature groups of a project (current versions)."""
    with client(ctx) as sdk:
        page = sdk.features.groups(project, kind=kind, entity=entity, limit=limit, offset=offset)
    if state(ctx).as_json:
        emit(ctx, page)
        return
    emit(ctx, [_group_row(g) for g in page.items], GROUP_COLUMNS, f"feature groups of {project} ({page.total})")


@app.command("get")
def get_group(
    ctx: typer.Context,
    project: Project,
    group: GroupName,
    version: Annotated[int | None, typer.Option(help="an older version")] = None,
) -> None:
    """A group's current version (or --version N): its definition, features and statistics."""
    with client(ctx) as sdk:
        read: Any = (
            sdk.features.version(project, group, version) if version is not None else sdk.features.group(project, group)
        )
    if state(ctx).as_json:
        emit(ctx, read)
        return
    definition = read.definition.model_dump(mode="json")
    console = Console()
    summary = {k: v for k, v in definition.items() if k not in ("features", "aggregations", "name")}
    summary.update(version=read.version, entity=read.entity.model_dump())
    emit(ctx, summary, title=f"{project}/{group}")
    table = Table("ref", "dtype", "description", "tags", title="features")
    for ref, feature in zip(read.refs, definition["features"], strict=True):
        table.add_row(ref, feature["dtype"], feature["description"], json.dumps(feature["tags"]))
    console.print(table)
    stats = getattr(read, "stats", None)
    if stats is not None:
        emit(ctx, stats, title="statistics (last reported)")


@app.command("versions")
def versions(ctx: typer.Context, project: Project, group: GroupName, limit: int = 50, offset: int = 0) -> None:
    """Every version of a group, newest first, with what changed."""
    with client(ctx) as sdk:
        page = sdk.features.versions(project, group, limit=limit, offset=offset)
    if state(ctx).as_json:
        emit(ctx, page)
        return
    rows = [{**v.model_dump(mode="json"), "changes": "; ".join(v.changes)} for v in page.items]
    emit(ctx, rows, VERSION_COLUMNS, f"versions of {project}/{group}")


@app.command("entities")
def entities(ctx: typer.Context, project: Project, limit: int = 50, offset: int = 0) -> None:
    """The entities of a project with their join keys and the groups about them."""
    with client(ctx) as sdk:
        page = sdk.features.entities(project, limit=limit, offset=offset)
    emit(ctx, page, ENTITY_COLUMNS, f"entities of {project}")


def _tags(values: list[str] | None) -> dict[str, str]:
    out = {}
    for raw in values or []:
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise typer.BadParameter(f"{raw!r} is not KEY:VALUE", param_hint="--tag")
        out[key] = value
    return out


@app.command("search")
def search(
    ctx: typer.Context,
    q: Annotated[str | None, typer.Argument(help="text in a feature or group name or a description")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY:VALUE, repeatable (all must match)")] = None,
    owner: Annotated[str | None, typer.Option(help="the group's owner")] = None,
    entity: Annotated[str | None, typer.Option(help="the entity's name")] = None,
    project: Annotated[str | None, typer.Option(help="one project")] = None,
    kind: Annotated[str | None, typer.Option(help="batch, stream or on_demand")] = None,
    dtype: Annotated[str | None, typer.Option(help="int, float, string or bool")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Search the features of every project you can read."""
    with client(ctx) as sdk:
        page = sdk.features.search(
            q,
            tags=_tags(tag),
            owner=owner,
            entity=entity,
            project=project,
            kind=kind,
            dtype=dtype,
            limit=limit,
            offset=offset,
        )
    if state(ctx).as_json:
        emit(ctx, page)
        return
    rows = []
    for hit in page.items:
        row = hit.model_dump(mode="json")
        row["entity"] = hit.entity.name
        row["freshness"] = (
            "" if hit.stats is None or hit.stats.freshness_seconds is None else f"{hit.stats.freshness_seconds:g}s"
        )
        row["used_by"] = ", ".join(hit.used_by) + (f" (+{hit.used_by_hidden} hidden)" if hit.used_by_hidden else "")
        rows.append(row)
    emit(ctx, rows, SEARCH_COLUMNS, f"features ({page.total} found)")


@app.command("resolve")
def resolve(ctx: typer.Context, refs: Annotated[list[str], typer.Argument(help="project:group:feature ...")]) -> None:
    """What serving reads for each reference: dtype, entity keys, max_age, group version."""
    with client(ctx) as sdk:
        resolution = sdk.features.resolve(refs)
    if state(ctx).as_json:
        emit(ctx, resolution)
        return
    rows = [
        {**f.model_dump(mode="json"), "entity": f"{f.entity.name} {json.dumps(f.entity.join_keys)}"}
        for f in resolution.features
    ]
    emit(ctx, rows, ["ref", "dtype", "entity", "max_age", "online", "group_version"], "resolved features")


@app.command("delete")
def delete(
    ctx: typer.Context,
    project: Project,
    group: GroupName,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Delete a feature group and all its versions (owners; refused while a model version uses it)."""
    if not yes:
        typer.confirm(f"Delete feature group {project}/{group} and all its versions?", abort=True)
    with client(ctx) as sdk:
        sdk.features.delete_group(project, group)
    done(ctx, f"deleted feature group {project}/{group}")
