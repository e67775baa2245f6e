"""Wire schemas of API keys and memberships."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bottega.api.auth.principal import Role
from bottega.core.names import PROJECT_PATTERN

NAME_PATTERN = PROJECT_PATTERN


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=127)
    user: str | None = Field(default=None, pattern=NAME_PATTERN, description="admins only: create for this user")
    admin: bool = Field(default=False, description="admins only: a global admin key")
    project: str | None = Field(default=None, pattern=NAME_PATTERN, description="restrict the key to one project")


class KeyRead(BaseModel):
    key_id: str
    user: str
    name: str
    is_admin: bool
    project: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyRead):
    token: str = Field(description="the secret: shown once, store it now")


class WhoAmI(BaseModel):
    user: str
    key_id: str
    is_admin: bool
    project: str | None


class MemberPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberRead(BaseModel):
    user: str
    role: Role
    created_at: datetime
