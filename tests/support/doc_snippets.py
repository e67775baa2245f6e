"""The fenced code blocks of a docs page, and how the docs test treats each one.

Rules (docs/development.md, "Docs that run"):
- a block whose first line is a comment naming a file (`# features.yaml`, `# custom_model/model.py`) is that file:
  the test writes it (without that line) under the workspace before the blocks after it run;
- every other `bash` and `python` block runs, in page order: bash blocks in `bash -euo pipefail`, python blocks in one
  namespace per page (so later blocks see the names earlier ones defined);
- a block right after `<!-- docs-test: skip: REASON -->` does not run; the reason is required;
- other blocks (yaml fragments, json answers, tables of output) are illustrations and do not run.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:")
FILE = re.compile(r"^#\s+(?P<path>[A-Za-z0-9_][A-Za-z0-9_./-]*\.(?:yaml|yml|py|txt|json|sql))\s*$")
RUNNABLE = ("bash", "python")


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    """1-based line of the opening fence."""
    lang: str
    text: str
    skip: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        """`file`, `skip`, `run` or `illustration`."""
        if self.file is not None:
            return "file"
        if self.skip is not None:
            return "skip"
        return "run" if self.lang in RUNNABLE else "illustration"


def snippets(path: Path) -> list[Snippet]:
    """Every fenced block of the page, in order; a malformed `docs-test` marker is an error naming its line."""
    lines = path.read_text().splitlines()
    found: list[Snippet] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None or not opening["lang"]:
            _check_marker(lines, index, path.name)
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path.name}:{index + 1}: the fenced block never closes")
        body = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        found.append(_snippet(path.name, index + 1, opening["lang"], body, _skip_reason(lines, index, path.name)))
        index = end + 1
    return found


def _check_marker(lines: list[str], index: int, page: str) -> None:
    """A `docs-test` marker is `<!-- docs-test: skip: REASON -->` right before a fenced block."""
    if not MARKER.match(lines[index]):
        return
    if not SKIP.match(lines[index]):
        raise ValueError(f"{page}:{index + 1}: write `<!-- docs-test: skip: REASON -->`")
    after = index + 1
    while after < len(lines) and not lines[after].strip():
        after += 1
    if after == len(lines) or not FENCE.match(lines[after]):
        raise ValueError(f"{page}:{index + 1}: a docs-test marker must come right before a fenced block")


def _skip_reason(lines: list[str], fence: int, page: str) -> str | None:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None
    marker = SKIP.match(lines[before])
    if marker is None:
        return None
    if not marker["reason"]:
        raise ValueError(f"{page}:{before + 1}: a skipped block needs its reason")
    return marker["reason"]


def _snippet(page: str, line: int, lang: str, body: str, skip: str | None) -> Snippet:
    first, _, rest = body.partition("\n")
    named = FILE.match(first)
    if named is not None and lang != "bash":
        return Snippet(page, line, lang, rest, file=named["path"])
    return Snippet(page, line, lang, body, skip=skip)
