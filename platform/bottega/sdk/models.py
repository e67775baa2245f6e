"""SDK methods of the model DB: models, immutable versions, artifacts, aliases (`client.models`).

Artifacts travel as content-addressed blobs: `register_version` hashes each file, uploads the bytes the project does
not have yet (streamed in chunks, never whole in memory), then creates the version from the hashes. `download`
streams each artifact into a temporary file beside its destination, re-hashes it and moves it into place only when
size and SHA-256 match: a damaged artifact raises `IntegrityFailure` and leaves no file behind.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from bottega.api.pages import Page
from bottega.api.registry.schemas import (
    AliasRead,
    ArtifactRead,
    BlobRead,
    EvaluationCreate,
    EvaluationRead,
    EvaluationSummary,
    ModelCreate,
    ModelRead,
    ModelUpdate,
    Signature,
    VerifyReport,
    VersionCreate,
    VersionRead,
    VersionSummary,
)
from bottega.core.errors import IntegrityFailure, InvalidInput, NotFound
from bottega.core.names import field_errors

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport

CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in total) as an upload or download advances."""
Files = Mapping[str, str | os.PathLike[str]] | str | os.PathLike[str]


def sha256_file(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def collect_files(files: Files) -> dict[str, Path]:
    """`{artifact path: local file}` from a mapping, or from a directory (every file under it, relative paths)."""
    if isinstance(files, Mapping):
        out = {str(name): Path(local) for name, local in files.items()}
    else:
        root = Path(files)
        if root.is_file():
            out = {root.name: root}
        elif root.is_dir():
            out = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        else:
            raise InvalidInput(f"{root} is neither a file nor a directory", field="files")
    for name, local in out.items():
        if not local.is_file():
            raise InvalidInput(f"artifact {name!r}: {local} is not a file", field="files")
    return out


class _Meter:
    """Cumulative progress across several files."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done = 0
        self.total = total
        self.progress = progress

    def advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def _read_chunks(path: Path, meter: _Meter) -> Iterator[bytes]:
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            meter.advance(len(chunk))
            yield chunk


def _target(dest_dir: Path, artifact_path: str) -> Path:
    root = dest_dir.resolve()
    target = (root / artifact_path).resolve()
    if not target.is_relative_to(root) or target == root:
        raise InvalidInput(f"artifact path {artifact_path!r} points outside {dest_dir}", field="path")
    return target


def _body(schema: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """Validate a request body locally (the server would refuse it the same way) and dump it as JSON."""
    try:
        return schema.model_validate(fields).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        errors, detail = field_errors(exc.errors())
        raise InvalidInput(detail, errors=errors) from exc


class ModelsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api

    def _models(self, project: str) -> str:
        return f"{self._api}/projects/{project}/models"

    def _version(self, project: str, model: str, version: int | str) -> str:
        return f"{self._models(project)}/{model}/versions/{version}"

    # -- models --------------------------------------------------------------------------------------------------

    def create(
        self, project: str, name: str, description: str = "", tags: Mapping[str, str] | None = None
    ) -> ModelRead:
        body = _body(ModelCreate, name=name, description=description, tags=dict(tags or {}))
        return ModelRead.model_validate(self._t.json("POST", self._models(project), json=body))

    def get(self, project: str, name: str) -> ModelRead:
        return ModelRead.model_validate(self._t.json("GET", f"{self._models(project)}/{name}"))

    def list(
        self,
        project: str,
        *,
        q: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[ModelRead]:
        """Models of a project by name; `q` filters on a name substring, `tags` on exact tag values (all)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if q is not None:
            params["q"] = q
        if tags:
            params["tag"] = [f"{k}:{v}" for k, v in tags.items()]
        return Page[ModelRead].model_validate(self._t.json("GET", self._models(project), params=params))

    def update(
        self,
        project: str,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str | None] | None = None,
    ) -> ModelRead:
        """Change the description and/or tags (given keys are set; a None value removes that tag)."""
        fields: dict[str, Any] = {}
        if description is not None:
            fields["description"] = description
        if tags is not None:
            fields["tags"] = dict(tags)
        body = _body(ModelUpdate, **fields)
        return ModelRead.model_validate(self._t.json("PATCH", f"{self._models(project)}/{name}", json=body))

    def delete(self, project: str, name: str) -> None:
        """Delete a model and every version of it (owners; refused while the model has aliases)."""
        self._t.json("DELETE", f"{self._models(project)}/{name}")

    # -- blobs ---------------------------------------------------------------------------------------------------

    def upload_blob(
        self, project: str, local_path: str | os.PathLike[str], progress: Progress | None = None
    ) -> BlobRead:
        """Upload one file's bytes to the project (skipped when the project already has them)."""
        path = Path(local_path)
        sha, size = sha256_file(path)
        meter = _Meter(size, progress)
        return self._upload(project, path, sha, size, meter)

    def _upload(self, project: str, path: Path, sha: str, size: int, meter: _Meter) -> BlobRead:
        base = f"{self._api}/projects/{project}/blobs"
        try:
            found = BlobRead.model_validate(self._t.json("GET", f"{base}/{sha}"))
        except NotFound:
            pass
        else:
            meter.advance(size)
            return found
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size), "X-Bottega-Sha256": sha}
        body = self._t.json("PUT", base, content=_read_chunks(path, meter), headers=headers)
        return BlobRead.model_validate(body)

    # -- versions ------------------------------------------------------------------------------------------------

    def register_version(
        self,
        project: str,
        model: str,
        flavor: str,
        files: Files | None = None,
        *,
        run_id: str | None = None,
        from_run_artifacts: bool | builtins.list[str] = False,
        signature: Signature | Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        lineage: Mapping[str, Any] | None = None,
        description: str = "",
        progress: Progress | None = None,
    ) -> VersionRead:
        """Upload `files` (`{artifact path: local path}` or a directory) and register the next version.

        `from_run_artifacts` adds the run's artifacts by reference (true: all; a list: these paths, `dir/` for a
        folder). The body is validated locally first, so a bad signature fails before any byte is uploaded.
        """
        local = collect_files(files) if files is not None else {}
        hashed = {name: sha256_file(path) for name, path in local.items()}
        fields: dict[str, Any] = {
            "flavor": flavor,
            "run_id": run_id,
            "from_run_artifacts": from_run_artifacts,
            "signature": signature.model_dump() if isinstance(signature, Signature) else dict(signature or {}),
            "metrics": dict(metrics or {}),
            "evaluation": dict(evaluation or {}),
            "lineage": dict(lineage or {}),
            "description": description,
            "artifacts": [{"path": name, "sha256": sha} for name, (sha, _) in hashed.items()],
        }
        body = _body(VersionCreate, **fields)
        self.get(project, model)  # a missing model or project fails before any byte is uploaded
        meter = _Meter(sum(size for _, size in hashed.values()), progress)
        for name, (sha, size) in hashed.items():
            self._upload(project, local[name], sha, size, meter)
        created = self._t.json("POST", f"{self._models(project)}/{model}/versions", json=body)
        return VersionRead.model_validate(created)

    def get_version(self, project: str, model: str, version: int | str = "latest") -> VersionRead:
        """A version by number, by alias (`production`) or `latest`."""
        return VersionRead.model_validate(self._t.json("GET", self._version(project, model, version)))

    def list_versions(
        self, project: str, model: str, *, newest_first: bool = True, limit: int = 50, offset: int = 0
    ) -> Page[VersionSummary]:
        params = {"order": "desc" if newest_first else "asc", "limit": limit, "offset": offset}
        body = self._t.json("GET", f"{self._models(project)}/{model}/versions", params=params)
        return Page[VersionSummary].model_validate(body)

    def update_version(self, project: str, model: str, version: int | str, description: str) -> VersionRead:
        """Versions are immutable; only their description changes."""
        body = self._t.json("PATCH", self._version(project, model, version), json={"description": description})
        return VersionRead.model_validate(body)

    def list_artifacts(self, project: str, model: str, version: int | str) -> builtins.list[ArtifactRead]:
        rows = self._t.json("GET", f"{self._version(project, model, version)}/artifacts")
        return [ArtifactRead.model_validate(row) for row in rows]

    def verify(self, project: str, model: str, version: int | str) -> VerifyReport:
        """Ask the server to re-hash every stored artifact of a version."""
        return VerifyReport.model_validate(self._t.json("POST", f"{self._version(project, model, version)}/verify"))

    # -- evaluations ---------------------------------------------------------------------------------------------

    def add_evaluation(
        self,
        project: str,
        model: str,
        version: int | str,
        name: str,
        *,
        metrics: Mapping[str, float],
        evaluation: Mapping[str, Any],
        dataset: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> EvaluationRead:
        """Store a named evaluation of a version (what `Client.evaluate_model` computes); Conflict if the name is
        taken."""
        body = _body(
            EvaluationCreate,
            name=name,
            metrics=dict(metrics),
            evaluation=dict(evaluation),
            dataset=dict(dataset or {}),
            description=description,
        )
        url = f"{self._version(project, model, version)}/evaluations"
        return EvaluationRead.model_validate(self._t.json("POST", url, json=body))

    def list_evaluations(self, project: str, model: str, version: int | str) -> builtins.list[EvaluationSummary]:
        """A version's evaluations: `training` (its own) first, then the named ones."""
        rows = self._t.json("GET", f"{self._version(project, model, version)}/evaluations")
        return [EvaluationSummary.model_validate(row) for row in rows]

    def get_evaluation(self, project: str, model: str, version: int | str, name: str) -> EvaluationRead:
        url = f"{self._version(project, model, version)}/evaluations/{name}"
        return EvaluationRead.model_validate(self._t.json("GET", url))

    def delete_evaluation(self, project: str, model: str, version: int | str, name: str) -> None:
        self._t.json("DELETE", f"{self._version(project, model, version)}/evaluations/{name}")

    def compare_evaluations(
        self, project: str, model: str, *, name: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[EvaluationSummary]:
        """Evaluations across versions, newest version first: all named ones, or those called `name`
        (`training`: each version's own)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, **({"name": name} if name else {})}
        body = self._t.json("GET", f"{self._models(project)}/{model}/evaluations", params=params)
        return Page[EvaluationSummary].model_validate(body)

    # -- aliases -------------------------------------------------------------------------------------------------

    def set_alias(self, project: str, model: str, alias: str, version: int) -> AliasRead:
        body = self._t.json("PUT", f"{self._models(project)}/{model}/aliases/{alias}", json={"version": version})
        return AliasRead.model_validate(body)

    def delete_alias(self, project: str, model: str, alias: str) -> None:
        self._t.json("DELETE", f"{self._models(project)}/{model}/aliases/{alias}")

    def list_aliases(self, project: str, model: str) -> builtins.list[AliasRead]:
        return [AliasRead.model_validate(a) for a in self._t.json("GET", f"{self._models(project)}/{model}/aliases")]

    # -- download ------------------------------------------------------------------------------------------------

    def download(
        self,
        project: str,
        model: str,
        version: int | str,
        dest_dir: str | os.PathLike[str],
        *,
        paths: Iterable[str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Path]:
        """Download the artifacts of a version (all, or `paths`) under `dest_dir`; returns {artifact path: file}.

        The version is resolved once (an alias that moves meanwhile does not mix versions). Raises IntegrityFailure
        when a file's bytes do not match its recorded size and SHA-256; no partial file is left.
        """
        resolved = self.get_version(project, model, version)
        listed = {a.path: a for a in resolved.artifacts}
        wanted = list(listed) if paths is None else list(paths)
        missing = [p for p in wanted if p not in listed]
        if missing:
            raise NotFound(f"{model} v{resolved.version} has no artifact {missing[0]!r}")
        root = Path(dest_dir)
        targets = {p: _target(root, p) for p in wanted}
        meter = _Meter(sum(listed[p].size for p in wanted), progress)
        base = self._version(project, model, resolved.version)
        for name in wanted:
            url = f"{base}/artifacts/{quote(name, safe='/')}"
            self._download_one(url, listed[name], targets[name], meter)
        return targets

    def _download_one(self, url: str, artifact: ArtifactRead, target: Path, meter: _Meter) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha, size, declared = self._stream_into(url, artifact, out, meter)
            problem = None
            if declared is not None and declared != artifact.sha256:
                problem = f"the server sent it as {declared}, not {artifact.sha256}"
            elif size != artifact.size:
                problem = f"received {size} of {artifact.size} bytes"
            elif sha != artifact.sha256:
                problem = f"its bytes hash to {sha}, not {artifact.sha256}"
            if problem is not None:
                raise IntegrityFailure(f"artifact {artifact.path!r} failed its integrity check: {problem}")
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _stream_into(self, url: str, artifact: ArtifactRead, out: Any, meter: _Meter) -> tuple[str, int, str | None]:
        from bottega.sdk.transport import raise_for_problem

        digest = hashlib.sha256()
        size = 0
        try:
            with self._t.http.stream("GET", url, headers=self._t.headers) as response:
                if response.is_error:
                    response.read()
                    raise_for_problem(response)
                declared = response.headers.get("x-bottega-sha256")
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    meter.advance(len(chunk))
        except httpx.RemoteProtocolError as exc:
            raise IntegrityFailure(
                f"the download of artifact {artifact.path!r} stopped after {size} of {artifact.size} bytes: the "
                f"server refuses to send bytes that fail their integrity check (or the connection broke): {exc}"
            ) from exc
        return digest.hexdigest(), size, declared
