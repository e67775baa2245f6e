"""SDK methods for runs: experiment tracking (params, metrics, tags) and streamed, verified artifacts.

    run = client.runs.create("eats", name="xgb-depth-8", params={"max_depth": 8})
    client.runs.log_metrics("eats", run.id, {"auc": 0.91, "logloss": 0.23}, step=10)
    client.runs.upload_artifact("eats", run.id, "model.onnx")
    client.runs.finish("eats", run.id)

Artifacts never sit whole in memory on either side: uploads stream the file in chunks after hashing it, downloads
stream into a temporary file next to the destination, re-hash it, and only then move it into place.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bottega.api.pages import Page
from bottega.api.runs.schemas import (
    MAX_METRICS_PER_CALL,
    ArtifactRead,
    MetricHistory,
    MetricPointRead,
    MetricsLogged,
    RunComparison,
    RunRead,
    artifact_path_problem,
)
from bottega.core.errors import IntegrityFailure, InvalidInput

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport

CHUNK = 1024 * 1024
SHA_HEADER = "X-Bottega-Sha256"
Progress = Callable[[int, int], None]
"""Called as `progress(bytes_done, bytes_total)` after each chunk."""
ParamValue = str | int | float | bool
MetricInput = Mapping[str, float] | Sequence[Mapping[str, Any]]


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _pairs(values: Mapping[str, str] | None) -> list[str] | None:
    return [f"{k}:{v}" for k, v in values.items()] if values else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path, total: int, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            done += len(chunk)
            yield chunk
            if progress is not None:
                progress(done, total)


def _points(metrics: MetricInput, step: int, timestamp: datetime | None) -> list[dict[str, Any]]:
    """`{key: value}` (all at `step`) or a list of `{key, value, step?, timestamp?}` as JSON-ready dicts."""
    if isinstance(metrics, Mapping):
        raw: list[dict[str, Any]] = [{"key": k, "value": v, "step": step} for k, v in metrics.items()]
        if timestamp is not None:
            for point in raw:
                point["timestamp"] = timestamp
    else:
        raw = [dict(point) for point in metrics]
    out = []
    for point in raw:
        value = point.get("value")
        if isinstance(value, int | float) and not math.isfinite(value):
            raise InvalidInput(f"metric {point.get('key')!r} is {value}: NaN and infinities cannot be logged")
        moment = point.get("timestamp")
        if isinstance(moment, datetime):
            point["timestamp"] = moment.isoformat()
        out.append(point)
    return out


class RunsAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api

    def _base(self, project: str) -> str:
        return f"{self._api}/projects/{project}/runs"

    def _run(self, project: str, run_id: str) -> str:
        return f"{self._base(project)}/{run_id}"

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def create(
        self,
        project: str,
        name: str = "",
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
        parent_run_id: str | None = None,
    ) -> RunRead:
        """Start a run (status `running`); you are its creator."""
        body = {
            "name": name,
            "description": description,
            "tags": dict(tags or {}),
            "params": dict(params or {}),
            "parent_run_id": parent_run_id,
        }
        return RunRead.model_validate(self._t.json("POST", self._base(project), json=body))

    def get(self, project: str, run_id: str) -> RunRead:
        return RunRead.model_validate(self._t.json("GET", self._run(project, run_id)))

    def list(
        self,
        project: str,
        *,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[str] | None = None,
        name: str | None = None,
        parent_run_id: str | None = None,
        order_by: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[RunRead]:
        """Search runs. `tags`/`params` must all match exactly; `metrics` are conditions on the latest value such
        as `"auc>=0.9"`; `order_by` is start_time, name or metrics.<key>, with `-` for descending."""
        query = _params(
            status=status,
            tag=_pairs(tags),
            param=_pairs(params),
            metric=list(metrics) if metrics else None,
            name=name,
            parent_run_id=parent_run_id,
            order_by=order_by,
            limit=limit,
            offset=offset,
        )
        return Page[RunRead].model_validate(self._t.json("GET", self._base(project), params=query))

    def update(
        self,
        project: str,
        run_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        status: str | None = None,
    ) -> RunRead:
        body = _params(name=name, description=description, status=status)
        return RunRead.model_validate(self._t.json("PATCH", self._run(project, run_id), json=body))

    def set_status(self, project: str, run_id: str, status: str) -> RunRead:
        return self.update(project, run_id, status=status)

    def finish(self, project: str, run_id: str, status: str = "finished") -> RunRead:
        """End a run as finished (or failed / killed)."""
        return self.update(project, run_id, status=status)

    def delete(self, project: str, run_id: str) -> None:
        self._t.json("DELETE", self._run(project, run_id))

    def compare(self, project: str, run_ids: Sequence[str]) -> RunComparison:
        query = {"ids": ",".join(run_ids)}
        return RunComparison.model_validate(self._t.json("GET", f"{self._base(project)}/compare", params=query))

    # -- params, metrics, tags -------------------------------------------------------------------------------------

    def log_params(self, project: str, run_id: str, params: Mapping[str, ParamValue]) -> RunRead:
        """Log params; a key already logged with another value raises Conflict (params are immutable)."""
        body = {"params": dict(params)}
        return RunRead.model_validate(self._t.json("POST", f"{self._run(project, run_id)}/params", json=body))

    def log_param(self, project: str, run_id: str, key: str, value: ParamValue) -> RunRead:
        return self.log_params(project, run_id, {key: value})

    def log_metrics(
        self,
        project: str,
        run_id: str,
        metrics: MetricInput,
        *,
        step: int = 0,
        timestamp: datetime | None = None,
    ) -> int:
        """Log `{key: value}` at `step`, or a list of `{key, value, step?, timestamp?}` points (any number: they
        are sent in batches of 10,000). Returns the number of points logged."""
        points = _points(metrics, step, timestamp)
        logged = 0
        for start in range(0, len(points), MAX_METRICS_PER_CALL):
            batch = points[start : start + MAX_METRICS_PER_CALL]
            answer = self._t.json("POST", f"{self._run(project, run_id)}/metrics", json={"metrics": batch})
            logged += MetricsLogged.model_validate(answer).logged
        return logged

    def log_metric(
        self, project: str, run_id: str, key: str, value: float, *, step: int = 0, timestamp: datetime | None = None
    ) -> int:
        return self.log_metrics(project, run_id, {key: value}, step=step, timestamp=timestamp)

    def metric_history(self, project: str, run_id: str, key: str) -> builtins.list[MetricPointRead]:
        """Every point of a metric, ordered by step."""
        path = f"{self._run(project, run_id)}/metrics/{quote(key, safe='/')}"
        return MetricHistory.model_validate(self._t.json("GET", path)).points

    def set_tags(self, project: str, run_id: str, tags: Mapping[str, str]) -> RunRead:
        """Merge tags into the run's tags."""
        body = {"tags": dict(tags)}
        return RunRead.model_validate(self._t.json("PUT", f"{self._run(project, run_id)}/tags", json=body))

    def set_tag(self, project: str, run_id: str, key: str, value: str) -> RunRead:
        return self.set_tags(project, run_id, {key: value})

    def delete_tag(self, project: str, run_id: str, key: str) -> None:
        self._t.json("DELETE", f"{self._run(project, run_id)}/tags/{quote(key, safe='/')}")

    # -- artifacts -------------------------------------------------------------------------------------------------

    def _artifact_url(self, project: str, run_id: str, path: str) -> str:
        problem = artifact_path_problem(path)
        if problem is not None:  # checked here too: HTTP clients would silently resolve `..` in a URL
            raise InvalidInput(f"{path!r}: {problem}")
        return f"{self._run(project, run_id)}/artifacts/{quote(path, safe='/')}"

    def list_artifacts(
        self, project: str, run_id: str, *, prefix: str | None = None, limit: int = 500, offset: int = 0
    ) -> Page[ArtifactRead]:
        query = _params(prefix=prefix, limit=limit, offset=offset)
        answer = self._t.json("GET", f"{self._run(project, run_id)}/artifacts", params=query)
        return Page[ArtifactRead].model_validate(answer)

    def upload_artifact(
        self,
        project: str,
        run_id: str,
        local_path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> ArtifactRead:
        """Upload a file as an artifact of a run (replacing the same path), streamed in chunks.

        The file's sha256 is computed first and sent as `X-Bottega-Sha256`, so bytes damaged in transit are
        refused by the server (InvalidInput) and nothing is stored. `artifact_path` defaults to the file name.
        """
        source = Path(local_path)
        if not source.is_file():
            raise InvalidInput(f"{source} is not a file")
        size = source.stat().st_size
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            SHA_HEADER: file_sha256(source),
        }
        url = self._artifact_url(project, run_id, artifact_path or source.name)
        response = self._t.request("PUT", url, content=_chunks(source, size, progress), headers=headers)
        if progress is not None and size == 0:
            progress(0, 0)
        return ArtifactRead.model_validate(response.json())

    def download_artifact(
        self,
        project: str,
        run_id: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download an artifact to `dest` (a file path, or an existing directory to put it in); returns the path.

        The bytes go to a temporary file beside the destination and are re-hashed on the way; a mismatch with the
        server's `X-Bottega-Sha256` (or a transfer cut short) raises IntegrityFailure and leaves no file behind.
        """
        target = Path(dest)
        if target.is_dir():
            target = target / path.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._stream_into(self._artifact_url(project, run_id, path), path, out, progress)
            tmp.replace(target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return target

    def _stream_into(self, url: str, path: str, out: Any, progress: Progress | None) -> None:
        from bottega.sdk.transport import raise_for_problem

        with self._t.http.stream("GET", url, headers=self._t.headers) as response:
            if response.is_error:
                response.read()
                raise_for_problem(response)
            expected = response.headers.get(SHA_HEADER, "").lower()
            total = int(response.headers.get("Content-Length", "-1"))
            digest = hashlib.sha256()
            done = 0
            try:
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            except httpx.RemoteProtocolError as exc:
                raise IntegrityFailure(
                    f"the download of {path!r} was cut after {done} of {total} bytes: the server aborted it (its "
                    f"stored copy may be corrupted; see the server log) or the connection broke ({exc})",
                    path=path,
                ) from exc
        actual = digest.hexdigest()
        if done != total or actual != expected:
            raise IntegrityFailure(
                f"the download of {path!r} does not match the server's checksum: got {done} bytes hashing to "
                f"{actual}, expected {total} bytes hashing to {expected or '(no checksum sent)'}; nothing was written",
                path=path,
                sha256=actual,
                expected_sha256=expected,
            )
