"""The catalog across projects: search features the caller can see, and resolve references for serving and
training sets.

What a caller sees: an unscoped admin key every project; a user key the projects the user is a member of; a
project-scoped key only its project. Archived projects stay readable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.auth.principal import Principal, Role
from bottega.api.db.tables import FeatureGroup
from bottega.api.features import repository as repo
from bottega.api.features.durations import format_duration
from bottega.api.features.entities import entity_keys
from bottega.api.features.schemas import (
    MAX_RESOLVE,
    EntityKeys,
    FeatureHit,
    GroupKind,
    OnDemandSpec,
    Resolution,
    ResolvedFeature,
    ResolvedGroup,
    ValueType,
    parse_ref,
)
from bottega.api.features.service import stats_read, visible_ids
from bottega.api.pages import Page, PageParams
from bottega.core.errors import Forbidden, InvalidInput, NotFound


def invalid(parameter: str, message: str) -> InvalidInput:
    """A 422 for one query parameter, shaped like FastAPI's own validation errors."""
    return InvalidInput(
        f"{parameter}: {message}", errors=[{"field": parameter, "message": message, "type": "value_error"}]
    )


def parse_tags(raw: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`key:value` filters (the value may hold colons); a 422 naming `query.tag` for anything else."""
    out = []
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise invalid("query.tag", f"{item!r} is not `key:value`")
        out.append((key.strip(), value))
    return tuple(out)


def _duration(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))


def _kind(text: str) -> GroupKind:
    if text in ("stream", "on_demand"):
        return "stream" if text == "stream" else "on_demand"
    return "batch"


def _used_by(
    session: Session, principal: Principal, hits: Sequence[repo.Hit]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """For each ref of the page: the visible model versions using it, and how many more are in hidden projects."""
    shown: dict[str, list[str]] = defaultdict(list)
    hidden: dict[str, int] = defaultdict(int)
    usages = repo.usages(session, {(hit.project, hit.group.name) for hit in hits})
    if not usages:
        return shown, hidden
    visible = visible_ids(session, principal)
    for usage in usages:
        for ref in usage.refs:
            if visible is None or usage.project_id in visible:
                shown[ref].append(usage.label)
            else:
                hidden[ref] += 1
    return shown, hidden


def search(
    session: Session,
    principal: Principal,
    *,
    q: str | None,
    tags: Sequence[str],
    owner: str | None,
    entity: str | None,
    project: str | None,
    kind: GroupKind | None,
    dtype: ValueType | None,
    page: PageParams,
) -> Page[FeatureHit]:
    """One row per feature of the current versions, ordered by project, group and definition order."""
    project_id = None
    if project is not None:
        project_id = access.project_for(session, principal, project, Role.viewer).id
    query = repo.SearchQuery(
        q=q or None,
        tags=parse_tags(tags),
        owner=owner,
        entity=entity,
        project_id=project_id,
        kind=kind,
        dtype=dtype.value if dtype is not None else None,
    )
    user = None if principal.is_admin else principal.user
    visible = repo.visible_project_ids(session, user, principal.project_id)
    hits, total = repo.search(session, query, visible, page.limit, page.offset)
    group_ids = [hit.group.id for hit in hits]
    stats = repo.stats_of(session, group_ids)
    tags_by_feature = repo.tags_of(session, group_ids)
    shown, hidden = _used_by(session, principal, hits)
    items = []
    for hit in hits:
        ref = f"{hit.project}:{hit.group.name}:{hit.feature.name}"
        items.append(
            FeatureHit(
                ref=ref,
                project=hit.project,
                group=hit.group.name,
                name=hit.feature.name,
                dtype=ValueType(hit.feature.dtype),
                description=hit.feature.description,
                tags=tags_by_feature.get((hit.group.id, hit.feature.name), {}),
                kind=_kind(hit.group.kind),
                group_version=hit.group.version,
                entity=entity_keys(hit.entity),
                owner=hit.group.owner,
                max_age=_duration(hit.group.max_age_seconds),
                max_age_seconds=hit.group.max_age_seconds,
                online=hit.group.online,
                stats=stats_read(stats.get(hit.group.id)),
                used_by=shown.get(ref, []),
                used_by_hidden=hidden.get(ref, 0),
            )
        )
    return Page.of(items, total, page)


def _parse_refs(raw: str) -> list[tuple[str, str, str]]:
    texts = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not texts:
        raise invalid("query.refs", "give at least one `project:group:feature` reference")
    if len(texts) > MAX_RESOLVE:
        raise invalid("query.refs", f"at most {MAX_RESOLVE} references per call, got {len(texts)}")
    out = []
    for text in texts:
        try:
            out.append(parse_ref(text))
        except ValueError as exc:
            raise invalid("query.refs", str(exc)) from None
    return out


def _groups_of(
    session: Session, principal: Principal, refs: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str], FeatureGroup]:
    """The groups the refs point into, by (project, group); Forbidden for a project the caller cannot read."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for project, group_name, _ in refs:
        wanted[project].add(group_name)
    projects = repo.projects_by_name(session, wanted)
    out: dict[tuple[str, str], FeatureGroup] = {}
    for name in sorted(wanted):
        found = projects.get(name)
        if found is None:
            continue
        if access.role_in(session, principal, found) is None:
            raise Forbidden(f"{principal.user!r} has no role in project {name!r}, so cannot read its features")
        for group_name, group in repo.groups_named(session, found.id, wanted[name]).items():
            out[(name, group_name)] = group
    return out


def _resolved_group(
    key: tuple[str, str], group: FeatureGroup, keys: EntityKeys, types: dict[str, str], spec: OnDemandSpec | None
) -> ResolvedGroup:
    return ResolvedGroup(
        project=key[0],
        group=key[1],
        version=group.version,
        kind=_kind(group.kind),
        entity=keys,
        features={f: ValueType(t) for f, t in types.items()},
        max_age=_duration(group.max_age_seconds),
        max_age_seconds=group.max_age_seconds,
        online=group.online,
        on_demand=spec,
    )


def _on_demand_specs(session: Session, groups: dict[tuple[str, str], FeatureGroup]) -> dict[int, OnDemandSpec]:
    computed = [g for g in groups.values() if g.kind == "on_demand"]
    out = {}
    for group_id, row in repo.current_versions(session, computed).items():
        definition = row.definition
        out[group_id] = OnDemandSpec(
            function=definition["function"],
            mode=definition.get("mode", "row"),
            inputs=definition.get("inputs", {}),
            request_features={r["name"]: ValueType(r["dtype"]) for r in definition.get("request_features", [])},
            code_sha256=definition.get("code_sha256"),
        )
    return out


def resolve(session: Session, principal: Principal, raw_refs: str) -> Resolution:
    """What serving and training sets need to read each reference; NotFound naming every unknown one.

    The stored groups that requested on-demand groups read are resolved too (after the requested ones)."""
    refs = _parse_refs(raw_refs)
    groups = _groups_of(session, principal, refs)
    specs = _on_demand_specs(session, groups)
    inputs = [parse_ref(ref) for spec in specs.values() for ref in spec.inputs.values()]
    extra = {k: g for k, g in _groups_of(session, principal, inputs).items() if k not in groups}
    everything = {**groups, **extra}
    features = repo.features_of(session, [g.id for g in everything.values()])
    entities = repo.entities_by_id(session, [g.entity_id for g in everything.values()])
    types = {key: {f.name: f.dtype for f in features.get(g.id, [])} for key, g in everything.items()}
    unknown = [f"{p}:{g}:{f}" for p, g, f in [*refs, *inputs] if f not in types.get((p, g), {})]
    if unknown:
        raise NotFound(f"unknown feature references: {', '.join(unknown[:20])}", unknown=unknown)
    resolved: list[ResolvedFeature] = []
    used_groups: dict[tuple[str, str], ResolvedGroup] = {}
    for key in [(p, g) for p, g, _ in refs] + [(p, g) for p, g, _ in inputs]:
        group = everything[key]
        keys = entity_keys(entities[group.entity_id])
        used_groups.setdefault(key, _resolved_group(key, group, keys, types[key], specs.get(group.id)))
    for project, name, feature in refs:
        group_read = used_groups[(project, name)]
        resolved.append(
            ResolvedFeature(
                ref=f"{project}:{name}:{feature}",
                project=project,
                group=name,
                feature=feature,
                dtype=group_read.features[feature],
                group_version=group_read.version,
                kind=group_read.kind,
                entity=group_read.entity,
                max_age=group_read.max_age,
                max_age_seconds=group_read.max_age_seconds,
                online=group_read.online,
            )
        )
    return Resolution(features=resolved, groups=list(used_groups.values()))
