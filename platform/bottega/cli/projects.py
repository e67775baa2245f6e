"""`bottega projects ...`, `bottega keys ...` and `bottega audit`."""

from __future__ import annotations

from typing import Annotated

import typer

from bottega.cli.common import client, done, emit

projects = typer.Typer(help="Projects and their members.", no_args_is_help=True)
keys = typer.Typer(help="API keys (the token is shown once, at creation).", no_args_is_help=True)
PROJECT_COLUMNS = ["name", "description", "archived", "role", "created_by", "created_at"]


@projects.command("create")
def create_project(ctx: typer.Context, name: str, description: str = "") -> None:
    """Create a project; you become its owner."""
    with client(ctx) as sdk:
        project = sdk.projects.create(name, description)
    done(ctx, f"created project {project.name}", project)


@projects.command("list")
def list_projects(
    ctx: typer.Context,
    archived: Annotated[bool | None, typer.Option("--archived/--active", help="filter by state")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """Projects you are a member of (all of them for admins)."""
    with client(ctx) as sdk:
        emit(ctx, sdk.projects.list(archived=archived, limit=limit, offset=offset), PROJECT_COLUMNS, "projects")


@projects.command("get")
def get_project(ctx: typer.Context, name: str) -> None:
    with client(ctx) as sdk:
        emit(ctx, sdk.projects.get(name))


@projects.command("update")
def update_project(ctx: typer.Context, name: str, description: Annotated[str, typer.Option()]) -> None:
    with client(ctx) as sdk:
        done(ctx, f"updated project {name}", sdk.projects.update(name, description=description))


@projects.command("archive")
def archive_project(ctx: typer.Context, name: str) -> None:
    with client(ctx) as sdk:
        done(ctx, f"archived project {name}", sdk.projects.archive(name))


@projects.command("unarchive")
def unarchive_project(ctx: typer.Context, name: str) -> None:
    with client(ctx) as sdk:
        done(ctx, f"unarchived project {name}", sdk.projects.unarchive(name))


@projects.command("delete")
def delete_project(
    ctx: typer.Context, name: str, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False
) -> None:
    """Delete a project and everything in it (owners only)."""
    if not yes:
        typer.confirm(f"Delete project {name} and everything in it?", abort=True)
    with client(ctx) as sdk:
        sdk.projects.delete(name)
    done(ctx, f"deleted project {name}")


@projects.command("members")
def members(ctx: typer.Context, name: str) -> None:
    with client(ctx) as sdk:
        emit(ctx, sdk.projects.members(name), ["user", "role", "created_at"], f"members of {name}")


@projects.command("add-member")
def add_member(ctx: typer.Context, name: str, user: str, role: Annotated[str, typer.Option()] = "viewer") -> None:
    """Give USER a role (viewer, editor, owner) in project NAME."""
    with client(ctx) as sdk:
        done(ctx, f"{user} is {role} in {name}", sdk.projects.set_member(name, user, role))


@projects.command("remove-member")
def remove_member(ctx: typer.Context, name: str, user: str) -> None:
    with client(ctx) as sdk:
        sdk.projects.remove_member(name, user)
    done(ctx, f"removed {user} from {name}")


@keys.command("create")
def create_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    user: Annotated[str | None, typer.Option(help="admins: create it for this user")] = None,
    admin: Annotated[bool, typer.Option(help="admins: a global admin key")] = False,
    project: Annotated[str | None, typer.Option(help="restrict the key to one project")] = None,
) -> None:
    """Create an API key and print its token (shown only this once)."""
    with client(ctx) as sdk:
        key = sdk.keys.create(name, user=user, admin=admin, project=project)
    done(ctx, f"created key {key.key_id} for {key.user}; the token (shown once):\n{key.token}", key)


@keys.command("list")
def list_keys(ctx: typer.Context, user: Annotated[str | None, typer.Option()] = None) -> None:
    with client(ctx) as sdk:
        columns = ["key_id", "user", "name", "is_admin", "project", "created_at", "revoked_at", "last_used_at"]
        emit(ctx, sdk.keys.list(user=user), columns, "API keys")


@keys.command("revoke")
def revoke_key(ctx: typer.Context, key_id: str) -> None:
    with client(ctx) as sdk:
        done(ctx, f"revoked key {key_id}", sdk.keys.revoke(key_id))


def audit(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option(help="exact, or a prefix ending in '.'")] = None,
    limit: int = 50,
    offset: int = 0,
) -> None:
    """The audit trail, newest first."""
    with client(ctx) as sdk:
        page = sdk.audit.list(project=project, actor=actor, action=action, limit=limit, offset=offset)
        emit(ctx, page, ["at", "actor", "action", "target", "project", "summary"], "audit events")
