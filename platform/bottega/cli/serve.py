"""`bottega serve`: the online prediction service (needs the `serving` extra)."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

from bottega.cli.common import state
from bottega.core.extras import require


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8701,
    workers: Annotated[int, typer.Option(help="worker processes (default: one per core)")] = 0,
    project: Annotated[str | None, typer.Option(help="serve only this project's deployments")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve every active online deployment the API key can see, following deploys live.

    Predict with `POST /v1/models/<deployment>:predict`; `/healthz`, `/readyz` and `/metrics` report on it."""
    require("uvicorn", "serving")
    require("onnxruntime", "serving")
    import uvicorn

    st = state(ctx)
    if st.url:
        os.environ["BOTTEGA_URL"] = st.url
    if st.token:
        os.environ["BOTTEGA_TOKEN"] = st.token
    if project:
        os.environ["BOTTEGA_SERVE_PROJECT"] = project
    count = workers or (os.cpu_count() or 1)
    if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bottega-metrics-")
    typer.echo(f"bottega: serving on http://{host}:{port} with {count} worker(s)", err=True)
    uvicorn.run(
        "bottega.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=count,
        log_level=log_level,
        access_log=False,
        loop="auto",
        http="auto",
    )
