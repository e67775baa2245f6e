"""SDK methods for the feature catalog: entities, versioned feature groups, statistics, search and resolution.

    client.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    client.features.register_group("eats", group)          # a dict, or a pydantic definition (model_dump)
    client.features.register(load_definitions("features.yaml"))  # a whole definitions file, in one transaction
    client.features.search(q="prep", tags={"team": "ranking"})
    client.features.resolve(["eats:daily_prep:avg_prep"])

Registering the same definition again changes nothing; a compatible change makes the next version; a breaking
change (a feature removed or retyped, another entity or kind, a shorter max_age, online turned off) raises Conflict
unless `new_version=True`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bottega.api.features.schemas import (
    DefinitionsApplied,
    EntityRead,
    EntityWritten,
    FeatureHit,
    GroupRead,
    GroupRegistered,
    GroupStats,
    GroupVersionRead,
    Resolution,
)
from bottega.api.pages import Page
from bottega.core.errors import InvalidInput

if TYPE_CHECKING:
    from bottega.sdk.transport import Transport


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def jsonable(value: Any) -> Any:
    """A definition as JSON: pydantic models through `model_dump(mode="json")`, durations as seconds."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _definition(value: Any, what: str) -> dict[str, Any]:
    data = jsonable(value)
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a mapping or a pydantic model, not {type(value).__name__}")
    return data


def _with_fingerprint(group: dict[str, Any]) -> dict[str, Any]:
    """An on-demand group with `code_sha256` set from its function's module (imported from here or the cwd)."""
    if "function" not in group or group.get("kind", "on_demand") != "on_demand" or group.get("code_sha256"):
        return group
    from bottega.core.functions import fingerprint, load_function

    function = load_function(str(group["function"]), search=Path.cwd())
    return {**group, "code_sha256": fingerprint(function)}


class FeaturesAPI:
    def __init__(self, transport: Transport, api: str) -> None:
        self._t = transport
        self._api = api

    def _base(self, project: str) -> str:
        return f"{self._api}/projects/{project}/features"

    def _group(self, project: str, group: str) -> str:
        return f"{self._base(project)}/groups/{group}"

    # -- entities --------------------------------------------------------------------------------------------------

    def put_entity(self, project: str, name: str, join_keys: Mapping[str, str], description: str = "") -> EntityWritten:
        """Create or update an entity (`outcome` says which). Join keys are ordered: `{"user_id": "int"}`."""
        body = {"join_keys": jsonable(join_keys), "description": description}
        return EntityWritten.model_validate(self._t.json("PUT", f"{self._base(project)}/entities/{name}", json=body))

    def entities(self, project: str, *, limit: int = 50, offset: int = 0) -> Page[EntityRead]:
        query = _params(limit=limit, offset=offset)
        return Page[EntityRead].model_validate(self._t.json("GET", f"{self._base(project)}/entities", params=query))

    def entity(self, project: str, name: str) -> EntityRead:
        return EntityRead.model_validate(self._t.json("GET", f"{self._base(project)}/entities/{name}"))

    def delete_entity(self, project: str, name: str) -> None:
        self._t.json("DELETE", f"{self._base(project)}/entities/{name}")

    # -- groups ----------------------------------------------------------------------------------------------------

    def register_group(
        self, project: str, definition: Any, *, new_version: bool = False, fingerprint: bool = True
    ) -> GroupRegistered:
        """Register a batch, stream or on-demand group: a dict shaped like the feature store's definitions, or a
        pydantic model (`BatchFeatureGroup`, `StreamingFeatureGroup`, `OnDemandFeatureGroup`). `outcome` is
        created, updated or unchanged. An on-demand group's function is imported to fingerprint its code unless
        `fingerprint=False` (then any code runs under its name)."""
        body = _definition(definition, "a group definition")
        if fingerprint:
            body = _with_fingerprint(body)
        if new_version:
            body["new_version"] = True
        return GroupRegistered.model_validate(self._t.json("POST", f"{self._base(project)}/groups", json=body))

    def register(
        self, definitions: Any, *, project: str | None = None, new_version: bool = False, fingerprint: bool = True
    ) -> DefinitionsApplied:
        """Apply a whole definitions file (`Definitions`, or a dict shaped like its YAML) in one transaction:
        entities, then groups. `project` defaults to the definitions' own. Returns what each one became.
        On-demand groups' functions are imported to fingerprint their code unless `fingerprint=False`."""
        body = _definition(definitions, "definitions")
        if fingerprint and isinstance(body.get("on_demand_groups"), list):
            body["on_demand_groups"] = [
                _with_fingerprint(g) if isinstance(g, dict) else g for g in body["on_demand_groups"]
            ]
        target = project or body.get("project")
        if not isinstance(target, str) or not target:
            raise InvalidInput("the definitions name no project: give project=...")
        body["project"] = target
        body["new_version"] = new_version
        return DefinitionsApplied.model_validate(self._t.json("POST", f"{self._base(target)}/apply", json=body))

    def groups(
        self,
        project: str,
        *,
        kind: str | None = None,
        entity: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[GroupRead]:
        query = _params(kind=kind, entity=entity, limit=limit, offset=offset)
        return Page[GroupRead].model_validate(self._t.json("GET", f"{self._base(project)}/groups", params=query))

    def group(self, project: str, name: str) -> GroupRead:
        """The current version, with the entity's join keys and the references of its features."""
        return GroupRead.model_validate(self._t.json("GET", self._group(project, name)))

    def versions(self, project: str, name: str, *, limit: int = 50, offset: int = 0) -> Page[GroupVersionRead]:
        """Every version of a group, newest first."""
        query = _params(limit=limit, offset=offset)
        body = self._t.json("GET", f"{self._group(project, name)}/versions", params=query)
        return Page[GroupVersionRead].model_validate(body)

    def version(self, project: str, name: str, number: int) -> GroupVersionRead:
        return GroupVersionRead.model_validate(self._t.json("GET", f"{self._group(project, name)}/versions/{number}"))

    def delete_group(self, project: str, name: str) -> None:
        """Delete a group and all its versions (owners); Conflict while a model version uses one of its features."""
        self._t.json("DELETE", self._group(project, name))

    def report_stats(
        self,
        project: str,
        group: str,
        *,
        rows_offline: int | None = None,
        rows_online: int | None = None,
        last_event_time: datetime | None = None,
        last_run_at: datetime | None = None,
        freshness_seconds: float | None = None,
    ) -> GroupStats:
        """Report a group's latest statistics (pipelines call this after each run); values left out are kept."""
        body = jsonable(
            _params(
                rows_offline=rows_offline,
                rows_online=rows_online,
                last_event_time=last_event_time,
                last_run_at=last_run_at,
                freshness_seconds=freshness_seconds,
            )
        )
        return GroupStats.model_validate(self._t.json("POST", f"{self._group(project, group)}/stats", json=body))

    # -- the catalog across projects -------------------------------------------------------------------------------

    def search(
        self,
        q: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        owner: str | None = None,
        entity: str | None = None,
        project: str | None = None,
        kind: str | None = None,
        dtype: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[FeatureHit]:
        """Features of every project you can read; `q` is a substring of a feature or group name or a feature's
        description; `tags` must all match (a group's tags count for its features)."""
        query = _params(
            q=q,
            tag=[f"{k}:{v}" for k, v in tags.items()] if tags else None,
            owner=owner,
            entity=entity,
            project=project,
            kind=kind,
            dtype=dtype,
            limit=limit,
            offset=offset,
        )
        return Page[FeatureHit].model_validate(self._t.json("GET", f"{self._api}/features/search", params=query))

    def resolve(self, refs: str | Iterable[str]) -> Resolution:
        """For each `project:group:feature`: its dtype, group version, entity join keys and max_age."""
        joined = refs if isinstance(refs, str) else ",".join(str(ref) for ref in refs)
        body = self._t.json("GET", f"{self._api}/features/resolve", params={"refs": joined})
        return Resolution.model_validate(body)

    def all_groups(self, project: str) -> builtins.list[GroupRead]:
        """Every group of a project (follows the pages)."""
        out: builtins.list[GroupRead] = []
        offset: int | None = 0
        while offset is not None:
            page = self.groups(project, limit=500, offset=offset)
            out.extend(page.items)
            offset = page.next_offset
        return out
