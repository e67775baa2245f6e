"""`bottega deployments ...`: create, list, get, update, traffic, rollback, history, undeploy, watch.

A spec comes from a YAML or JSON file (`--file`; the file holds the spec itself, or `{kind, spec, reason}`), or from
flags: `--target eta:3:90 --target eta@champion:10 --shadow eta:4` for online deployments, `--model eta:3 --input
... --output ... --schedule "0 3 * * *"` for batch ones. Changes name the revision they are based on
(`--expected-revision N`), or `--force` to base them on whatever revision is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bottega.api.deployments.schemas import DeploymentRead, RevisionRead, WatchChange
from bottega.cli.common import client, done, emit, fail, state
from bottega.sdk.deployments import Kind

app = typer.Typer(help="Deployments: revisioned online and batch specs, rollback, and the change feed.")
COLUMNS = ["name", "kind", "revision", "active", "summary", "updated_by", "updated_at", "reason"]

Project = Annotated[str, typer.Argument(help="project")]
Name = Annotated[str, typer.Argument(help="deployment")]
SpecFile = Annotated[Path | None, typer.Option("--file", "-f", help="spec as YAML or JSON", exists=True)]
Targets = Annotated[
    list[str] | None, typer.Option("--target", "-t", help="online: MODEL:VERSION:WEIGHT or MODEL@ALIAS:WEIGHT")
]
Shadows = Annotated[list[str] | None, typer.Option("--shadow", help="online: MODEL:VERSION or MODEL@ALIAS")]
Sticky = Annotated[str | None, typer.Option(help="online: route sticky by hashing this request field")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="batch: MODEL:VERSION or MODEL@ALIAS")]
InputOpt = Annotated[str | None, typer.Option("--input", help="batch: URI or table to score")]
OutputOpt = Annotated[str | None, typer.Option("--output", help="batch: URI for the predictions")]
ScheduleOpt = Annotated[str | None, typer.Option("--schedule", help='batch: cron, e.g. "0 3 * * *"')]
Params = Annotated[list[str] | None, typer.Option("--param", help="batch: KEY=VALUE (VALUE parsed as JSON if it can)")]
Reason = Annotated[str, typer.Option("--reason", "-m", help="why (kept with the revision)")]
Expected = Annotated[int | None, typer.Option("--expected-revision", help="the revision this change is based on")]
Force = Annotated[bool, typer.Option("--force", help="base the change on the current revision, whatever it is")]


def load_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON document (JSON needs nothing; YAML needs pyyaml)."""
    text = path.read_text()
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:
            raise fail(f"{path} is not JSON, and reading YAML needs pyyaml: pip install pyyaml") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise fail(f"{path} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise fail(f"{path} must hold a mapping (the spec, or kind/spec/reason)")
    return data


def parse_ref(text: str) -> dict[str, Any]:
    """`eta:3` -> version 3; `eta@champion` or `eta:champion` -> alias."""
    if "@" in text:
        model, _, alias = text.partition("@")
        ref: dict[str, Any] = {"model": model, "alias": alias}
    else:
        model, _, version = text.rpartition(":")
        ref = {"model": model, "version": int(version)} if version.isdigit() else {"model": model, "alias": version}
    if not ref["model"] or not (ref.get("alias") or ref.get("version")):
        raise fail(f"{text!r} names no model version: write MODEL:VERSION or MODEL@ALIAS")
    return ref


def parse_target(text: str) -> dict[str, Any]:
    ref, _, weight = text.rpartition(":")
    if not weight.isdigit() or (":" not in ref and "@" not in ref):
        raise fail(f"{text!r}: a target is MODEL:VERSION:WEIGHT or MODEL@ALIAS:WEIGHT (weight 0-100)")
    return {**parse_ref(ref), "weight": int(weight)}


def _param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise fail(f"{text!r}: a parameter is KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def online_spec(
    base: dict[str, Any], targets: list[str], shadows: list[str] | None, sticky: str | None
) -> dict[str, Any]:
    spec = dict(base)
    if targets:
        spec["targets"] = [parse_target(t) for t in targets]
    if shadows is not None:
        spec["shadows"] = [parse_ref(s) for s in shadows if s]
    if sticky is not None:
        spec["routing"] = {"strategy": "sticky", "key": sticky} if sticky else None
    return spec


def batch_spec(base: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    spec = dict(base)
    if flags["model"] is not None:
        spec = {k: v for k, v in spec.items() if k not in ("version", "alias")}
        spec.update(parse_ref(flags["model"]))
    for key in ("input", "output", "schedule"):
        if flags[key] is not None:
            spec[key] = flags[key]
    if flags["params"]:
        spec["params"] = {**spec.get("params", {}), **dict(_param(p) for p in flags["params"])}
    return spec


def _from_file(path: Path | None) -> tuple[dict[str, Any] | None, str | None, str]:
    """(spec, kind, reason) from a spec file: either the spec itself or `{kind, spec, reason}`."""
    if path is None:
        return None, None, ""
    data = load_file(path)
    if isinstance(data.get("spec"), dict):
        return data["spec"], data.get("kind"), str(data.get("reason") or "")
    return data, None, ""


def summary(spec: dict[str, Any], active: bool = True) -> str:
    """One line per spec: `eta:3 90% | eta:4 10% (+ shadow eta:5)` or `eta:3 @ 0 3 * * *`."""

    def ref(item: dict[str, Any]) -> str:
        alias = f"@{item['alias']}" if item.get("alias") else ""
        return f"{item.get('model')}:{item.get('version')}{alias}"

    if "targets" in spec:
        text = " | ".join(f"{ref(t)} {t.get('weight')}%" for t in spec["targets"])
        if spec.get("shadows"):
            text += " (+ shadow " + ", ".join(ref(s) for s in spec["shadows"]) + ")"
    else:
        text = f"{ref(spec)} @ {spec.get('schedule')}"
    return text if active else f"(undeployed) {text}"


def _row(item: DeploymentRead) -> dict[str, Any]:
    """For tables: free text escaped so rich does not read `[...]` in a reason as markup."""
    row = item.model_dump(mode="json")
    return {**row, "summary": escape(summary(item.spec, item.active)), "reason": escape(item.reason)}


def _emit_deployment(ctx: typer.Context, item: DeploymentRead) -> None:
    if state(ctx).as_json:
        emit(ctx, item)
        return
    fields = ["project", "name", "kind", "revision", "active", "summary", "reason", "rolled_back_from",
              "updated_by", "updated_at", "created_by", "created_at"]  # fmt: skip
    emit(ctx, _row(item), fields)
    Console().print_json(json.dumps(item.spec))


def _confirm(ctx: typer.Context, message: str, item: DeploymentRead) -> None:
    done(
        ctx,
        f"{message}: {item.project}/{item.name} is at revision {item.revision} ({summary(item.spec, item.active)})",
        item,
    )


def _kind(value: str) -> Kind:
    if value == "online":
        return "online"
    if value == "batch":
        return "batch"
    raise fail(f"--kind is online or batch, not {value!r}")


def _base_revision(current: int, expected: int | None, force: bool) -> int:
    if expected is None and not force:
        raise fail(f"name the revision this change is based on: --expected-revision {current} (or --force)")
    return current if expected is None else expected


@app.command("create")
def create(
    ctx: typer.Context,
    project: Project,
    name: Name,
    file: SpecFile = None,
    kind: Annotated[str | None, typer.Option(help="online or batch (default: from the spec)")] = None,
    target: Targets = None,
    shadow: Shadows = None,
    sticky: Sticky = None,
    model: ModelOpt = None,
    input_: InputOpt = None,
    output: OutputOpt = None,
    schedule: ScheduleOpt = None,
    param: Params = None,
    reason: Reason = "",
) -> None:
    """Create a deployment at revision 1 (aliases are pinned to the versions they point at now)."""
    spec, file_kind, file_reason = _from_file(file)
    spec = spec or {}
    batch = {"model": model, "input": input_, "output": output, "schedule": schedule, "params": param}
    chosen = _kind(kind or file_kind or ("batch" if model is not None or "input" in spec else "online"))
    spec = online_spec(spec, target or [], shadow, sticky) if chosen == "online" else batch_spec(spec, batch)
    with client(ctx) as sdk:
        made = sdk.deployments.create(project, name, spec, kind=chosen, reason=reason or file_reason)
    _confirm(ctx, "created", made)


@app.command("list")
def list_deployments(
    ctx: typer.Context,
    project: Project,
    kind: Annotated[str | None, typer.Option(help="online or batch")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include undeployed deployments")] = False,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Deployments of a project with their current revision."""
    only = None if kind is None else _kind(kind)
    with client(ctx) as sdk:
        page = sdk.deployments.list(project, kind=only, include_undeployed=all_, limit=limit, offset=offset)
    if state(ctx).as_json:
        emit(ctx, page)
    else:
        emit(ctx, [_row(item) for item in page.items], COLUMNS, f"deployments of {project} ({page.total})")


@app.command("get")
def get(
    ctx: typer.Context,
    project: Project,
    name: Name,
    revision: Annotated[int | None, typer.Option(help="an older revision")] = None,
) -> None:
    """The current revision (or --revision N): spec, who made it, when and why."""
    with client(ctx) as sdk:
        if revision is None:
            _emit_deployment(ctx, sdk.deployments.get(project, name))
            return
        emit(ctx, sdk.deployments.revision(project, name, revision))


@app.command("update")
def update(
    ctx: typer.Context,
    project: Project,
    name: Name,
    file: SpecFile = None,
    target: Targets = None,
    shadow: Shadows = None,
    sticky: Sticky = None,
    model: ModelOpt = None,
    input_: InputOpt = None,
    output: OutputOpt = None,
    schedule: ScheduleOpt = None,
    param: Params = None,
    reason: Reason = "",
    expected_revision: Expected = None,
    force: Force = False,
) -> None:
    """Write a new revision: the spec of --file, or the current spec changed by the flags (redeploys an undeployed
    deployment). `--shadow ''` removes the shadows, `--sticky ''` the sticky routing."""
    spec, _, file_reason = _from_file(file)
    with client(ctx) as sdk:
        current = sdk.deployments.get(project, name)
        base = _base_revision(current.revision, expected_revision, force)
        spec = spec if spec is not None else current.spec
        batch = {"model": model, "input": input_, "output": output, "schedule": schedule, "params": param}
        online = current.kind == "online"
        spec = online_spec(spec, target or [], shadow, sticky) if online else batch_spec(spec, batch)
        made = sdk.deployments.update(project, name, spec, expected_revision=base, reason=reason or file_reason)
    _confirm(ctx, "updated", made)


@app.command("traffic")
def traffic(
    ctx: typer.Context,
    project: Project,
    name: Name,
    weights: Annotated[list[str], typer.Argument(help="MODEL:VERSION=WEIGHT or MODEL@ALIAS=WEIGHT, summing to 100")],
    reason: Reason = "",
    expected_revision: Expected = None,
) -> None:
    """Split an online deployment's traffic: `bottega deployments traffic eats eta eta:3=90 eta:4=10`."""
    split: dict[str | tuple[str, int | str], int] = {}
    for item in weights:
        key, sep, weight = item.rpartition("=")
        if not sep or not weight.isdigit():
            raise fail(f"{item!r}: write MODEL:VERSION=WEIGHT")
        split[key] = int(weight)
    with client(ctx) as sdk:
        made = sdk.deployments.set_traffic(project, name, split, reason=reason, expected_revision=expected_revision)
    _confirm(ctx, "traffic set", made)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    project: Project,
    name: Name,
    to: Annotated[int | None, typer.Option("--to", help="the revision to restore (default: the previous one)")] = None,
    reason: Reason = "",
    expected_revision: Expected = None,
) -> None:
    """Restore an earlier revision's spec as a new revision."""
    with client(ctx) as sdk:
        made = sdk.deployments.rollback(
            project, name, reason=reason, to_revision=to, expected_revision=expected_revision
        )
    _confirm(ctx, f"rolled back to revision {made.rolled_back_from}", made)


@app.command("history")
def history(ctx: typer.Context, project: Project, name: Name, limit: int = 50, offset: int = 0) -> None:
    """Revisions, newest first: what changed, who, when and why."""
    with client(ctx) as sdk:
        page = sdk.deployments.history(project, name, limit=limit, offset=offset)
    if state(ctx).as_json:
        emit(ctx, page)
        return
    Console().print(history_table(f"{project}/{name}: {page.total} revisions", page.items))


def history_table(title: str, rows: list[RevisionRead]) -> Table:
    table = Table(title=title)
    for column in ("rev", "spec", "who", "when", "why"):
        table.add_column(column, overflow="fold")
    for row in rows:
        note = f" (rollback to {row.rolled_back_from})" if row.rolled_back_from else ""
        when = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        cells = (str(row.revision), summary(row.spec, row.active), row.created_by, when, row.reason + note)
        table.add_row(*(Text(cell) for cell in cells))
    return table


@app.command("undeploy")
def undeploy(
    ctx: typer.Context,
    project: Project,
    name: Name,
    reason: Reason = "",
    expected_revision: Expected = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Stop serving a deployment (owners): a new revision with active=false; `update` redeploys it."""
    if not yes:
        typer.confirm(f"Undeploy {project}/{name}?", abort=True)
    with client(ctx) as sdk:
        made = sdk.deployments.undeploy(project, name, reason=reason, expected_revision=expected_revision)
    _confirm(ctx, "undeployed", made)


@app.command("watch")
def watch(
    ctx: typer.Context,
    since: Annotated[int | None, typer.Option(help="the last sequence seen (default: start with a snapshot)")] = None,
    project: Annotated[str | None, typer.Option(help="only this project")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per long poll (at most 30)")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="one poll, then exit")] = False,
) -> None:
    """Print deployment changes as they happen (one line each; JSON lines with --json). Ctrl-C stops."""
    as_json = state(ctx).as_json
    with client(ctx) as sdk:
        if once:
            result = sdk.deployments.watch(since, timeout=timeout, project=project)
            if as_json:
                emit(ctx, result)
                return
            for change in result.changes:
                _print_change(change, False)
            Console().print(f"sequence {result.sequence}", highlight=False, markup=False)
            return
        try:
            for change in sdk.deployments.watch_iter(since, timeout=timeout, project=project):
                _print_change(change, as_json)
        except KeyboardInterrupt:
            return


def _print_change(change: WatchChange, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(change.model_dump_json() + "\n")
        sys.stdout.flush()
        return
    line = (
        f"{change.sequence:>8}  {change.created_at:%Y-%m-%d %H:%M:%S}  {change.project}/{change.name} "
        f"r{change.revision}  {summary(change.spec, change.active)}  by {change.created_by}"
    )
    Console().print(line, highlight=False, markup=False, soft_wrap=True)
