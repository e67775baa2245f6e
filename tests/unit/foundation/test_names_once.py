"""Every name grammar is written once: a regular expression literal (`^...$`) appears in one place of the code, and
the shared grammars and job type names live in `bottega.core.names`, imported wherever they are used."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from bottega.core import names

ROOT = Path(__file__).resolve().parents[3]
COMPONENTS = ("platform", "feature_store", "training", "serving", "monitoring")
JOB_TYPES = (names.TRAIN_JOB, names.EVALUATE_JOB, names.FEATURES_BATCH_JOB, names.BATCH_SCORE_JOB)


def _literals() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for component in COMPONENTS:
        for path in sorted((ROOT / component / "bottega").rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found[node.value].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_each_pattern_literal_is_written_once() -> None:
    twice = {
        text: places
        for text, places in _literals().items()
        if text.startswith("^") and text.endswith("$") and len(places) > 1
    }
    assert twice == {}, f"define these once in bottega/core/names.py and import them: {twice}"


def test_grammars_and_job_types_live_in_core_names() -> None:
    literals = _literals()
    grammars = {k: v for k, v in vars(names).items() if k.endswith("_PATTERN") and isinstance(v, str)}
    assert {"PROJECT_PATTERN", "MODEL_NAME_PATTERN", "ALIAS_PATTERN", "TAG_KEY_PATTERN"} <= set(grammars)
    for name, pattern in grammars.items():
        assert all(p.startswith("platform/bottega/core/names.py") for p in literals[pattern]), (name, literals[pattern])
    for job_type in JOB_TYPES:
        assert literals[job_type] == [p for p in literals[job_type] if "core/names.py" in p], (
            job_type,
            literals[job_type],
        )
