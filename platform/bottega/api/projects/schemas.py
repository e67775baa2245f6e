"""Wire schemas of projects."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bottega.api.auth.principal import Role
from bottega.api.auth.schemas import NAME_PATTERN


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lowercase letters, digits, `_ . -`; at most 63 chars")
    description: str = Field(default="", max_length=10_000)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=10_000)


class ProjectRead(BaseModel):
    name: str
    description: str
    archived: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    role: Role | None = Field(default=None, description="the caller's role in this project")
