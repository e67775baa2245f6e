"""Feature-group definitions as registered in the API's catalog, turned back into store-side definitions."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bottega.feature_store.definitions import BatchFeatureGroup, Entity, StreamingFeatureGroup
from bottega.feature_store.types import GroupSchema

if TYPE_CHECKING:
    from bottega.sdk import Client

log = logging.getLogger(__name__)


def _fetch(client: Client, project: str, name: str, kind: str) -> tuple[dict[str, Any], Entity]:
    read = client.features.group(project, name)
    if read.kind != kind:
        raise ValueError(f"feature group {project}:{name} is a {read.kind} group, not a {kind} group")
    definition = read.definition.model_dump()
    entity = Entity(name=read.entity.name, join_keys=dict(read.entity.join_keys))
    return definition, entity


def batch_group(client: Client, project: str, name: str) -> tuple[BatchFeatureGroup, GroupSchema]:
    """The current version of a registered batch group, with its store schema."""
    definition, entity = _fetch(client, project, name, "batch")
    group = BatchFeatureGroup.model_validate(definition)
    return group, group.schema_for(project, entity)


def stream_group(client: Client, project: str, name: str) -> tuple[StreamingFeatureGroup, GroupSchema]:
    """The current version of a registered streaming group, with its store schema."""
    definition, entity = _fetch(client, project, name, "stream")
    group = StreamingFeatureGroup.model_validate(definition)
    return group, group.schema_for(project, entity)


def batch_stats(result: Any, now: datetime | None = None) -> dict[str, Any]:
    """What a batch run reports to the catalog (`client.features.report_stats(**...)`): row counts, the run's time
    and, when rows were written, the newest event_time and the freshness it gives (the API keeps the later of the
    stored and the reported event time, so an old backfill never moves freshness back)."""
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {
        "rows_offline": result.rows_offline,
        "rows_online": result.rows_online,
        "last_run_at": now,
    }
    newest = getattr(result, "last_event_time", None)
    if newest is not None:
        values["last_event_time"] = newest
        values["freshness_seconds"] = max(0.0, (now - newest).total_seconds())
    return values


class StreamReporter:
    """Reports a streaming run's freshness and row counts to the catalog, at most every `every_s` seconds.

    Call it with the run's `StreamStats` after each batch (it is a `progress` callback) and `report(stats)` once at
    the end. A failed report is logged and retried at the next turn: the catalog being away never stops a stream.
    """

    def __init__(self, client: Client, project: str, group: str, *, every_s: float = 30.0) -> None:
        self.client = client
        self.project = project
        self.group = group
        self.every_s = every_s
        self._last: float | None = None

    def __call__(self, stats: Any) -> None:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every_s:
            self.report(stats)

    def report(self, stats: Any) -> bool:
        """Send the stats now; False (logged) when the API could not take them."""
        self._last = time.monotonic()
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "rows_offline": stats.rows_offline,
            "rows_online": stats.rows_online,
            "last_run_at": now,
        }
        if stats.last_event_us is not None:
            newest = datetime.fromtimestamp(stats.last_event_us / 1_000_000, UTC)
            values["last_event_time"] = newest
            values["freshness_seconds"] = max(0.0, (now - newest).total_seconds())
        try:
            self.client.features.report_stats(self.project, self.group, **values)
        except Exception as exc:
            log.warning("could not report stats of %s:%s to the catalog: %s", self.project, self.group, exc)
            return False
        return True
