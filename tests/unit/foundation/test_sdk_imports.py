"""The SDK has no client <-> sub-API cycle: the sub-APIs talk through `bottega.sdk.transport`, which imports nothing
of the SDK, and only `bottega.sdk.client` (and the package) assemble them."""

from __future__ import annotations

import ast
from pathlib import Path

SDK = Path(__file__).resolve().parents[3] / "platform" / "bottega" / "sdk"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_sub_apis_do_not_import_the_client() -> None:
    offenders = {
        path.name: sorted(m for m in _imports(path) if m == "bottega.sdk.client")
        for path in SDK.glob("*.py")
        if path.name not in ("client.py", "__init__.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
    assert not [m for m in _imports(SDK / "transport.py") if m.startswith("bottega.sdk")]
