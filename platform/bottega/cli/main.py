"""Entry point of the `bottega` console script.

Command groups import their heavy dependencies inside the command functions, so `bottega --help` stays fast and
works on the light base install.
"""

from __future__ import annotations

import typer

from bottega.core import package_version

app = typer.Typer(
    name="bottega",
    help="Bottega: features, training, model DB, serving and monitoring in one platform.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the installed Bottega version."""
    typer.echo(package_version())


def run() -> None:
    """Console-script entry point."""
    app()
