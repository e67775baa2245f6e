"""`bottega train spec.yaml`: train a model from a spec, record the run and register a version.

Needs `bottega[xgboost,store]`; the trainer is imported inside the command so `bottega --help` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bottega.cli.common import client, emit, state


class RichProgress:
    """One bar over the boosting rounds (or a tuning study's trials), the latest metrics; stages as plain lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
        )
        self.bar = Progress(*columns, console=console, transient=False)
        self.task: Any = None

    def stage(self, message: str) -> None:
        self.console.print(f"[dim]{escape(message)}[/dim]", highlight=False)

    def iteration(self, step: int, total: int, metrics: Mapping[str, float], unit: str = "rounds") -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task(unit, total=total, metrics="")
        shown = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("eval."))
        self.bar.update(self.task, completed=step + 1, metrics=shown)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()


def train_command(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="training spec (YAML)", show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Train a model from a spec: run with params and per-round metrics, artifacts, a registered version, and the
    `candidate` alias when every gate holds."""
    from bottega.training.runner import QuietProgress, train
    from bottega.training.spec import load_spec

    console = Console(stderr=True)
    shown = QuietProgress() if quiet else RichProgress(console)
    with client(ctx) as sdk:
        parsed = load_spec(spec)  # inside `client`: an invalid spec is the one error line and exit code 2
        try:
            result = train(sdk, parsed, shown)
        finally:
            if isinstance(shown, RichProgress):
                shown.close()
    if state(ctx).as_json:
        emit(ctx, result.to_dict())
        return
    _summary(console, result.to_dict())


def _summary(console: Console, result: dict[str, Any]) -> None:
    out = Console()
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning))}", highlight=False)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    out.print(
        f"registered {result['model']} v{result['version']} ({result['flavor']}) from run {result['run_id']}",
        highlight=False,
    )
    out.print(f"eval: {metrics}", highlight=False, markup=False)
    for gate in result["gates"]:
        mark = "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]"
        out.print(f"gate {gate['gate']}: {mark} (value {gate['value']})", highlight=False)
    if result["candidate"]:
        out.print(f"alias candidate -> v{result['version']}", highlight=False)
    elif result["gates"]:
        out.print(f"no candidate alias: failed {', '.join(result['failed_gates'])}", highlight=False)
