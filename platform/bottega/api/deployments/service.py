"""Deployments: create, read, update, roll back and undeploy; every change appends an immutable revision.

Viewers read, editors create, update and roll back, owners also undeploy. Updates are optimistic: the caller names
the revision its change is based on (`If-Match: "N"` or `expected_revision`), and a change based on a revision that
is no longer current is refused with 409, so no update is ever lost.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import Deployment, DeploymentRevision, Project
from bottega.api.deployments import repository as repo
from bottega.api.deployments.schemas import (
    BatchDeploymentCreate,
    BatchSpec,
    DeploymentRead,
    DeploymentRollback,
    DeploymentUpdate,
    ModelRef,
    OnlineDeploymentCreate,
    OnlineSpec,
    RevisionRead,
)
from bottega.api.jobs import cron
from bottega.api.pages import Page, PageParams
from bottega.core.errors import Conflict, InvalidInput, NotFound, RevisionRequired, StaleRevision
from bottega.core.names import field_errors


def _expected(body: int | None, header: int | None, *, required: bool, current: int) -> int | None:
    if body is not None and header is not None and body != header:
        raise InvalidInput(f"If-Match says revision {header} but expected_revision says {body}; send one of them")
    expected = body if body is not None else header
    if expected is None and required:
        raise RevisionRequired(
            f"changing a deployment needs the revision it is based on (the current one is {current}): send the "
            f'header `If-Match: "{current}"` or `expected_revision: {current}` in the body, so that concurrent '
            "changes are never lost",
            current_revision=current,
        )
    return expected


def _stale(name: str, expected: int, current: int) -> StaleRevision:
    return StaleRevision(
        f"deployment {name!r} is at revision {current}, not {expected}: someone changed it meanwhile; "
        "read it again and re-apply your change",
        current_revision=current,
        expected_revision=expected,
    )


def _deployment(session: Session, project: Project, name: str) -> Deployment:
    deployment = repo.by_name(session, project.id, name)
    if deployment is None:
        raise NotFound(f"deployment {name!r} does not exist in project {project.name!r}")
    return deployment


def _current(session: Session, deployment: Deployment) -> DeploymentRevision:
    row = repo.revision(session, deployment.id, deployment.revision)
    if row is None:  # the revision row is written in the same transaction as the deployment row
        raise Conflict(f"deployment {deployment.name!r} has no revision {deployment.revision}")
    return row


def _parse(kind: str, spec: dict[str, Any]) -> OnlineSpec | BatchSpec:
    model = OnlineSpec if kind == "online" else BatchSpec
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        errors, detail = field_errors(exc.errors(), "body.spec")
        raise InvalidInput(f"not a valid {kind} spec: {detail}", errors=errors) from exc


def _resolve_ref(session: Session, project: Project, ref: ModelRef) -> tuple[int | None, str | None]:
    """The version a reference names, or (None, why not)."""
    model = repo.model_id(session, project.id, ref.model)
    if model is None:
        return None, f"model {ref.model!r} does not exist in project {project.name!r}"
    if ref.version is not None:
        if repo.version_exists(session, model, ref.version):
            return ref.version, None
        return None, f"model {ref.model!r} has no version {ref.version} in project {project.name!r}"
    assert ref.alias is not None
    version = repo.alias_version(session, model, ref.alias)
    if version is None:
        return None, f"model {ref.model!r} has no alias {ref.alias!r} in project {project.name!r}"
    return version, None


def _resolve_all(session: Session, project: Project, refs: list[tuple[str, ModelRef]]) -> None:
    """Pin every reference to a version number (in place); one 422 lists every reference that does not exist."""
    errors: list[dict[str, Any]] = []
    for field, ref in refs:
        version, problem = _resolve_ref(session, project, ref)
        if problem is not None:
            errors.append({"field": field, "message": problem, "type": "registry"})
        else:
            ref.version = version
    if errors:
        raise InvalidInput("; ".join(e["message"] for e in errors), errors=errors)
    seen: dict[tuple[str, int | None], str] = {}
    for field, ref in refs:  # a version serves once: as one target or one shadow
        twin = seen.get((ref.model, ref.version))
        if twin is not None:
            message = f"{ref.model}:{ref.version} appears twice (at {twin} and {field}; aliases were resolved)"
            raise InvalidInput(message, errors=[{"field": field, "message": message, "type": "duplicate"}])
        seen[(ref.model, ref.version)] = field


def _validated(session: Session, project: Project, kind: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a spec against the deployment's kind and the registry; the stored form pins every version."""
    spec = _parse(kind, raw)
    if isinstance(spec, OnlineSpec):
        refs: list[tuple[str, ModelRef]] = [(f"body.spec.targets.{i}", t) for i, t in enumerate(spec.targets)]
        refs += [(f"body.spec.shadows.{i}", s) for i, s in enumerate(spec.shadows)]
    else:
        spec.schedule = _normalized_cron(spec.schedule)
        refs = [("body.spec", spec)]
    _resolve_all(session, project, refs)
    return spec.model_dump(mode="json")


def _cron_error(message: str) -> InvalidInput:
    return InvalidInput(message, errors=[{"field": "body.spec.schedule", "message": message, "type": "cron"}])


def _normalized_cron(expression: str) -> str:
    """The schedule normalized (`jobs.cron.normalize`: 5 fields, 6 with seconds first, or an alias such as `@daily`,
    in UTC; one that never fires, `0 0 31 2 *`, is refused too)."""
    try:
        return cron.normalize(expression, utcnow())
    except cron.CronError as exc:
        raise _cron_error(str(exc)) from exc


def revision_read(row: DeploymentRevision) -> RevisionRead:
    return RevisionRead(
        revision=row.revision,
        sequence=row.id,
        active=row.active,
        spec=row.spec,
        reason=row.reason,
        rolled_back_from=row.rolled_back_from,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _read(project: str, deployment: Deployment, current: DeploymentRevision) -> DeploymentRead:
    return DeploymentRead(
        project=project,
        name=deployment.name,
        kind="online" if deployment.kind == "online" else "batch",
        revision=current.revision,
        sequence=current.id,
        active=current.active,
        spec=current.spec,
        reason=current.reason,
        rolled_back_from=current.rolled_back_from,
        updated_by=current.created_by,
        updated_at=current.created_at,
        created_by=deployment.created_by,
        created_at=deployment.created_at,
    )


def _append(
    session: Session,
    principal: Principal,
    deployment: Deployment,
    expected: int,
    *,
    spec: dict[str, Any],
    active: bool,
    reason: str,
    rolled_back_from: int | None = None,
) -> DeploymentRevision:
    """Write revision `expected + 1` if `expected` is still the current revision, else raise 409."""
    now = utcnow()
    if not repo.advance(session, deployment.id, expected, active, now):
        raise _stale(deployment.name, expected, repo.current_revision_number(session, deployment.id))
    for key, value in (("revision", expected + 1), ("active", active), ("updated_at", now)):
        set_committed_value(deployment, key, value)
    repo.lock_change_sequence(session)
    row = DeploymentRevision(
        deployment_id=deployment.id,
        revision=expected + 1,
        spec=spec,
        active=active,
        reason=reason,
        rolled_back_from=rolled_back_from,
        created_by=principal.user,
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # the unique (deployment_id, revision) backs up the conditional update
        raise _stale(deployment.name, expected, expected + 1) from exc
    return row


def _audit(
    session: Session, principal: Principal, action: str, project: str, name: str, summary: str, **details: Any
) -> None:
    target = f"project:{project}/deployment:{name}"
    record(session, principal, action, target, project=project, summary=summary, details=details)


def _sync_schedule(
    session: Session, principal: Principal, project: Project, name: str, spec: dict[str, Any], active: bool
) -> None:
    """A batch deployment fires `serving.batch_score` on its cron through a job schedule kept in step here:
    created with the deployment, changed with its spec, disabled while it is undeployed."""
    schedule = repo.schedule_name(name)
    params = {"deployment": name}
    existing = repo.job_schedule(session, project.id, schedule)
    if existing is not None and (existing.job_type != repo.BATCH_JOB_TYPE or existing.params != params):
        raise Conflict(
            f"job schedule {schedule!r} in project {project.name!r} is not batch deployment {name!r}'s, but a "
            "batch deployment's cron needs that name: rename or delete that schedule, then try again"
        )
    expression = str(spec["schedule"])
    change = repo.upsert_batch_schedule(
        session, project.id, schedule, params, expression, active=active, user=principal.user, now=utcnow()
    )
    if change is None:
        return
    state = "" if active else " (disabled: undeployed)"
    record(
        session,
        principal,
        "job.schedule.create" if change == "created" else "job.schedule.update",
        f"project:{project.name}/job-schedule:{schedule}",
        project=project.name,
        summary=f"{change} by deployment {name}: {repo.BATCH_JOB_TYPE} at {expression!r}{state}",
        details={"deployment": name, "job_type": repo.BATCH_JOB_TYPE, "cron": expression, "enabled": active},
    )


def create(
    session: Session, principal: Principal, project_name: str, body: OnlineDeploymentCreate | BatchDeploymentCreate
) -> DeploymentRead:
    project = access.project_for(session, principal, project_name, Role.editor)
    existing = repo.by_name(session, project.id, body.name)
    if existing is not None:
        hint = "" if existing.active else f" (undeployed at revision {existing.revision}: PUT a spec to redeploy it)"
        raise Conflict(f"deployment {body.name!r} already exists in project {project_name!r}{hint}")
    spec = _validated(session, project, body.kind, body.spec.model_dump(mode="json"))
    now = utcnow()
    deployment = Deployment(
        project_id=project.id,
        name=body.name,
        kind=body.kind,
        revision=1,
        active=True,
        created_by=principal.user,
        created_at=now,
        updated_at=now,
    )
    session.add(deployment)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"deployment {body.name!r} already exists in project {project_name!r}") from exc
    repo.lock_change_sequence(session)
    row = DeploymentRevision(
        deployment_id=deployment.id,
        revision=1,
        spec=spec,
        active=True,
        reason=body.reason,
        created_by=principal.user,
        created_at=now,
    )
    session.add(row)
    session.flush()
    if body.kind == "batch":
        _sync_schedule(session, principal, project, body.name, spec, True)
    summary = f"created {body.kind} deployment {body.name} (revision 1)" + (f": {body.reason}" if body.reason else "")
    _audit(
        session,
        principal,
        "deployment.create",
        project_name,
        body.name,
        summary,
        kind=body.kind,
        from_revision=None,
        to_revision=1,
        reason=body.reason,
    )
    return _read(project_name, deployment, row)


def get(session: Session, principal: Principal, project_name: str, name: str) -> DeploymentRead:
    project = access.project_for(session, principal, project_name, Role.viewer)
    deployment = _deployment(session, project, name)
    return _read(project_name, deployment, _current(session, deployment))


def list_deployments(
    session: Session,
    principal: Principal,
    project_name: str,
    kind: str | None,
    include_undeployed: bool,
    page: PageParams,
) -> Page[DeploymentRead]:
    project = access.project_for(session, principal, project_name, Role.viewer)
    rows, total = repo.listing(session, project.id, kind, include_undeployed, page.limit, page.offset)
    return Page.of([_read(project_name, d, r) for d, r in rows], total, page)


def history(
    session: Session, principal: Principal, project_name: str, name: str, page: PageParams
) -> Page[RevisionRead]:
    project = access.project_for(session, principal, project_name, Role.viewer)
    deployment = _deployment(session, project, name)
    rows, total = repo.history(session, deployment.id, page.limit, page.offset)
    return Page.of([revision_read(r) for r in rows], total, page)


def revision(session: Session, principal: Principal, project_name: str, name: str, number: int) -> RevisionRead:
    project = access.project_for(session, principal, project_name, Role.viewer)
    deployment = _deployment(session, project, name)
    row = repo.revision(session, deployment.id, number)
    if row is None:
        raise NotFound(f"deployment {name!r} has no revision {number} (its current revision is {deployment.revision})")
    return revision_read(row)


def update(
    session: Session,
    principal: Principal,
    project_name: str,
    name: str,
    body: DeploymentUpdate,
    if_match: int | None,
) -> DeploymentRead:
    """Revision N+1 with a new spec; an undeployed deployment becomes active again."""
    project = access.project_for(session, principal, project_name, Role.editor)
    deployment = _deployment(session, project, name)
    expected = _expected(body.expected_revision, if_match, required=True, current=deployment.revision)
    assert expected is not None
    if expected != deployment.revision:
        raise _stale(name, expected, deployment.revision)
    redeploy = not deployment.active
    spec = _validated(session, project, deployment.kind, body.spec)
    row = _append(session, principal, deployment, expected, spec=spec, active=True, reason=body.reason)
    if deployment.kind == "batch":
        _sync_schedule(session, principal, project, name, spec, True)
    verb = "redeployed" if redeploy else "updated"
    summary = f"{verb} {name}: revision {expected} -> {row.revision}" + (f": {body.reason}" if body.reason else "")
    _audit(
        session,
        principal,
        "deployment.update",
        project_name,
        name,
        summary,
        from_revision=expected,
        to_revision=row.revision,
        reason=body.reason,
        redeployed=redeploy,
    )
    return _read(project_name, deployment, row)


def rollback(
    session: Session,
    principal: Principal,
    project_name: str,
    name: str,
    body: DeploymentRollback,
    if_match: int | None,
) -> DeploymentRead:
    """A new revision that restores the spec (and active state) of `to_revision`, by default the previous one."""
    project = access.project_for(session, principal, project_name, Role.editor)
    deployment = _deployment(session, project, name)
    expected = _expected(body.expected_revision, if_match, required=False, current=deployment.revision)
    base = deployment.revision if expected is None else expected
    if base != deployment.revision:
        raise _stale(name, base, deployment.revision)
    if body.to_revision is None and base == 1:
        raise Conflict(f"deployment {name!r} is at its first revision: there is no earlier revision to roll back to")
    restore = body.to_revision if body.to_revision is not None else base - 1
    if restore == base:
        raise Conflict(f"deployment {name!r} is already at revision {base}")
    source = repo.revision(session, deployment.id, restore)
    if source is None:
        raise NotFound(f"deployment {name!r} has no revision {restore} (its current revision is {base})")
    spec = _validated(session, project, deployment.kind, source.spec)  # its versions must still exist
    row = _append(
        session,
        principal,
        deployment,
        base,
        spec=spec,
        active=source.active,
        reason=body.reason,
        rolled_back_from=restore,
    )
    if deployment.kind == "batch":
        _sync_schedule(session, principal, project, name, spec, source.active)
    summary = f"rolled {name} back to revision {restore}: revision {base} -> {row.revision}"
    summary += f": {body.reason}" if body.reason else ""
    _audit(
        session,
        principal,
        "deployment.rollback",
        project_name,
        name,
        summary,
        from_revision=base,
        to_revision=row.revision,
        restored_revision=restore,
        reason=body.reason,
    )
    return _read(project_name, deployment, row)


def undeploy(
    session: Session, principal: Principal, project_name: str, name: str, reason: str, if_match: int | None
) -> DeploymentRead:
    """A new revision with `active=false` and the same spec: replicas stop serving it; the history stays."""
    project = access.project_for(session, principal, project_name, Role.owner)
    deployment = _deployment(session, project, name)
    expected = _expected(None, if_match, required=False, current=deployment.revision)
    base = deployment.revision if expected is None else expected
    if base != deployment.revision:
        raise _stale(name, base, deployment.revision)
    if not deployment.active:
        raise Conflict(f"deployment {name!r} is already undeployed (revision {base})")
    current = _current(session, deployment)
    row = _append(session, principal, deployment, base, spec=current.spec, active=False, reason=reason)
    if deployment.kind == "batch":
        _sync_schedule(session, principal, project, name, current.spec, False)
    summary = f"undeployed {name}: revision {base} -> {row.revision}" + (f": {reason}" if reason else "")
    _audit(
        session,
        principal,
        "deployment.undeploy",
        project_name,
        name,
        summary,
        from_revision=base,
        to_revision=row.revision,
        reason=reason,
    )
    return _read(project_name, deployment, row)
