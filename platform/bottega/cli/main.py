"""Entry point of the `bottega` console script.

Command groups import heavy dependencies inside their commands, so `bottega --help` stays fast and works on the
light base install.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bottega.cli import deployments, features, jobs, models, pipelines, projects, runs, serve, server, train
from bottega.cli.common import state
from bottega.cli.errors import USER_ERROR, CliGroup, print_error
from bottega.core import package_version
from bottega.core.extras import MissingExtra

app = typer.Typer(
    name="bottega",
    help="Bottega: features, training, model DB, serving and monitoring in one platform.",
    no_args_is_help=True,
    add_completion=False,
    cls=CliGroup,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="BOTTEGA_URL", help="API URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="BOTTEGA_TOKEN", help="API key", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="BOTTEGA_DEBUG", help="show the full traceback of an error")
    ] = False,
) -> None:
    st = state(ctx)
    st.url, st.token, st.as_json, st.debug = url, token, as_json, debug


@app.command()
def version() -> None:
    """Print the installed Bottega version."""
    typer.echo(package_version())


app.command("server")(server.server)
app.add_typer(server.db, name="db")
app.add_typer(projects.projects, name="projects")
app.add_typer(projects.keys, name="keys")
app.command("audit")(projects.audit)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(deployments.app, name="deployments")
app.add_typer(jobs.app, name="jobs")
app.command("worker")(jobs.worker)
features.app.command("run")(pipelines.run_group)
features.app.command("stream")(pipelines.stream_group)
features.app.command("training-set")(pipelines.training_set)
features.app.command("online-get")(pipelines.online_get)
app.add_typer(features.app, name="features")
app.command("train")(train.train_command)
app.command("serve")(serve.serve)
app.command("predict")(serve.predict)


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except MissingExtra as exc:  # an optional install missing before any command ran
        print_error(str(exc))
        raise SystemExit(USER_ERROR) from exc
