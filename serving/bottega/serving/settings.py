"""Prediction-service settings, read from `BOTTEGA_*` environment variables when the service starts (never at import).

| variable | default | meaning |
|---|---|---|
| `BOTTEGA_URL`, `BOTTEGA_TOKEN` | `http://127.0.0.1:8700`, none | the API the service follows, and its key |
| `BOTTEGA_SERVE_PROJECT` | all visible | serve only this project's deployments |
| `BOTTEGA_HOME` | `~/.bottega` | data directory of the embedded defaults |
| `BOTTEGA_SERVE_CACHE` | `$BOTTEGA_HOME/serving/models` | downloaded, verified model artifacts |
| `BOTTEGA_SPOOL_DIR` | `$BOTTEGA_HOME/serving/spool` | the local prediction-log spool |
| `BOTTEGA_PREDICTION_LOG_KAFKA` | none (spool only) | Kafka bootstrap servers for the prediction log |
| `BOTTEGA_SERVE_PREDICTION_LOG` | `true` | `false`: no prediction logging (benchmarks only) |
| `BOTTEGA_SERVE_MAX_ROWS` | `1000` | most rows in one request |
| `BOTTEGA_SERVE_STORE_TIMEOUT_MS` | `50` | online-store read budget per request |
| `BOTTEGA_SERVE_UNLOAD_GRACE_S` | `10` | how long a replaced version stays loaded for requests in flight |

The online store itself is configured as for the feature store (`BOTTEGA_ONLINE_STORE`, ...): see
`bottega.feature_store.config`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_URL = "http://127.0.0.1:8700"


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOTTEGA_", extra="ignore")

    url: str = DEFAULT_URL
    token: str | None = None
    home: Path = Field(default_factory=lambda: Path.home() / ".bottega")
    serve_project: str | None = None
    serve_cache: Path | None = None
    spool_dir: Path | None = None
    prediction_log_kafka: str | None = None
    serve_prediction_log: bool = True
    serve_max_rows: int = Field(default=1000, ge=1, le=100_000)
    serve_as_of_max_rows: int = Field(default=100, ge=1, le=100_000)  # as_of requests join on the offline store
    serve_store_timeout_ms: float = Field(default=50.0, gt=0, le=60_000)
    serve_unload_grace_s: float = Field(default=10.0, ge=0, le=3600)
    serve_watch_timeout_s: float = Field(default=25.0, gt=0, le=30)

    @property
    def cache_dir(self) -> Path:
        return (self.serve_cache or self.home / "serving" / "models").expanduser()

    @property
    def spool(self) -> Path:
        return (self.spool_dir or self.home / "serving" / "spool").expanduser()

    @property
    def store_timeout_s(self) -> float:
        return self.serve_store_timeout_ms / 1000.0
