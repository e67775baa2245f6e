"""Model versions: immutable once created (only the description changes), numbered 1, 2, 3... per model.

Version numbers are taken under a lock on the model's row (the first write of the creating transaction updates the
model's `updated_at`): PostgreSQL serializes concurrent creates on that row lock and SQLite on its single writer,
so the next number is read only after the previous create committed. The unique (model, version) constraint stays
the last line of defence: a collision becomes a 409 that the client may retry.

Artifacts reference content-addressed blobs; registering never copies bytes. A version may reference a blob only
if the project may: uploaded to it, or already used by one of its runs or versions (`repository.accessible_blobs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.artifacts.store import BlobStore
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import Model, ModelVersion, ModelVersionArtifact, Project
from bottega.api.pages import Page, PageParams
from bottega.api.registry import repository as repo
from bottega.api.registry.schemas import (
    ArtifactRead,
    Signature,
    VerifyFile,
    VerifyReport,
    VersionCreate,
    VersionRead,
    VersionSummary,
    VersionUpdate,
)
from bottega.api.registry.service import load_model, resolve_version, target
from bottega.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound


@dataclass(frozen=True)
class Download:
    """What the router needs to stream one artifact after the transaction has ended."""

    path: str
    sha256: str
    size: int


def _summary(model: Model, version: ModelVersion, aliases: list[str]) -> VersionSummary:
    return VersionSummary(
        model=model.name,
        version=version.version,
        run_id=version.run_id,
        flavor=version.flavor,
        signature=Signature.model_validate(version.signature),
        metrics=dict(version.metrics),
        lineage=dict(version.lineage),
        description=version.description,
        created_by=version.created_by,
        created_at=version.created_at,
        aliases=aliases,
    )


def _read(session: Session, model: Model, version: ModelVersion) -> VersionRead:
    aliases = repo.aliases_of_versions(session, [version.id])[version.id]
    return VersionRead(
        **_summary(model, version, aliases).model_dump(),
        evaluation=dict(version.evaluation),
        artifacts=[
            ArtifactRead(path=a.path, sha256=a.sha256, size=a.size) for a in repo.artifacts(session, version.id)
        ],
    )


def _explicit_artifacts(session: Session, project: Project, body: VersionCreate) -> dict[str, tuple[str, int]]:
    shas = [ref.sha256 for ref in body.artifacts]
    sizes = repo.blob_sizes(session, shas)
    allowed = repo.accessible_blobs(session, project.id, shas)
    out: dict[str, tuple[str, int]] = {}
    for index, ref in enumerate(body.artifacts):
        if ref.sha256 not in sizes or ref.sha256 not in allowed:
            raise InvalidInput(
                f"artifact {ref.path!r}: blob {ref.sha256} was not uploaded to project {project.name!r}; "
                "upload it first (PUT /projects/{project}/blobs)",
                field=f"artifacts.{index}.sha256",
            )
        out[ref.path] = (ref.sha256, sizes[ref.sha256])
    return out


def _run_artifacts(session: Session, run_id: str, selection: bool | list[str]) -> dict[str, tuple[str, int]]:
    rows = repo.run_artifacts(session, run_id)
    if selection is True:
        if not rows:
            raise InvalidInput(f"run {run_id} has no artifacts to register", field="from_run_artifacts")
        return {row.path: (row.sha256, row.size) for row in rows}
    out: dict[str, tuple[str, int]] = {}
    for index, wanted in enumerate(selection if isinstance(selection, list) else []):
        if wanted.endswith("/"):
            picked = [row for row in rows if row.path.startswith(wanted)]
        else:
            picked = [row for row in rows if row.path == wanted]
        if not picked:
            raise InvalidInput(f"run {run_id} has no artifact {wanted!r}", field=f"from_run_artifacts.{index}")
        out.update({row.path: (row.sha256, row.size) for row in picked})
    return out


def _collect_artifacts(
    session: Session, project: Project, body: VersionCreate, run_id: str | None
) -> dict[str, tuple[str, int]]:
    files = _explicit_artifacts(session, project, body)
    if run_id is not None and body.from_run_artifacts is not False:
        from_run = _run_artifacts(session, run_id, body.from_run_artifacts)
        clash = sorted(set(files) & set(from_run))
        if clash:
            raise InvalidInput(
                f"artifact path {clash[0]!r} is both in `artifacts` and in the run's artifacts", field="artifacts"
            )
        files.update(from_run)
    if not files:
        raise InvalidInput("a version needs at least one artifact", field="artifacts")
    return files


def create(
    session: Session, principal: Principal, project_name: str, model_name: str, body: VersionCreate
) -> VersionRead:
    project = access.project_for(session, principal, project_name, Role.editor)
    model = load_model(session, project, model_name)
    now = utcnow()
    model.updated_at = now
    session.flush()  # takes the model's row lock before the version number is read (see the module docstring)
    if body.run_id is not None and repo.run_in_project(session, body.run_id, project.id) is None:
        raise InvalidInput(f"run {body.run_id!r} does not exist in project {project_name!r}", field="run_id")
    files = _collect_artifacts(session, project, body, body.run_id)
    number = repo.next_version_number(session, model.id)
    lineage = {**body.lineage, "created_by": principal.user, "created_at": now.isoformat(), "run_id": body.run_id}
    version = ModelVersion(
        model_id=model.id,
        version=number,
        run_id=body.run_id,
        flavor=body.flavor,
        signature=body.signature.model_dump(mode="json"),
        metrics=dict(body.metrics),
        evaluation=body.evaluation,
        lineage=lineage,
        description=body.description,
        created_by=principal.user,
        created_at=now,
    )
    session.add(version)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"version {number} of model {model_name!r} was registered concurrently; retry the request"
        ) from exc
    session.add_all(
        ModelVersionArtifact(version_id=version.id, path=path, sha256=sha, size=size)
        for path, (sha, size) in sorted(files.items())
    )
    record(
        session,
        principal,
        "model.version.create",
        target(project_name, model_name, f"version:{number}"),
        project=project_name,
        summary=f"registered {model_name} v{number} ({body.flavor}, {len(files)} artifact(s))",
        details={"model": model_name, "version": number, "run_id": body.run_id, "flavor": body.flavor},
    )
    session.flush()
    return _read(session, model, version)


def list_versions(
    session: Session, principal: Principal, project_name: str, model_name: str, page: PageParams, newest_first: bool
) -> Page[VersionSummary]:
    project = access.project_for(session, principal, project_name, Role.viewer)
    model = load_model(session, project, model_name)
    rows, total = repo.versions_page(session, model.id, page.limit, page.offset, newest_first)
    aliases = repo.aliases_of_versions(session, [v.id for v in rows])
    return Page.of([_summary(model, v, aliases[v.id]) for v in rows], total, page)


def _load(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, needed: Role
) -> tuple[Model, ModelVersion]:
    project = access.project_for(session, principal, project_name, needed)
    model = load_model(session, project, model_name)
    return model, resolve_version(session, model, ref)


def get(session: Session, principal: Principal, project_name: str, model_name: str, ref: str) -> VersionRead:
    model, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    return _read(session, model, version)


def update(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, body: VersionUpdate
) -> VersionRead:
    model, version = _load(session, principal, project_name, model_name, ref, Role.editor)
    if body.description != version.description:
        version.description = body.description
        session.flush()
        record(
            session,
            principal,
            "model.version.update",
            target(project_name, model_name, f"version:{version.version}"),
            project=project_name,
            summary=f"updated the description of {model_name} v{version.version}",
        )
    return _read(session, model, version)


def artifacts(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str
) -> list[ArtifactRead]:
    _, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    return [ArtifactRead(path=a.path, sha256=a.sha256, size=a.size) for a in repo.artifacts(session, version.id)]


def download(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str, path: str
) -> Download:
    _, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    row = repo.artifact(session, version.id, path)
    if row is None:
        raise NotFound(f"{model_name} v{version.version} has no artifact {path!r}")
    return Download(path=row.path, sha256=row.sha256, size=row.size)


def check_file(blobs: BlobStore, path: str, sha256: str, size: int) -> VerifyFile:
    """Re-read one stored blob: ok, missing, size_mismatch or corrupted."""
    base = {"path": path, "sha256": sha256, "size": size}
    if not blobs.exists(sha256):
        return VerifyFile(**base, status="missing", detail="the blob is gone from the artifact store")
    actual = blobs.size(sha256)
    if actual != size:
        return VerifyFile(**base, status="size_mismatch", detail=f"the stored blob has {actual} bytes")
    try:
        for _ in blobs.open_verified(sha256, size):
            pass
    except IntegrityFailure as exc:
        return VerifyFile(**base, status="corrupted", detail=exc.detail)
    except NotFound:
        return VerifyFile(**base, status="missing", detail="the blob is gone from the artifact store")
    return VerifyFile(**base, status="ok")


def verify_targets(
    session: Session, principal: Principal, project_name: str, model_name: str, ref: str
) -> tuple[str, int, list[Download]]:
    """The model name, version number and artifacts to re-hash (the router hashes after the transaction ends)."""
    model, version = _load(session, principal, project_name, model_name, ref, Role.viewer)
    files = [Download(path=a.path, sha256=a.sha256, size=a.size) for a in repo.artifacts(session, version.id)]
    return model.name, version.version, files


def verify(blobs: BlobStore, model_name: str, number: int, files: list[Download]) -> VerifyReport:
    """Re-hash every artifact of a version in the store (reads every byte: slow for large models)."""
    checked = [check_file(blobs, f.path, f.sha256, f.size) for f in files]
    return VerifyReport(model=model_name, version=number, ok=all(f.status == "ok" for f in checked), artifacts=checked)
