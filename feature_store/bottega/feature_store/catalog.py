"""Feature-group definitions as registered in the API's catalog, turned back into store-side definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bottega.feature_store.definitions import BatchFeatureGroup, Entity, StreamingFeatureGroup
from bottega.feature_store.types import GroupSchema

if TYPE_CHECKING:
    from bottega.sdk import Client


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
