"""Feature groups of a project: versioned registration, reads, pipeline statistics, deletion.

Viewers read, editors register groups and report statistics, owners delete. Registering a group
creates version 1; the same definition again changes nothing; a compatible change creates the next version; a
breaking change (see `versioning`) is refused unless the caller asks for a new version explicitly. Versions are
immutable rows; the highest is current. Every mutation writes an audit event in the same transaction, except
statistics reports (`report_stats`), which pipelines send after every run: auditing them would bury the trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.audit.service import record
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.base import utcnow
from bottega.api.db.tables import FeatureEntity, FeatureGroup, FeatureGroupStats, FeatureGroupVersion, Project
from bottega.api.features import on_demand, versioning
from bottega.api.features import repository as repo
from bottega.api.features.entities import entity_keys, field_error, flush, keys_of, put_in
from bottega.api.features.schemas import (
    RESERVED_COLUMNS,
    AppliedEntity,
    AppliedGroup,
    BatchGroupDef,
    BatchGroupRegister,
    DefinitionsApplied,
    DefinitionsApply,
    EntityDef,
    EntityPut,
    GroupKind,
    GroupRead,
    GroupRegistered,
    GroupStats,
    GroupVersionRead,
    OnDemandGroupDef,
    OnDemandGroupRegister,
    Outcome,
    StatsReport,
    StreamGroupDef,
    StreamGroupRegister,
)
from bottega.api.jobs import cron
from bottega.api.pages import Page, PageParams
from bottega.core.errors import Conflict, NotFound
from bottega.core.keys import check_key_columns

AUDITED_CHANGES = 50
GroupDef = BatchGroupDef | StreamGroupDef | OnDemandGroupDef


def group_target(project: str, name: str) -> str:
    return f"project:{project}/feature-group:{name}"


def stats_read(stats: FeatureGroupStats | None) -> GroupStats | None:
    if stats is None:
        return None
    return GroupStats(
        rows_offline=stats.rows_offline,
        rows_online=stats.rows_online,
        last_event_time=stats.last_event_time,
        last_run_at=stats.last_run_at,
        freshness_seconds=stats.freshness_seconds,
        reported_by=stats.reported_by,
        reported_at=stats.reported_at,
    )


def refs_of(project: str, group: str, definition: dict[str, Any]) -> list[str]:
    return [f"{project}:{group}:{feature['name']}" for feature in definition["features"]]


# -- registering groups --------------------------------------------------------------------------------------------


def _checked_schedule(schedule: str | None) -> str | None:
    """The schedule normalized (`jobs.cron.normalize`: cron in UTC as the platform scheduler reads it); a 422 naming
    `schedule` when it cannot be used."""
    if schedule is None:
        return None
    try:
        return cron.normalize(schedule, datetime.now(UTC))
    except cron.CronError as exc:
        raise field_error("body.schedule", str(exc)) from exc


def _checked(definition: GroupDef, entity: FeatureEntity) -> GroupDef:
    """The definition with a normalized schedule, after the checks that need the entity."""
    keys = keys_of(entity)
    for feature in definition.features:
        if feature.name in keys:
            raise field_error(
                "body.features",
                f"feature group {definition.name!r}: feature {feature.name!r} has the name of a join key of "
                f"{entity.name!r}",
            )
        if feature.name in RESERVED_COLUMNS:
            raise field_error(
                "body.features", f"feature group {definition.name!r}: the feature name {feature.name!r} is reserved"
            )
    if isinstance(definition, BatchGroupDef | StreamGroupDef) and definition.key_columns:
        try:
            check_key_columns(definition.key_columns, keys, f"feature group {definition.name!r}: key_columns")
        except ValueError as exc:
            raise field_error("body.key_columns", str(exc)) from None
    if isinstance(definition, BatchGroupDef) and definition.schedule is not None:
        return definition.model_copy(update={"schedule": _checked_schedule(definition.schedule)})
    return definition


def _add_version(
    session: Session,
    principal: Principal,
    group: FeatureGroup,
    entity: FeatureEntity,
    canonical: dict[str, Any],
    diff: versioning.Diff,
) -> FeatureGroupVersion:
    row = FeatureGroupVersion(
        group_id=group.id,
        version=group.version,
        kind=canonical["kind"],
        entity=entity.name,
        entity_keys=[list(pair) for pair in entity.join_keys],
        definition=canonical,
        breaking=bool(diff.breaking),
        changes=diff.changes,
        created_by=principal.user,
        created_at=group.updated_at,
    )
    session.add(row)
    flush(session, f"feature group {group.name!r}")
    repo.replace_features(session, group.id, canonical["features"], canonical.get("tags", {}))
    return row


def _apply_current(group: FeatureGroup, entity: FeatureEntity, definition: GroupDef, who: str, now: datetime) -> None:
    group.entity_id = entity.id
    group.kind = definition.kind
    group.owner = definition.owner
    # On-demand groups are computed where they are read: always available online, no age of their own.
    group.online = definition.online if not isinstance(definition, OnDemandGroupDef) else True
    group.max_age_seconds = 0 if isinstance(definition, OnDemandGroupDef) else int(definition.max_age.total_seconds())
    group.updated_by, group.updated_at = who, now


def register(
    session: Session, principal: Principal, project: Project, definition: GroupDef, new_version: bool
) -> tuple[FeatureGroup, Outcome, versioning.Diff]:
    """Register a definition in a project the caller may write (see the module's docstring)."""
    entity = repo.entity(session, project.id, definition.entity)
    if entity is None:
        raise field_error(
            "body.entity",
            f"feature group {definition.name!r}: entity {definition.entity!r} does not exist in project "
            f"{project.name!r}; put it first",
        )
    definition = _checked(definition, entity)
    if isinstance(definition, OnDemandGroupDef):
        on_demand.check_inputs(session, principal, definition)
    canonical = definition.model_dump(mode="json")
    now = utcnow()
    group = repo.group(session, project.id, definition.name, for_update=True)
    if group is None:
        group = FeatureGroup(project_id=project.id, name=definition.name, version=1, created_by=principal.user)
        _apply_current(group, entity, definition, principal.user, now)
        group.created_at = now
        session.add(group)
        flush(session, f"feature group {definition.name!r}")
        diff = versioning.Diff()
        outcome: Outcome = "created"
    else:
        current = repo.version(session, group.id, group.version)
        assert current is not None, "a group always has its current version"
        diff = versioning.compare(current.definition, canonical)
        if not diff.changed:
            return group, "unchanged", diff
        _keep_read_features(session, project.name, definition)
        if diff.breaking and not new_version:
            raise Conflict(
                f"feature group {definition.name!r}: breaking change ({'; '.join(diff.breaking)}); register it "
                f"with new_version=true to create version {group.version + 1} anyway",
                breaking=diff.breaking,
                version=group.version,
            )
        group.version += 1
        _apply_current(group, entity, definition, principal.user, now)
        outcome = "updated"
    _add_version(session, principal, group, entity, canonical, diff)
    record(
        session,
        principal,
        "feature.group.register",
        group_target(project.name, group.name),
        project=project.name,
        summary=f"registered {group.name} version {group.version}" + (" (breaking)" if diff.breaking else ""),
        details={
            "version": group.version,
            "breaking": bool(diff.breaking),
            "kind": definition.kind,
            "changes": diff.changes[:AUDITED_CHANGES],
        },
    )
    return group, outcome, diff


def _keep_read_features(session: Session, project: str, definition: GroupDef) -> None:
    """Conflict when a new version would drop a feature that an on-demand group reads."""
    kept = {f.name for f in definition.features}
    for reader, used in sorted(on_demand.readers_of(session, project, definition.name).items()):
        dropped = sorted(used - kept)
        if dropped:
            raise Conflict(
                f"feature group {definition.name!r}: on-demand group {reader} reads {', '.join(dropped)}; change "
                "that group first",
                read_by=[reader],
            )


def register_group(
    session: Session, principal: Principal, project: str, definition: GroupDef, new_version: bool
) -> GroupRegistered:
    proj = access.project_for(session, principal, project, Role.editor)
    group, outcome, diff = register(session, principal, proj, definition, new_version)
    read = group_reads(session, proj.name, [group])[0]
    return GroupRegistered(**dict(read), outcome=outcome, breaking=bool(diff.breaking), changes=diff.changes)


def apply(session: Session, principal: Principal, project: str, body: DefinitionsApply) -> DefinitionsApplied:
    """Apply a definitions file in one transaction: its entities, then its groups (all or nothing)."""
    if body.project is not None and body.project != project:
        raise field_error("body.project", f"the definitions are for project {body.project!r}, not {project!r}")
    proj = access.project_for(session, principal, project, Role.editor)
    entities = []
    for entity in body.entities:
        _, outcome = put_in(session, principal, proj, entity.name, _entity_put(entity))
        entities.append(AppliedEntity(name=entity.name, outcome=outcome))
    groups = []
    # On-demand groups last: they may read groups of the same file.
    definitions: list[GroupDef] = [*body.batch_groups, *body.stream_groups, *body.on_demand_groups]
    for definition in definitions:
        group, outcome, diff = register(session, principal, proj, definition, body.new_version)
        groups.append(
            AppliedGroup(
                name=group.name,
                kind=definition.kind,
                outcome=outcome,
                version=group.version,
                breaking=bool(diff.breaking),
                changes=diff.changes,
            )
        )
    return DefinitionsApplied(project=proj.name, entities=entities, groups=groups)


def definition_of(body: BatchGroupRegister | StreamGroupRegister | OnDemandGroupRegister) -> GroupDef:
    """The group definition of a registration request (without its `new_version` flag)."""
    data = body.model_dump(exclude={"new_version"})
    if isinstance(body, StreamGroupRegister):
        return StreamGroupDef.model_validate(data)
    if isinstance(body, OnDemandGroupRegister):
        return OnDemandGroupDef.model_validate(data)
    return BatchGroupDef.model_validate(data)


def _entity_put(entity: EntityDef) -> EntityPut:
    return EntityPut(join_keys=entity.join_keys, description=entity.description)


# -- reading groups ------------------------------------------------------------------------------------------------


def group_reads(session: Session, project: str, groups: Sequence[FeatureGroup]) -> list[GroupRead]:
    entities = repo.entities_by_id(session, [g.entity_id for g in groups])
    versions = repo.current_versions(session, groups)
    stats = repo.stats_of(session, [g.id for g in groups])
    out = []
    for group in groups:
        current = versions[group.id]
        out.append(
            GroupRead.model_validate(
                {
                    "project": project,
                    "name": group.name,
                    "kind": group.kind,
                    "version": group.version,
                    "entity": entity_keys(entities[group.entity_id]),
                    "definition": current.definition,
                    "refs": refs_of(project, group.name, current.definition),
                    "stats": stats_read(stats.get(group.id)),
                    "created_by": group.created_by,
                    "created_at": group.created_at,
                    "updated_by": group.updated_by,
                    "updated_at": group.updated_at,
                }
            )
        )
    return out


def _group(session: Session, project: Project, name: str) -> FeatureGroup:
    group = repo.group(session, project.id, name)
    if group is None:
        raise NotFound(f"feature group {name!r} does not exist in project {project.name!r}")
    return group


def list_groups(
    session: Session,
    principal: Principal,
    project: str,
    kind: GroupKind | None,
    entity: str | None,
    page: PageParams,
) -> Page[GroupRead]:
    proj = access.project_for(session, principal, project, Role.viewer)
    entity_id = None
    if entity is not None:
        found = repo.entity(session, proj.id, entity)
        if found is None:
            return Page.of([], 0, page)
        entity_id = found.id
    rows, total = repo.groups(session, proj.id, kind, entity_id, page.limit, page.offset)
    return Page.of(group_reads(session, proj.name, rows), total, page)


def get_group(session: Session, principal: Principal, project: str, name: str) -> GroupRead:
    proj = access.project_for(session, principal, project, Role.viewer)
    return group_reads(session, proj.name, [_group(session, proj, name)])[0]


def _version_read(project: str, group: str, row: FeatureGroupVersion) -> GroupVersionRead:
    return GroupVersionRead.model_validate(
        {
            "project": project,
            "name": group,
            "version": row.version,
            "kind": row.kind,
            "breaking": row.breaking,
            "changes": row.changes,
            "entity": {"name": row.entity, "join_keys": dict(row.entity_keys)},
            "definition": row.definition,
            "refs": refs_of(project, group, row.definition),
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
    )


def list_versions(
    session: Session, principal: Principal, project: str, name: str, page: PageParams
) -> Page[GroupVersionRead]:
    """The versions of a group, newest first."""
    proj = access.project_for(session, principal, project, Role.viewer)
    group = _group(session, proj, name)
    rows, total = repo.versions(session, group.id, page.limit, page.offset)
    return Page.of([_version_read(proj.name, name, row) for row in rows], total, page)


def get_version(session: Session, principal: Principal, project: str, name: str, number: int) -> GroupVersionRead:
    proj = access.project_for(session, principal, project, Role.viewer)
    group = _group(session, proj, name)
    row = repo.version(session, group.id, number)
    if row is None:
        raise NotFound(f"feature group {name!r} has no version {number} (its latest is {group.version})")
    return _version_read(proj.name, name, row)


def visible_ids(session: Session, principal: Principal) -> set[int] | None:
    """The ids of the projects the caller may read, or None for all of them."""
    user = None if principal.is_admin else principal.user
    stmt = repo.visible_project_ids(session, user, principal.project_id)
    return None if stmt is None else set(session.scalars(stmt))


def delete_group(session: Session, principal: Principal, project: str, name: str) -> None:
    """Delete a group with all its versions; refused while a model version's signature uses one of its features."""
    proj = access.project_for(session, principal, project, Role.owner)
    group = _group(session, proj, name)
    readers = sorted(on_demand.readers_of(session, proj.name, name))
    if readers:
        raise Conflict(
            f"feature group {name!r} is read by on-demand group {', '.join(readers)}: change or delete it first",
            read_by=readers,
        )
    usages = repo.usages(session, [(proj.name, name)])
    if usages:
        visible = visible_ids(session, principal)
        shown = [u.label for u in usages if visible is None or u.project_id in visible]
        hidden = len(usages) - len(shown)
        listed = ", ".join(shown[:10]) + (" and more" if len(shown) > 10 else "")
        others = f"{hidden} model versions in projects you cannot read" if hidden else ""
        raise Conflict(
            f"feature group {name!r} is used by {' and '.join(part for part in (listed, others) if part)}: "
            "delete or retire those model versions first",
            used_by=shown,
            used_by_hidden=hidden,
        )
    versions = group.version
    session.delete(group)
    session.flush()
    record(
        session,
        principal,
        "feature.group.delete",
        group_target(proj.name, name),
        project=proj.name,
        summary=f"deleted feature group {name} ({versions} versions)",
        details={"versions": versions},
    )


def _keep_newest_event(stored: FeatureGroupStats | None, values: dict[str, Any]) -> None:
    """An older `last_event_time` (a backfill) never replaces a newer stored one: keep the stored time and give the
    freshness it has now instead."""
    reported = values.get("last_event_time")
    if stored is None or stored.last_event_time is None or reported is None:
        return
    kept = stored.last_event_time if stored.last_event_time.tzinfo else stored.last_event_time.replace(tzinfo=UTC)
    if kept > reported:
        values["last_event_time"] = kept
        if "freshness_seconds" in values:
            values["freshness_seconds"] = max(0.0, (values["reported_at"] - kept).total_seconds())


def report_stats(session: Session, principal: Principal, project: str, name: str, body: StatsReport) -> GroupStats:
    """Store a pipeline's statistics of a group (values not sent keep their last value). Not audited: pipelines
    report after every run, and the audit trail is for changes people make."""
    proj = access.project_for(session, principal, project, Role.editor)
    group = _group(session, proj, name)
    values: dict[str, Any] = body.model_dump(exclude_none=True)
    values.update(reported_by=principal.user, reported_at=utcnow())
    _keep_newest_event(repo.stats_of(session, [group.id]).get(group.id), values)
    repo.upsert_stats(session, group.id, values)
    stats = repo.stats_of(session, [group.id]).get(group.id)
    if stats is not None:
        session.refresh(stats)
    read = stats_read(stats)
    assert read is not None
    return read
