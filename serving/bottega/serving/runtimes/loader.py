"""Model artifacts on local disk, verified, and the runtime that serves them.

`ArtifactCache(root, client).fetch(project, model, version)` downloads a version's artifacts once into
`root/<project>/<model>/<version>/`: into a temporary folder beside it first (the SDK checks size and sha256 of each
file), renamed into place when complete, so a version folder is never half there. A folder found in the cache is
re-hashed against the version's artifact list every time it is fetched; a file that is missing or differs raises
`ModelLoadError` naming it, and the folder is removed so the next fetch downloads it again. A file lock per version
keeps processes sharing the cache from downloading the same version twice.

`load_runtime(artifacts, prefer=("onnx", "xgboost", "python"))` opens the first flavor the version can give:
- `onnx` when it has `model.onnx` (ONNX Runtime, one thread: the fast path for trees and torch networks);
- `xgboost` when it has `model.ubj` (a one-thread booster, the fallback);
- `python` for versions of flavor `python` (only that flavor: a custom model is never served by another runtime).
File names come from the version's `lineage.flavors` (which training records) when present.

Registering a custom Python model (PyML) with the SDK: a folder with `model.py` (defining `load(path)`, called once
with the version's folder, and `predict(rows)`, called with a list of dicts input name -> value and returning one
JSON-able value per row) and a `requirements.txt` (may be empty; relative paths in it resolve against the version's
folder, so a wheel can travel with the model):

    from bottega.sdk import Client

    client = Client()
    client.models.create("eats", "eta_rules")
    client.models.register_version(
        "eats", "eta_rules", "python", "eta_rules/",   # model.py, requirements.txt and any data files
        signature={
            "inputs": [{"name": "distance_km", "type": "float64"}, {"name": "items", "type": "int64"}],
            "store_features": ["eats:restaurant_stats:prep_time_2w"],
            "outputs": [{"name": "prediction", "type": "float64"}],
        },
    )

Rows name request features by their name and store features by their reference.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bottega.core.errors import BottegaError
from bottega.serving.runtimes.base import ModelLoadError, Runtime, task_of
from bottega.serving.runtimes.python import file_lock

if TYPE_CHECKING:
    from bottega.api.registry.schemas import VersionRead
    from bottega.sdk import Client

log = logging.getLogger("bottega.serving")
FLAVOR_FILES = {"onnx": "model.onnx", "xgboost": "model.ubj", "python": "model.py"}
REQUIREMENTS = "requirements.txt"
VENVS = ".venvs"
"""Folder of the PyML venvs under the cache root (project names cannot start with a dot)."""


@dataclass(frozen=True)
class LoadedArtifacts:
    """A verified version folder and what the version says about itself."""

    project: str
    model: str
    version: int
    root: Path
    files: Mapping[str, Path]
    """artifact path -> local file."""
    flavor: str
    signature: Mapping[str, Any]
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    lineage: Mapping[str, Any] = field(default_factory=dict)
    venv_root: Path | None = None
    """where PyML venvs are cached (None: beside the version folder's cache root)."""

    @property
    def task(self) -> str | None:
        return task_of(self.evaluation, self.signature)

    @property
    def label(self) -> str:
        return f"{self.project}/{self.model}:{self.version}"

    def flavor_file(self, flavor: str) -> Path | None:
        """The local file of `flavor` (from `lineage.flavors`, else the usual name), None when absent."""
        declared = self.lineage.get("flavors")
        name = declared.get(flavor) if isinstance(declared, Mapping) else None
        if not isinstance(name, str) or name not in self.files:
            name = FLAVOR_FILES.get(flavor)
        return self.files.get(name) if name else None


class ArtifactCache:
    """Downloads, verifies and keeps model versions under `root`."""

    def __init__(self, root: Path, client: Client) -> None:
        self.root = Path(root)
        self.client = client

    def folder(self, project: str, model: str, version: int) -> Path:
        return self.root / project / model / str(version)

    def fetch(self, project: str, model: str, version: int) -> LoadedArtifacts:
        """The verified artifacts of a version, downloaded when not cached; ModelLoadError when they cannot be had
        intact."""
        label = f"{project}/{model}:{version}"
        try:
            info = self.client.models.get_version(project, model, version)
        except (BottegaError, httpx.HTTPError) as exc:
            raise ModelLoadError(f"{label}: the version cannot be read from the API: {exc}") from exc
        target = self.folder(project, model, version)
        with file_lock(target.parent / f".{version}.lock"):
            if target.is_dir():
                self._verify(label, target, info)
            else:
                self._download(project, target, info)
        files = {a.path: target / a.path for a in info.artifacts}
        return LoadedArtifacts(
            project=project,
            model=model,
            version=version,
            root=target,
            files=files,
            flavor=info.flavor,
            signature=info.signature.model_dump(mode="json"),
            evaluation=info.evaluation,
            lineage=info.lineage,
            venv_root=self.root / VENVS,
        )

    def _download(self, project: str, target: Path, info: VersionRead) -> None:
        label = f"{project}/{info.model}:{info.version}"
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a process that died mid-download (we hold the lock)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            self.client.models.download(project, info.model, info.version, tmp)
            os.rename(tmp, target)
        except (BottegaError, httpx.HTTPError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelLoadError(f"{label}: download failed: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _verify(self, label: str, target: Path, info: VersionRead) -> None:
        """Re-hash the cached files against the version's artifact list; on a mismatch remove the folder (the next
        fetch downloads it again) and raise ModelLoadError naming the file."""
        from bottega.sdk.models import sha256_file

        for artifact in info.artifacts:
            path = target / artifact.path
            if not path.is_file():
                problem = "is missing"
            else:
                sha, size = sha256_file(path)
                if size != artifact.size:
                    problem = f"has {size} bytes, not {artifact.size}"
                elif sha != artifact.sha256:
                    problem = f"hashes to {sha}, not {artifact.sha256}"
                else:
                    continue
            shutil.rmtree(target, ignore_errors=True)
            raise ModelLoadError(
                f"{label}: cached artifact {artifact.path!r} {problem}; the cached copy was removed and will be "
                "downloaded again on the next load"
            )


def _inputs(signature: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, type) of the model's inputs: request features, then store features by reference (float64)."""
    request = [(str(f["name"]), str(f["type"])) for f in signature.get("inputs") or []]
    return [*request, *((str(ref), "float64") for ref in signature.get("store_features") or [])]


def _open(flavor: str, path: Path, artifacts: LoadedArtifacts) -> Runtime:
    if flavor == "onnx":
        from bottega.serving.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, task=artifacts.task, signature=artifacts.signature)
    if flavor == "xgboost":
        from bottega.serving.runtimes.xgboost import XGBoostRuntime

        return XGBoostRuntime(path, task=artifacts.task, signature=artifacts.signature)
    from bottega.serving.runtimes.python import PythonRuntime, ensure_venv

    requirements = artifacts.files.get(REQUIREMENTS)
    venvs = artifacts.venv_root or artifacts.root.parent.parent.parent / VENVS
    python = ensure_venv(venvs, requirements if requirements is not None and requirements.is_file() else None)
    return PythonRuntime(artifacts.root, python, _inputs(artifacts.signature))


def candidates(artifacts: LoadedArtifacts) -> dict[str, Path]:
    """flavor -> file for each runtime this version can be served by."""
    if artifacts.flavor == "python":
        path = artifacts.flavor_file("python")
        if path is None:
            raise ModelLoadError(f"{artifacts.label}: a python-flavor version needs a model.py artifact")
        return {"python": path}
    found = {flavor: artifacts.flavor_file(flavor) for flavor in ("onnx", "xgboost")}
    return {flavor: path for flavor, path in found.items() if path is not None}


def load_runtime(artifacts: LoadedArtifacts, *, prefer: Sequence[str] = ("onnx", "xgboost", "python")) -> Runtime:
    """The runtime of the first flavor in `prefer` this version has; when one fails to load the next is tried, and
    ModelLoadError lists every failure when none loads."""
    unknown = [p for p in prefer if p not in FLAVOR_FILES]
    if unknown:
        raise ValueError(f"prefer: unknown runtime {unknown[0]!r}; choose among {', '.join(FLAVOR_FILES)}")
    available = candidates(artifacts)
    chosen = [flavor for flavor in prefer if flavor in available]
    if not chosen:
        have = ", ".join(sorted(artifacts.files)) or "no files"
        raise ModelLoadError(
            f"{artifacts.label} (flavor {artifacts.flavor}) has nothing the runtimes {', '.join(prefer)} can serve "
            f"(artifacts: {have}); a servable version needs model.onnx, model.ubj or, for flavor python, model.py"
        )
    errors = []
    for flavor in chosen:
        try:
            return _open(flavor, available[flavor], artifacts)
        except ModelLoadError as exc:
            errors.append(f"{flavor}: {exc}")
            log.warning("%s: the %s runtime did not load: %s", artifacts.label, flavor, exc)
    raise ModelLoadError(f"{artifacts.label} did not load: " + "; ".join(errors))
