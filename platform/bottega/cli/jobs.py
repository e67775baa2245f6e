"""`bottega jobs ...` (placeholder: filled by its domain)."""

from __future__ import annotations

import typer

app = typer.Typer(help="jobs", no_args_is_help=True)
