"""User functions named `package.module:function`: import them and fingerprint their code.

The fingerprint is the SHA-256 of the whole module's source (a transform's helpers live in its module too), so
training and serving can refuse to run code other than the code that was registered.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bottega.core.names import FUNCTION_PATTERN

FUNCTION_RE = re.compile(FUNCTION_PATTERN)


class FunctionError(ValueError):
    """A function reference that cannot be imported, is not callable, or whose code changed."""


def _split(reference: str) -> tuple[str, str]:
    if not FUNCTION_RE.match(reference):
        raise FunctionError(f"{reference!r} must look like package.module:function")
    module, name = reference.split(":")
    return module, name


def load_function(reference: str, *, search: Path | None = None) -> Callable[..., Any]:
    """The function `package.module:function`; `search` (e.g. the working directory) is tried on sys.path too."""
    module_name, name = _split(reference)
    if search is not None and str(search) not in sys.path:
        sys.path.append(str(search))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FunctionError(
            f"cannot import {module_name!r} for {reference!r} ({exc}); install it or run from the folder that holds it"
        ) from exc
    function = getattr(module, name, None)
    if not callable(function):
        raise FunctionError(f"{module_name!r} has no function {name!r} (from {reference!r})")
    return function  # type: ignore[no-any-return]


def fingerprint(function: Callable[..., Any]) -> str:
    """SHA-256 of the source of the module that defines `function`."""
    module = inspect.getmodule(function)
    if module is None:
        raise FunctionError(f"cannot find the module of {function!r} to fingerprint it")
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError) as exc:
        raise FunctionError(f"cannot read the source of {module.__name__!r} to fingerprint it: {exc}") from exc
    return hashlib.sha256(source.encode()).hexdigest()


def load_checked(reference: str, expected_sha256: str | None, *, search: Path | None = None) -> Callable[..., Any]:
    """`load_function`, refusing code whose fingerprint differs from the registered one (when one was)."""
    function = load_function(reference, search=search)
    if expected_sha256 is not None:
        found = fingerprint(function)
        if found != expected_sha256:
            raise FunctionError(
                f"the code of {reference!r} changed since it was registered (registered {expected_sha256[:12]}, "
                f"loaded {found[:12]}): register the definitions again (a new version) or restore the code"
            )
    return function
