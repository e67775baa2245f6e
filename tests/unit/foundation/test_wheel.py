"""The base install is the light SDK: build the wheel, install it without extras into a fresh venv, and look."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ["fastapi", "sqlalchemy", "pyspark", "torch", "xgboost", "cassandra", "kafka", "duckdb", "uvicorn"]
PROBE = """
import json, sys, importlib.util
import bottega.sdk
from bottega.cli.main import app
try:
    app(["--help"])
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps({{
    "imported": sorted(m for m in heavy if m in sys.modules),
    "installed": sorted(m for m in heavy if importlib.util.find_spec(m) is not None),
    "client": bottega.sdk.Client.__name__,
}}))
"""


def uv() -> str:
    return str(Path(sys.executable).parent / "uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([uv(), "build", "--wheel", "-q", "--out-dir", str(out), str(REPO)], check=True)
    wheels = list(out.glob("bottega-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.mark.slow
def test_wheel_merges_the_five_folders_into_one_bottega_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("bottega-")}
    assert tops == {"bottega"}
    for sub in ["core", "api", "sdk", "cli", "feature_store", "training", "serving", "monitoring"]:
        assert f"bottega/{sub}/__init__.py" in names
    assert "bottega/__init__.py" not in names


@pytest.mark.slow
def test_base_install_imports_no_heavy_library(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [
            uv(),
            "pip",
            "install",
            "-q",
            "--python",
            python,
            "-c",
            str(REPO / "requirements" / "constraints.txt"),
            str(wheel),
        ],
        check=True,
    )

    help_out = subprocess.run(
        [str(venv / "bin" / "bottega"), "--help"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert "Usage" in help_out.stdout
    assert "version" in help_out.stdout

    probe = subprocess.run(
        [python, "-c", PROBE.format(heavy=HEAVY)], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["imported"] == []
    assert result["installed"] == [], "the base install must not pull heavy dependencies"
    assert result["client"] == "Client"
