"""Who is calling, and the roles they can hold in a project."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    editor = "editor"
    owner = "owner"

    @property
    def rank(self) -> int:
        return {"viewer": 1, "editor": 2, "owner": 3}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class Principal:
    user: str
    key_id: str
    is_admin: bool = False
    project_id: int | None = None  # a key scoped to one project sees nothing else
