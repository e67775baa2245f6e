"""`bottega models evaluate` and `bottega models evaluations`: a version scored on newly labelled data, stored as a
named evaluation, and evaluations side by side (one row each, one column per metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bottega.cli.common import client, emit, state
from bottega.core.extras import require
from bottega.core.keys import parse_key_columns

SUMMARY = ["version", "name", "rows", "labels", "created_by", "created_at"]


def _rows(evaluations: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per evaluation with its metrics as columns (the union, in first-seen order)."""
    metrics: list[str] = []
    rows = []
    for item in evaluations:
        data = item.model_dump(mode="json")
        dataset = data.get("dataset") or {}
        rows_seen = dataset.get("rows", dataset.get("eval_rows"))
        row = {
            "version": data["version"],
            "name": data["name"],
            "rows": rows_seen,
            "labels": Path(str(dataset.get("labels", ""))).name,
            "created_by": data["created_by"],
            "created_at": data["created_at"],
        }
        for key, value in data["metrics"].items():
            if key.startswith("train_"):
                continue  # training-row metrics have no counterpart on new labels
            if key not in metrics:
                metrics.append(key)
            row[key] = round(value, 6)
        rows.append(row)
    return rows, metrics


def evaluate(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name")],
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="version number, alias, or `latest`")],
    labels: Annotated[Path, typer.Option("--labels", "-l", help="the new label table: Parquet or CSV")],
    evaluation: Annotated[
        str | None, typer.Option("--name", "-n", help="the evaluation's name (default: <labels stem>-<date>)")
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="the label column, if not the training one")] = None,
    timestamp_column: Annotated[str | None, typer.Option(help="the time column, if not the training one")] = None,
    key_column: Annotated[
        list[str] | None, typer.Option("--key-column", help="JOIN_KEY=COLUMN where the new table names a key otherwise")
    ] = None,
    on_duplicates: Annotated[str, typer.Option(help="duplicate label rows: warn, keep or error")] = "warn",
    description: Annotated[str, typer.Option(help="a note stored with the evaluation")] = "",
) -> None:
    """Score a version on newly labelled data (store features joined point in time, as in training) and store the
    same report as training on the version as a named evaluation."""
    require("xgboost", "xgboost")
    require("duckdb", "store")
    if on_duplicates not in ("warn", "keep", "error"):
        raise typer.BadParameter(f"{on_duplicates!r}: choose warn, keep or error", param_hint="--on-duplicates")
    try:
        keys = parse_key_columns(key_column) if key_column else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-column") from None
    with client(ctx) as sdk:
        stored = sdk.evaluate_model(
            project,
            name,
            version,
            labels,
            name=evaluation,
            description=description,
            label_column=label_column,
            timestamp_column=timestamp_column,
            key_columns=keys,
            on_duplicates=on_duplicates,  # type: ignore[arg-type]
        )
        side = sdk.models.list_evaluations(project, name, stored.version)
    if state(ctx).as_json:
        emit(ctx, stored.model_dump(mode="json", exclude={"evaluation"}))
        return
    Console().print(
        f"stored evaluation {stored.name!r} of {name} v{stored.version} ({stored.dataset.get('rows')} rows)",
        markup=False,
        highlight=False,
    )
    rows, metrics = _rows([s for s in side if s.name in ("training", stored.name)])
    emit(ctx, rows, [*SUMMARY[:3], *metrics], f"{project}/{name} v{stored.version}: training and {stored.name}")


def evaluations(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="project name")],
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[
        str | None, typer.Argument(help="one version (number or alias); without it: across versions")
    ] = None,
    evaluation: Annotated[
        str | None, typer.Option("--name", "-n", help="only this evaluation (`training`: each version's own)")
    ] = None,
    limit: int = 50,
) -> None:
    """Evaluations side by side: a version's (training first), or one name across versions (the same labels)."""
    with client(ctx) as sdk:
        if version is not None:
            found = sdk.models.list_evaluations(project, name, version)
            if evaluation is not None:
                found = [e for e in found if e.name in ("training", evaluation)]
        else:
            found = sdk.models.compare_evaluations(project, name, name=evaluation, limit=limit).items
    rows, metrics = _rows(found)
    where = f"v{version}" if version is not None else (evaluation or "all versions")
    emit(ctx, rows, [*SUMMARY, *metrics], f"evaluations of {project}/{name} ({where})")
