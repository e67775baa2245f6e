"""`bottega server` and `bottega db upgrade`: the commands that need the `server` extra."""

from __future__ import annotations

from typing import Annotated

import typer

from bottega.core.extras import require

db = typer.Typer(help="The metadata database.", no_args_is_help=True)


def server(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Start the API server (applies migrations first; embedded defaults when nothing is configured)."""
    require("uvicorn", "server")
    import uvicorn

    from bottega.api.settings import ApiSettings

    settings = ApiSettings()
    typer.echo(f"bottega: database {settings.resolved_database_url()}", err=True)
    typer.echo(f"bottega: API docs at http://{host}:{port}/api/v1/docs", err=True)
    uvicorn.run("bottega.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level)


@db.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "heads") -> None:
    """Apply database migrations up to REVISION."""
    require("alembic", "server")
    from bottega.api.db import migrate
    from bottega.api.db.engine import make_engine
    from bottega.api.settings import ApiSettings

    settings = ApiSettings()
    engine = make_engine(settings.resolved_database_url())
    try:
        migrate.upgrade(engine, revision)
        typer.echo(f"database at {', '.join(sorted(migrate.current_revisions(engine)))}")
    finally:
        engine.dispose()
