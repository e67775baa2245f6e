"""The catalog's rules for on-demand groups: their inputs must be stored features the registering caller can read,
and a stored group that an on-demand group reads cannot be deleted or lose the features it reads.

On-demand groups are not chained: an input is a feature of a batch or stream group, never of another on-demand
group (the serving and training paths run each transform once, over stored and request values).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from bottega.api import access
from bottega.api.auth.principal import Principal
from bottega.api.db.tables import FeatureGroup, FeatureGroupVersion, Project
from bottega.api.features import repository as repo
from bottega.api.features.entities import field_error
from bottega.api.features.schemas import OnDemandGroupDef, parse_ref

KIND = "on_demand"


def check_inputs(session: Session, principal: Principal, definition: OnDemandGroupDef) -> None:
    """A 422 naming `body.inputs` unless every input is an existing stored feature in a project the caller reads."""
    wanted: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for alias, ref in definition.inputs.items():
        project, group, feature = parse_ref(ref)
        wanted[project][group].append((alias, feature))
    for project_name, groups in sorted(wanted.items()):
        project = session.scalar(select(Project).where(Project.name == project_name))
        if project is None or access.role_in(session, principal, project) is None:
            raise field_error(
                "body.inputs",
                f"on-demand group {definition.name!r}: project {project_name!r} does not exist or you cannot read it",
            )
        found = repo.groups_named(session, project.id, groups)
        features = repo.features_of(session, [g.id for g in found.values()])
        for group_name, reads in sorted(groups.items()):
            stored = found.get(group_name)
            if stored is None:
                raise field_error(
                    "body.inputs",
                    f"on-demand group {definition.name!r}: feature group {project_name}:{group_name} does not exist",
                )
            if stored.kind == KIND:
                raise field_error(
                    "body.inputs",
                    f"on-demand group {definition.name!r}: input {project_name}:{group_name} is itself on-demand; "
                    "read the stored features it uses instead",
                )
            names = {f.name for f in features.get(stored.id, [])}
            for alias, feature in reads:
                if feature not in names:
                    raise field_error(
                        "body.inputs",
                        f"on-demand group {definition.name!r}: input {alias!r} reads "
                        f"{project_name}:{group_name}:{feature}, which does not exist",
                    )


def readers_of(session: Session, project: str, group: str) -> dict[str, set[str]]:
    """`project:group` of each on-demand group whose current version reads `project:group`, with the features."""
    current = select(FeatureGroupVersion, FeatureGroup, Project.name).join(
        FeatureGroup,
        (FeatureGroup.id == FeatureGroupVersion.group_id) & (FeatureGroup.version == FeatureGroupVersion.version),
    )
    stmt = current.join(Project, Project.id == FeatureGroup.project_id).where(FeatureGroup.kind == KIND)
    prefix = f"{project}:{group}:"
    out: dict[str, set[str]] = {}
    for version, reader, reader_project in session.execute(stmt):
        used = {ref[len(prefix) :] for ref in version.definition.get("inputs", {}).values() if ref.startswith(prefix)}
        if used:
            out[f"{reader_project}:{reader.name}"] = used
    return out
