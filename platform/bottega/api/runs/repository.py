"""Queries for runs: search, the per-run key-value tables, metric series and artifact rows.

Writes that may race with another writer of the same run (two processes logging the same param, tag or metric)
use the dialect's `INSERT ... ON CONFLICT`, which SQLite and PostgreSQL both support.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from bottega.api.db.dialect import dialect_insert
from bottega.api.db.tables import Run, RunArtifact, RunLatestMetric, RunMetric, RunParam, RunTag
from bottega.api.runs.filters import MetricFilter, RunQuery

# SQLite allows 32766 bound values per statement; 500 rows x at most 5 columns stays well under it.
ROWS_PER_STATEMENT = 500
_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}


def _batches(rows: Sequence[dict[str, Any]]) -> Iterable[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        yield rows[start : start + ROWS_PER_STATEMENT]


def run_in_project(session: Session, project_id: int, run_id: str) -> Run | None:
    return session.scalar(select(Run).where(Run.id == run_id, Run.project_id == project_id))


def runs_in_project(session: Session, project_id: int, run_ids: Sequence[str]) -> dict[str, Run]:
    rows = session.scalars(select(Run).where(Run.project_id == project_id, Run.id.in_(run_ids)))
    return {run.id: run for run in rows}


def _metric_condition(condition: MetricFilter) -> ColumnElement[bool]:
    latest = aliased(RunLatestMetric)
    compare = _COMPARE[condition.op]
    return exists().where(latest.run_id == Run.id, latest.key == condition.key, compare(latest.value, condition.value))


def _filtered(project_id: int, query: RunQuery) -> Select[Run]:
    stmt = select(Run).where(Run.project_id == project_id)
    if query.status is not None:
        stmt = stmt.where(Run.status == query.status.value)
    if query.name:
        stmt = stmt.where(func.lower(Run.name).contains(query.name.lower(), autoescape=True))
    if query.parent_run_id is not None:
        stmt = stmt.where(Run.parent_run_id == query.parent_run_id)
    for key, value in query.tags:
        tag = aliased(RunTag)
        stmt = stmt.where(exists().where(tag.run_id == Run.id, tag.key == key, tag.value == value))
    for key, value in query.params:
        param = aliased(RunParam)
        stmt = stmt.where(exists().where(param.run_id == Run.id, param.key == key, param.value == value))
    for condition in query.metrics:
        stmt = stmt.where(_metric_condition(condition))
    return stmt


def search(session: Session, project_id: int, query: RunQuery, limit: int, offset: int) -> tuple[Sequence[Run], int]:
    stmt = _filtered(project_id, query)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    order = query.order
    keys: list[Any] = []
    if order.metric:
        latest = aliased(RunLatestMetric)
        stmt = stmt.outerjoin(latest, and_(latest.run_id == Run.id, latest.key == order.field))
        # Runs without the metric come last whichever the direction.
        keys += [latest.value.is_(None), latest.value.desc() if order.descending else latest.value.asc()]
    elif order.field == "name":
        keys.append(Run.name.desc() if order.descending else Run.name.asc())
    keys += [Run.start_time.asc() if order.field == "start_time" and not order.descending else Run.start_time.desc()]
    keys.append(Run.id.asc())
    rows = session.scalars(stmt.order_by(*keys).limit(limit).offset(offset)).all()
    return rows, total


def params_of(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for row in session.scalars(select(RunParam).where(RunParam.run_id.in_(run_ids)).order_by(RunParam.key)):
        out[row.run_id][row.key] = row.value
    return out


def tags_of(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for row in session.scalars(select(RunTag).where(RunTag.run_id.in_(run_ids)).order_by(RunTag.key)):
        out[row.run_id][row.key] = row.value
    return out


def latest_of(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, RunLatestMetric]]:
    out: dict[str, dict[str, RunLatestMetric]] = defaultdict(dict)
    stmt = select(RunLatestMetric).where(RunLatestMetric.run_id.in_(run_ids)).order_by(RunLatestMetric.key)
    for row in session.scalars(stmt):
        out[row.run_id][row.key] = row
    return out


def artifact_totals(session: Session, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(count, total bytes) of each run's artifacts."""
    stmt = (
        select(RunArtifact.run_id, func.count(), func.coalesce(func.sum(RunArtifact.size), 0))
        .where(RunArtifact.run_id.in_(run_ids))
        .group_by(RunArtifact.run_id)
    )
    return {run_id: (int(count), int(size)) for run_id, count, size in session.execute(stmt)}


def params(session: Session, run_id: str, keys: Iterable[str]) -> dict[str, str]:
    stmt = select(RunParam).where(RunParam.run_id == run_id, RunParam.key.in_(list(keys)))
    return {row.key: row.value for row in session.scalars(stmt)}


def insert_params(session: Session, run_id: str, values: dict[str, str]) -> None:
    """Insert params that are not there yet (a concurrent writer's row wins; the caller re-reads to compare)."""
    rows = [{"run_id": run_id, "key": key, "value": value} for key, value in values.items()]
    insert_for = dialect_insert(session)
    for batch in _batches(rows):
        stmt = insert_for(RunParam).values(list(batch)).on_conflict_do_nothing(index_elements=["run_id", "key"])
        session.execute(stmt)


def upsert_tags(session: Session, run_id: str, values: dict[str, str]) -> None:
    rows = [{"run_id": run_id, "key": key, "value": value} for key, value in values.items()]
    insert_for = dialect_insert(session)
    for batch in _batches(rows):
        stmt = insert_for(RunTag).values(list(batch))
        session.execute(
            stmt.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": stmt.excluded.value})
        )


def delete_tag(session: Session, run_id: str, key: str) -> bool:
    result = session.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
    return bool(getattr(result, "rowcount", 0))


def insert_metrics(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Append points (`run_id, key, step, value, timestamp`) to the metric series."""
    for batch in _batches(rows):
        session.execute(insert(RunMetric), list(batch))


def upsert_latest(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Move each metric's latest value forward: a row replaces the stored one when its step is higher, or equal
    with a time not earlier. At most one row per (run_id, key)."""
    insert_for = dialect_insert(session)
    for batch in _batches(rows):
        stmt = insert_for(RunLatestMetric).values(list(batch))
        new = stmt.excluded
        newer = or_(
            new.step > RunLatestMetric.step,
            and_(new.step == RunLatestMetric.step, new.timestamp >= RunLatestMetric.timestamp),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "key"],
            set_={"step": new.step, "value": new.value, "timestamp": new.timestamp},
            where=newer,
        )
        session.execute(stmt)


def metric_series(session: Session, run_id: str, key: str) -> Sequence[RunMetric]:
    stmt = (
        select(RunMetric)
        .where(RunMetric.run_id == run_id, RunMetric.key == key)
        .order_by(RunMetric.step, RunMetric.timestamp, RunMetric.id)
    )
    return session.scalars(stmt).all()


def put_artifact(session: Session, run_id: str, path: str, sha256: str, size: int, now: datetime) -> None:
    """Point `path` of a run at a blob, replacing what it pointed at before."""
    stmt = dialect_insert(session)(RunArtifact).values(
        run_id=run_id, path=path, sha256=sha256, size=size, created_at=now
    )
    new = stmt.excluded
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_id", "path"],
            set_={"sha256": new.sha256, "size": new.size, "created_at": new.created_at},
        )
    )


def artifact(session: Session, run_id: str, path: str) -> RunArtifact | None:
    return session.get(RunArtifact, (run_id, path))


def artifacts(
    session: Session, run_id: str, prefix: str | None, limit: int, offset: int
) -> tuple[Sequence[RunArtifact], int]:
    stmt = select(RunArtifact).where(RunArtifact.run_id == run_id)
    if prefix:
        stmt = stmt.where(RunArtifact.path.startswith(prefix, autoescape=True))
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(RunArtifact.path).limit(limit).offset(offset)).all()
    return rows, total
