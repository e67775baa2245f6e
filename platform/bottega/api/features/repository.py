"""Queries of the feature catalog: entities, groups and their versions, features and tags, pipeline stats, the
catalog search across projects, and the model versions whose signatures reference features (read from the model
DB's tables directly)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, cast, delete, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from bottega.api.db.dialect import dialect_insert
from bottega.api.db.tables import (
    Feature,
    FeatureEntity,
    FeatureGroup,
    FeatureGroupStats,
    FeatureGroupVersion,
    FeatureTag,
    Membership,
    Model,
    ModelVersion,
    Project,
)

ROWS_PER_STATEMENT = 500


@dataclass(frozen=True)
class SearchQuery:
    q: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    owner: str | None = None
    entity: str | None = None
    project_id: int | None = None
    kind: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class Hit:
    feature: Feature
    group: FeatureGroup
    project: str
    entity: FeatureEntity


@dataclass(frozen=True)
class Usage:
    """A model version whose signature lists `refs` among its store features."""

    project_id: int
    label: str  # project/model/version
    refs: frozenset[str]


# -- visibility ----------------------------------------------------------------------------------------------------


def visible_project_ids(session: Session, user: str | None, only_project: int | None) -> Select[int] | None:
    """A subquery of the project ids a caller may read, or None for every project (an unscoped admin)."""
    if user is None and only_project is None:
        return None
    stmt = select(Project.id)
    if user is not None:
        stmt = stmt.join(Membership, Membership.project_id == Project.id).where(Membership.user == user)
    if only_project is not None:
        stmt = stmt.where(Project.id == only_project)
    return stmt


def projects_by_name(session: Session, names: Iterable[str]) -> dict[str, Project]:
    rows = session.scalars(select(Project).where(Project.name.in_(list(names))))
    return {p.name: p for p in rows}


# -- entities ------------------------------------------------------------------------------------------------------


def entity(session: Session, project_id: int, name: str) -> FeatureEntity | None:
    stmt = select(FeatureEntity).where(FeatureEntity.project_id == project_id, FeatureEntity.name == name)
    return session.scalar(stmt)


def entities(session: Session, project_id: int, limit: int, offset: int) -> tuple[Sequence[FeatureEntity], int]:
    stmt = select(FeatureEntity).where(FeatureEntity.project_id == project_id)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(FeatureEntity.name).limit(limit).offset(offset)).all()
    return rows, total


def entities_by_id(session: Session, ids: Iterable[int]) -> dict[int, FeatureEntity]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    return {e.id: e for e in session.scalars(select(FeatureEntity).where(FeatureEntity.id.in_(wanted)))}


def groups_of_entities(session: Session, entity_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    if not entity_ids:
        return out
    stmt = select(FeatureGroup.entity_id, FeatureGroup.name).where(FeatureGroup.entity_id.in_(entity_ids))
    for entity_id, name in session.execute(stmt.order_by(FeatureGroup.name)):
        out[entity_id].append(name)
    return out


# -- groups and versions -------------------------------------------------------------------------------------------


def group(session: Session, project_id: int, name: str, *, for_update: bool = False) -> FeatureGroup | None:
    stmt = select(FeatureGroup).where(FeatureGroup.project_id == project_id, FeatureGroup.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def groups(
    session: Session, project_id: int, kind: str | None, entity_id: int | None, limit: int, offset: int
) -> tuple[Sequence[FeatureGroup], int]:
    stmt = select(FeatureGroup).where(FeatureGroup.project_id == project_id)
    if kind is not None:
        stmt = stmt.where(FeatureGroup.kind == kind)
    if entity_id is not None:
        stmt = stmt.where(FeatureGroup.entity_id == entity_id)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(FeatureGroup.name).limit(limit).offset(offset)).all()
    return rows, total


def groups_named(session: Session, project_id: int, names: Iterable[str]) -> dict[str, FeatureGroup]:
    wanted = sorted(set(names))
    stmt = select(FeatureGroup).where(FeatureGroup.project_id == project_id, FeatureGroup.name.in_(wanted))
    return {g.name: g for g in session.scalars(stmt)}


def version(session: Session, group_id: int, number: int) -> FeatureGroupVersion | None:
    stmt = select(FeatureGroupVersion).where(
        FeatureGroupVersion.group_id == group_id, FeatureGroupVersion.version == number
    )
    return session.scalar(stmt)


def current_versions(session: Session, groups_: Sequence[FeatureGroup]) -> dict[int, FeatureGroupVersion]:
    """The current version row of each group."""
    if not groups_:
        return {}
    conditions = [(FeatureGroupVersion.group_id == g.id) & (FeatureGroupVersion.version == g.version) for g in groups_]
    out: dict[int, FeatureGroupVersion] = {}
    for start in range(0, len(conditions), ROWS_PER_STATEMENT):
        stmt = select(FeatureGroupVersion).where(or_(*conditions[start : start + ROWS_PER_STATEMENT]))
        out.update({v.group_id: v for v in session.scalars(stmt)})
    return out


def versions(session: Session, group_id: int, limit: int, offset: int) -> tuple[Sequence[FeatureGroupVersion], int]:
    stmt = select(FeatureGroupVersion).where(FeatureGroupVersion.group_id == group_id)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(FeatureGroupVersion.version.desc()).limit(limit).offset(offset)).all()
    return rows, total


def replace_features(
    session: Session, group_id: int, features: Sequence[dict[str, Any]], group_tags: dict[str, str]
) -> None:
    """Make the features table hold exactly `features` (name, dtype, description, tags) of the current version."""
    session.execute(delete(FeatureTag).where(FeatureTag.group_id == group_id))
    session.execute(delete(Feature).where(Feature.group_id == group_id))
    rows = [
        {
            "group_id": group_id,
            "name": f["name"],
            "position": i,
            "dtype": f["dtype"],
            "description": f.get("description", ""),
        }
        for i, f in enumerate(features)
    ]
    tags = [
        {"group_id": group_id, "feature": f["name"], "key": key, "value": value}
        for f in features
        for key, value in {**group_tags, **f.get("tags", {})}.items()
    ]
    for table, values in ((Feature, rows), (FeatureTag, tags)):
        for start in range(0, len(values), ROWS_PER_STATEMENT):
            session.execute(dialect_insert(session)(table).values(values[start : start + ROWS_PER_STATEMENT]))


def stats_of(session: Session, group_ids: Sequence[int]) -> dict[int, FeatureGroupStats]:
    if not group_ids:
        return {}
    stmt = select(FeatureGroupStats).where(FeatureGroupStats.group_id.in_(list(set(group_ids))))
    return {s.group_id: s for s in session.scalars(stmt)}


def upsert_stats(session: Session, group_id: int, values: dict[str, Any]) -> None:
    """Set the given statistics of a group (the others keep their last reported values)."""
    stmt = dialect_insert(session)(FeatureGroupStats).values(group_id=group_id, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["group_id"], set_=values))


def tags_of(session: Session, group_ids: Sequence[int]) -> dict[tuple[int, str], dict[str, str]]:
    out: dict[tuple[int, str], dict[str, str]] = defaultdict(dict)
    if not group_ids:
        return out
    stmt = select(FeatureTag).where(FeatureTag.group_id.in_(list(set(group_ids)))).order_by(FeatureTag.key)
    for tag in session.scalars(stmt):
        out[(tag.group_id, tag.feature)][tag.key] = tag.value
    return out


# -- catalog search ------------------------------------------------------------------------------------------------


def _searched(query: SearchQuery, visible: Select[int] | None) -> Select[Feature, FeatureGroup, str, FeatureEntity]:
    stmt = (
        select(Feature, FeatureGroup, Project.name, FeatureEntity)
        .join(FeatureGroup, FeatureGroup.id == Feature.group_id)
        .join(Project, Project.id == FeatureGroup.project_id)
        .join(FeatureEntity, FeatureEntity.id == FeatureGroup.entity_id)
    )
    if visible is not None:
        stmt = stmt.where(FeatureGroup.project_id.in_(visible))
    if query.project_id is not None:
        stmt = stmt.where(FeatureGroup.project_id == query.project_id)
    if query.q:
        needle = query.q.lower()
        stmt = stmt.where(
            or_(
                func.lower(Feature.name).contains(needle, autoescape=True),
                func.lower(FeatureGroup.name).contains(needle, autoescape=True),
                func.lower(Feature.description).contains(needle, autoescape=True),
            )
        )
    if query.owner is not None:
        stmt = stmt.where(FeatureGroup.owner == query.owner)
    if query.entity is not None:
        stmt = stmt.where(FeatureEntity.name == query.entity)
    if query.kind is not None:
        stmt = stmt.where(FeatureGroup.kind == query.kind)
    if query.dtype is not None:
        stmt = stmt.where(Feature.dtype == query.dtype)
    for key, value in query.tags:
        tag = aliased(FeatureTag)
        stmt = stmt.where(
            exists().where(
                tag.group_id == Feature.group_id, tag.feature == Feature.name, tag.key == key, tag.value == value
            )
        )
    return stmt


def search(
    session: Session, query: SearchQuery, visible: Select[int] | None, limit: int, offset: int
) -> tuple[list[Hit], int]:
    stmt = _searched(query, visible)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    ordered = stmt.order_by(Project.name, FeatureGroup.name, Feature.position).limit(limit).offset(offset)
    hits = [Hit(feature, group_, project, entity_) for feature, group_, project, entity_ in session.execute(ordered)]
    return hits, total


def features_of(session: Session, group_ids: Sequence[int]) -> dict[int, list[Feature]]:
    out: dict[int, list[Feature]] = defaultdict(list)
    if not group_ids:
        return out
    stmt = select(Feature).where(Feature.group_id.in_(list(set(group_ids)))).order_by(Feature.position)
    for feature in session.scalars(stmt):
        out[feature.group_id].append(feature)
    return out


# -- model versions that use features ------------------------------------------------------------------------------


def usages(session: Session, groups_: Iterable[tuple[str, str]]) -> list[Usage]:
    """Model versions whose signature's `store_features` reference a feature of one of these (project, group)s.

    The JSON text is searched for `"project:group:` first (both backends can), then each candidate's store
    features are read exactly.
    """
    prefixes = sorted({f"{project}:{group_}:" for project, group_ in groups_})
    found: dict[str, tuple[int, set[str]]] = {}
    for start in range(0, len(prefixes), ROWS_PER_STATEMENT):
        batch = tuple(prefixes[start : start + ROWS_PER_STATEMENT])
        text = cast(ModelVersion.signature, Text)
        stmt = (
            select(ModelVersion.signature, ModelVersion.version, Model.name, Model.project_id, Project.name)
            .join(Model, Model.id == ModelVersion.model_id)
            .join(Project, Project.id == Model.project_id)
            .where(or_(*[text.contains(f'"{prefix}', autoescape=True) for prefix in batch]))
        )
        for signature, number, model, project_id, project in session.execute(stmt):
            refs = signature.get("store_features") if isinstance(signature, dict) else None
            matched = {ref for ref in refs or [] if isinstance(ref, str) and ref.startswith(batch)}
            if matched:
                label = f"{project}/{model}/{number}"
                found.setdefault(label, (project_id, set()))[1].update(matched)
    ordered = sorted(found.items(), key=lambda item: _usage_order(item[0]))
    return [Usage(project_id, label, frozenset(refs)) for label, (project_id, refs) in ordered]


def _usage_order(label: str) -> tuple[str, str, int]:
    project, model, number = label.rsplit("/", 2)
    return project, model, int(number)
