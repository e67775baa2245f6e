"""Server settings, read from `BOTTEGA_*` environment variables when the server starts (never at import)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOTTEGA_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".bottega")
    database_url: str | None = None
    artifacts_url: str | None = None
    bootstrap_token: str | None = None
    max_json_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024 * 1024
    migrate_on_start: bool = True
    embedded_worker: bool = True
    scheduler_interval_s: float = 1.0

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'bottega.db'}"

    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str(self.home / "artifacts")
