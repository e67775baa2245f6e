"""The rules by which the docs test (tests/e2e/test_docs_snippets.py) reads a page's fenced blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_snippets import snippets

DOCS = Path(__file__).resolve().parents[3] / "docs"

PAGE = """# A page

```yaml
# features.yaml
project: eats
```

```yaml
stream_groups: []
```

<!-- docs-test: skip: needs a Kafka broker -->
```bash
bottega features stream eats live
```

- a list item with code:

  ```python
  print("indented")
  ```

```json
{"predictions": [0.4]}
```
"""


def test_blocks_are_files_runs_skips_or_illustrations(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(PAGE)
    found = snippets(tmp_path / "page.md")
    assert [(s.line, s.kind) for s in found] == [
        (3, "file"),
        (8, "illustration"),
        (13, "skip"),
        (19, "run"),
        (23, "illustration"),
    ]
    assert (found[0].file, found[0].text) == ("features.yaml", "project: eats\n")
    assert found[2].skip == "needs a Kafka broker"
    assert found[3].text == 'print("indented")\n'  # dedented out of the list item
    assert found[3].where == "page.md:19"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("<!-- docs-test: skip: -->\n```bash\nls\n```\n", "needs its reason"),
        ("<!-- docs-test: ignore -->\n```bash\nls\n```\n", "docs-test: skip: REASON"),
        ("<!-- docs-test: skip: later -->\n\ntext, then\n```bash\nls\n```\n", "right before a fenced block"),
        ("```bash\nls\n", "never closes"),
    ],
)
def test_a_malformed_marker_or_block_names_its_line(tmp_path: Path, marker: str, message: str) -> None:
    (tmp_path / "page.md").write_text(marker)
    with pytest.raises(ValueError, match=message):
        snippets(tmp_path / "page.md")


@pytest.mark.parametrize("page", ["feature_store.md", "serving.md"])
def test_the_tested_pages_parse_and_run_most_of_their_code(page: str) -> None:
    found = snippets(DOCS / page)
    code = [s for s in found if s.lang in ("bash", "python") and s.kind != "file"]
    assert all(s.skip for s in code if s.kind == "skip")
    assert sum(s.kind == "run" for s in code) > len(code) / 2
