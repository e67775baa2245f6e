"""An httpx client for the Bottega API. Domain errors come back as the same `bottega.core.errors` classes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import httpx

from bottega.sdk.deployments import DeploymentsAPI
from bottega.sdk.features import FeaturesAPI
from bottega.sdk.jobs import JobsAPI
from bottega.sdk.models import ModelsAPI
from bottega.sdk.projects import AuditAPI, KeysAPI, ProjectsAPI
from bottega.sdk.runs import RunsAPI
from bottega.sdk.transport import Transport, raise_for_problem

DEFAULT_URL = "http://127.0.0.1:8700"
API = "/api/v1"

__all__ = ["API", "DEFAULT_URL", "Client", "Transport", "raise_for_problem"]  # the last two: older imports


class Client:
    """Talks to a Bottega API server.

    `url` and `token` default to the environment variables `BOTTEGA_URL` and `BOTTEGA_TOKEN`. `http` lets a caller
    pass a ready httpx client (tests pass the server's TestClient).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = (url or os.environ.get("BOTTEGA_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("BOTTEGA_TOKEN")
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=self.url, timeout=timeout)
        self.transport = Transport(self._http, self.token)
        self.projects = ProjectsAPI(self.transport, API)
        self.keys = KeysAPI(self.transport, API)
        self.audit = AuditAPI(self.transport, API)
        self.runs = RunsAPI(self.transport, API)
        self.models = ModelsAPI(self.transport, API)
        self.deployments = DeploymentsAPI(self.transport, API)
        self.jobs = JobsAPI(self.transport, API)
        self.features = FeaturesAPI(self.transport, API)

    def health(self) -> dict[str, Any]:
        """The server's liveness document (`GET /healthz`)."""
        body: dict[str, Any] = self.transport.json("GET", "/healthz")
        return body

    def whoami(self) -> dict[str, Any]:
        body: dict[str, Any] = self.transport.json("GET", f"{API}/whoami")
        return body

    def get_training_set(
        self,
        label_source: Any,
        features: list[str],
        *,
        timestamp_column: str = "timestamp",
        offline_root: str | None = None,
        engine: Literal["duckdb", "spark"] = "duckdb",
        spark: Any = None,
        on_duplicates: Literal["error", "warn", "keep"] = "warn",
        key_columns: Mapping[str, str] | None = None,
    ) -> Any:
        """A point-in-time correct training set (pyarrow Table): `label_source` (a Parquet/CSV path, a pandas
        DataFrame or a pyarrow Table with entity keys and `timestamp_column`) joined with `features`
        (`project:group:feature`) from the offline store. Needs `bottega[store,spark]` (DuckDB, pyarrow).
        Duplicate and conflicting label rows are counted; `on_duplicates` warns (default), keeps silently or
        raises `DuplicateLabels`; `bottega.feature_store.labels.label_duplicates(table)` gives the counts.
        `key_columns` maps join keys to the label table's columns when it names them otherwise
        (`{"user_id": "userId"}`); the result keeps the label table's names."""
        from bottega.feature_store.training import get_training_set

        return get_training_set(
            self,
            label_source,
            features,
            timestamp_column=timestamp_column,
            offline_root=offline_root,
            engine=engine,
            spark=spark,
            on_duplicates=on_duplicates,
            key_columns=key_columns,
        )

    def evaluate_model(
        self,
        project: str,
        model: str,
        version: int | str,
        labels: str | os.PathLike[str],
        *,
        name: str | None = None,
        description: str = "",
        label_column: str | None = None,
        timestamp_column: str | None = None,
        key_columns: Mapping[str, str] | None = None,
        offline_root: str | None = None,
        on_duplicates: Literal["error", "warn", "keep"] = "warn",
    ) -> Any:
        """Evaluate a version (a number or an alias) on newly labelled data and store the report on it as the
        evaluation `name` (default `<labels file stem>-<date>`): the store features joined point in time as in
        training, the version scored by its serving runtime, the same report as training. Needs
        `bottega[xgboost,store]`; see `bottega.training.reevaluate`. Returns the stored `EvaluationRead`."""
        from bottega.training.reevaluate import Overrides, evaluate_version

        over = Overrides(label_column, timestamp_column, key_columns, offline_root, on_duplicates)
        return evaluate_version(
            self, project, model, version, os.fspath(labels), name=name, description=description, overrides=over
        )

    def get_online_features(
        self,
        project: str,
        group: str,
        entities: list[dict[str, Any]],
        *,
        features: list[str] | None = None,
        store: Any = None,
    ) -> list[Any]:
        """What the online store holds for each entity (a mapping of join key -> value) of `project:group`: a list of
        `OnlineRow` (keys, status FRESH/STALE/MISSING, event_time, age_seconds, values), read as serving reads them.
        `store` defaults to the one the environment configures (`BOTTEGA_ONLINE_STORE`: sqlite or cassandra).
        Needs `bottega[store]`."""
        from bottega.feature_store.config import StoreSettings
        from bottega.feature_store.online.inspect import read_online

        online = store if store is not None else StoreSettings.from_env().online()
        try:
            return read_online(self, online, project, group, entities, features=features)
        finally:
            if store is None:
                online.close()

    def train(self, spec: Any, progress: Any = None) -> Any:
        """Train a model from a spec (a YAML path, a dict or a `TrainingSpec`): builds the training set, trains,
        evaluates, records a run and registers a model version (`candidate` when the gates hold). Returns a
        `TrainResult`. Needs `bottega[xgboost,store,spark]`; see docs/training.md."""
        from bottega.training.runner import train

        return train(self, spec, progress)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
