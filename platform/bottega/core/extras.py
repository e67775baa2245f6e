"""A clear error when an optional dependency (a `bottega[extra]`) is missing."""

from __future__ import annotations

import importlib.util


class MissingExtra(ImportError):
    pass


def require(module: str, extra: str) -> None:
    """Raise `MissingExtra` naming the pip command when `module` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f'this needs `{module}`: install it with `pip install "bottega[{extra}]"`')
