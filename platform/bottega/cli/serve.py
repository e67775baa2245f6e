"""`bottega serve`: the online prediction service (needs the `serving` extra)."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

from bottega.cli.common import fail, state
from bottega.cli.errors import FAILURE, USER_ERROR
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


def predict(
    deployment: Annotated[str, typer.Argument(help="the online deployment to call")],
    instances: Annotated[
        str, typer.Option("--instances", "-i", help='JSON list of rows, or @file.json: [{"restaurant_id": 5, ...}]')
    ],
    serve_url: Annotated[
        str | None, typer.Option(envvar="BOTTEGA_SERVE_URL", help="the prediction service (default :8701)")
    ] = None,
    version: Annotated[str | None, typer.Option(help="pin a version the deployment serves (`3`, `model:3`)")] = None,
    routing_key: Annotated[str | None, typer.Option(help="sticky routing key")] = None,
    project: Annotated[str | None, typer.Option(help="when the name exists in several projects")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="replay: store features point in time from the offline store")
    ] = None,
) -> None:
    """Send rows to the prediction service and print its answer as JSON."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from bottega.core.errors import BottegaError
    from bottega.sdk.predict import PredictionClient

    text = Path(instances[1:]).read_text() if instances.startswith("@") else instances
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--instances") from None
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list):
        raise typer.BadParameter("give a JSON list of row objects", param_hint="--instances")
    try:
        with PredictionClient(serve_url) as service:
            result = service.predict(
                deployment, rows, project=project, version=version, routing_key=routing_key, as_of=as_of
            )
    except BottegaError as exc:
        field = exc.extra.get("field")
        message = f"{exc.detail}" + (f" (field {field})" if field else "")
        raise fail(message, USER_ERROR if exc.status < 500 else FAILURE) from None
    typer.echo(json.dumps(asdict(result), indent=2))
