"""The namespace-package layout of ../shared/DESIGN.md, guarded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
COMPONENT_FOLDERS = ["platform", "feature_store", "training", "serving", "monitoring"]
SUBPACKAGES = [
    "platform/bottega/core",
    "platform/bottega/api",
    "platform/bottega/sdk",
    "platform/bottega/cli",
    "feature_store/bottega/feature_store",
    "training/bottega/training",
    "serving/bottega/serving",
    "monitoring/bottega/monitoring",
]
TOP_LEVEL = [
    "pyproject.toml",
    "README.md",
    "docker-compose.yml",
    "Makefile",
    ".ci/run",
    "docs",
    "bench",
    "web_ui",
    "deploy",
    "tests",
    *COMPONENT_FOLDERS,
]


def test_top_level_entries_exist() -> None:
    missing = [name for name in TOP_LEVEL if not (REPO / name).exists()]
    assert missing == []


def test_no_init_in_top_level_or_namespace_folders() -> None:
    forbidden = [REPO / folder / "__init__.py" for folder in COMPONENT_FOLDERS]
    forbidden += [REPO / folder / "bottega" / "__init__.py" for folder in COMPONENT_FOLDERS]
    present = [str(path.relative_to(REPO)) for path in forbidden if path.exists()]
    assert present == [], f"these files break the namespace package or shadow the stdlib: {present}"


def test_each_component_subpackage_is_a_regular_package() -> None:
    missing = [pkg for pkg in SUBPACKAGES if not (REPO / pkg / "__init__.py").is_file()]
    assert missing == []


def test_all_subpackages_import_from_one_namespace() -> None:
    code = (
        "import importlib, bottega; "
        f"mods = [importlib.import_module('bottega.' + p.split('/')[-1]) for p in {SUBPACKAGES!r}]; "
        "print(len(list(bottega.__path__)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == len(COMPONENT_FOLDERS)


def test_stdlib_platform_still_works_from_repo_root() -> None:
    code = "import platform, bottega.sdk; print(platform.__file__); print(platform.system())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    module_file, system = out.stdout.split()
    assert not module_file.startswith(str(REPO)), module_file
    assert system == "Linux"
