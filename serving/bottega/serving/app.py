"""The prediction service: a plain ASGI app (no framework on the request path) serving many models at once.

    POST /v1/models/{deployment}:predict                     {"instances": [{...}, ...]}
    POST /v1/projects/{project}/models/{deployment}:predict  (when a name exists in several projects)
    GET  /healthz   GET /readyz   GET /metrics

A request: find the route -> pick the version (pin, sticky key or weights) -> decode the rows against the version's
signature -> one multi-get of store features + on-demand transforms -> predict -> spool one prediction-log record per
row -> respond. Shadow versions score the same rows after the response is sent. Errors are problem+json naming what
to fix; nothing reaches a model before its rows decoded cleanly.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from bottega.core.errors import PROBLEM_PREFIX
from bottega.serving.routing import LoadedModel, Route, RoutingError, ServingState, sticky_value

if TYPE_CHECKING:
    from bottega.feature_store.offline.store import OfflineStore
    from bottega.feature_store.online.base import OnlineStore
    from bottega.sdk import Client
    from bottega.serving.features.join import Assembled, FeatureJoiner
    from bottega.serving.metrics import ServingMetrics
    from bottega.serving.predlog.log import PredictionLog
    from bottega.serving.settings import ServingSettings
    from bottega.serving.watcher import Watcher

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
log = logging.getLogger("bottega.serving")
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PENDING_SHADOWS = 1024
JSON = [(b"content-type", b"application/json")]
PROBLEM = [(b"content-type", b"application/problem+json")]


class Problem(Exception):
    def __init__(self, status: int, slug: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.field = field

    def body(self) -> bytes:
        doc: dict[str, Any] = {
            "type": PROBLEM_PREFIX + self.slug,
            "title": self.slug.replace("-", " ").capitalize(),
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        return orjson.dumps(doc)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "bad-request", "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, "payload-too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _route_path(path: str) -> tuple[str | None, str] | None:
    """(project or None, deployment) of a predict path, None when the path is not one."""
    if not path.endswith(":predict"):
        return None
    parts = path[: -len(":predict")].split("/")
    if len(parts) == 4 and parts[1] == "v1" and parts[2] == "models" and parts[3]:
        return None, parts[3]
    if len(parts) == 6 and parts[1:3] == ["v1", "projects"] and parts[4] == "models" and parts[3] and parts[5]:
        return parts[3], parts[5]
    return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name: value for name, value in scope.get("headers", ()) if name.startswith(b"x-")}


class ServingApp:
    """The ASGI callable. Collaborators are passed in (tests) or built from settings at lifespan startup."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        client: Client | None = None,
        store: OnlineStore | None = None,
        prediction_log: PredictionLog | None = None,
        offline: OfflineStore | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.offline = offline  # for `as_of` requests only
        self.prediction_log = prediction_log
        self.state = ServingState()
        self.watcher: Watcher | None = None
        self.joiner: FeatureJoiner | None = None
        self.metrics: ServingMetrics | None = None
        self._shadows: set[asyncio.Task[None]] = set()
        self._id_prefix = uuid.uuid4().hex[:16]  # per process: ids are this prefix + a counter (cheaper than uuid4)
        self._ids = itertools.count(1)
        self._owned: list[Callable[[], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Build what was not given, start the prediction log and the watcher (returns at once)."""
        from bottega.serving.features.join import FeatureJoiner
        from bottega.serving.metrics import ServingMetrics
        from bottega.serving.runtimes.loader import ArtifactCache
        from bottega.serving.watcher import Loader, Watcher

        settings = self.settings
        if self.client is None:
            from bottega.sdk import Client

            self.client = Client(settings.url, settings.token)
            self._owned.append(self.client.close)
        if self.store is None or self.offline is None:
            from bottega.feature_store.config import StoreSettings

            stores = StoreSettings.from_env()
            if self.store is None:
                self.store = stores.online()
                self._owned.append(self.store.close)
            self.offline = self.offline or stores.offline()
        if self.prediction_log is None and settings.serve_prediction_log:
            from bottega.serving.predlog.log import default_topic, open_prediction_log

            self.prediction_log = open_prediction_log(
                settings.spool, kafka_bootstrap=settings.prediction_log_kafka, topic_for=default_topic
            )
            self.prediction_log.start()
            self._owned.append(self.prediction_log.close)
        self.metrics = ServingMetrics(self.prediction_log.stats if self.prediction_log is not None else None)
        self.joiner = FeatureJoiner(self.store, timeout_s=settings.store_timeout_s, offline=self.offline)
        loader = Loader(self.client, ArtifactCache(settings.cache_dir, self.client), self.store)
        metrics = self.metrics
        self.watcher = Watcher(
            self.client,
            loader,
            self._publish,
            project=settings.serve_project,
            poll_timeout_s=settings.serve_watch_timeout_s,
            unload_grace_s=settings.serve_unload_grace_s,
            on_load_failure=lambda model: metrics.load_failures.labels(model).inc(),
        )
        self.watcher.start()

    def _publish(self, state: ServingState) -> None:
        self.state = state
        if self.metrics is not None:
            self.metrics.loaded.set(len(state.models()))
        gc.collect()
        gc.freeze()  # loaded models are long-lived: keep them out of the collector's way

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for close in reversed(self._owned):
            try:
                close()
            except Exception:
                log.exception("shutting down the prediction service")
        self._owned.clear()

    # -- ASGI ------------------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(self.start)
                except Exception as exc:
                    log.exception("the prediction service failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        try:
            target = _route_path(path)
            if target is not None:
                if method != "POST":
                    raise Problem(405, "method-not-allowed", f"{path} takes POST")
                await self._predict(target[0], target[1], scope, receive, send)
            elif path == "/healthz":
                await _respond(send, 200, b'{"status":"ok"}', JSON)
            elif path == "/readyz":
                await self._readyz(send)
            elif path == "/metrics":
                await self._metrics(send)
            else:
                raise Problem(404, "not-found", f"no route {path}: POST /v1/models/<deployment>:predict")
        except Problem as problem:
            await _respond(send, problem.status, problem.body(), PROBLEM)

    async def _readyz(self, send: Send) -> None:
        watcher = self.watcher
        status = watcher.status if watcher is not None else None
        ready = status is not None and status.snapshot_applied and not status.never_loaded
        body = {
            "ready": ready,
            "deployments": sorted(f"{p}/{n}" for p, n in self.state.routes),
            "errors": {f"{p}/{n}": why for (p, n), why in (status.errors if status else {}).items()},
            "sequence": status.sequence if status else None,
        }
        await _respond(send, 200 if ready else 503, orjson.dumps(body), JSON)

    async def _metrics(self, send: Send) -> None:
        if self.metrics is None:
            raise Problem(503, "unavailable", "the service is starting")
        body, content_type = self.metrics.render()
        await _respond(send, 200, body, [(b"content-type", content_type.encode())])

    # -- predict ---------------------------------------------------------------------------------------------------
    async def _predict(self, project: str | None, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter_ns()
        state = self.state
        try:
            route = state.find(name, project)
        except RoutingError as exc:
            raise Problem(409, "conflict", str(exc)) from None
        if route is None:
            served = ", ".join(sorted({n for _, n in state.routes})) or "none yet"
            raise Problem(404, "not-found", f"no deployment {name!r} is served here (served: {served})")
        headers = _headers(scope)
        body = await _read_body(receive)
        try:
            model, rows, raw_as_of = self._choose(route, headers, body)
            as_of = None if raw_as_of is None else self._as_of(raw_as_of, rows)
            assembled = await self._assemble(model, rows, as_of)
        except Problem as problem:
            self._count_error(route.name, problem.slug)
            raise
        predictions = await self._score(route, model, assembled)
        request_id = headers.get(b"x-request-id", b"").decode() or f"{self._id_prefix}{next(self._ids):x}"
        latency_us = (time.perf_counter_ns() - started) // 1000
        self._log(route, model, assembled, predictions, request_id, latency_us, shadow=False, as_of=as_of)
        response = {
            "deployment": route.name,
            "model": model.model,
            "version": model.version,
            "request_id": request_id,
            "predictions": predictions,
            "feature_status": assembled.status,
        }
        if as_of is not None:
            response["as_of"] = as_of.isoformat()  # a replay: store features from the offline store at this time
        if model.classes:  # multiclass: the labels of the probabilities, and each row's most probable one
            response["classes"] = model.classes
            response["predicted_classes"] = [model.classes[row.index(max(row))] for row in predictions]
        out_headers = [
            *JSON,
            (b"x-bottega-version", model.label.encode()),
            (b"x-request-id", request_id.encode()),
        ]
        await _respond(send, 200, orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), out_headers)
        self._observe(route, model, len(rows), started, assembled.store_ms)
        if route.shadows:
            self._shadow(route, body, rows, model, request_id, as_of)

    def _choose(self, route: Route, headers: dict[bytes, bytes], body: bytes) -> tuple[LoadedModel, list[Any], Any]:
        """The model that answers, the decoded rows and the raw `as_of` (None when absent)."""
        from bottega.serving.features.decode import RequestError, decode_instances, decode_request

        pinned = headers.get(b"x-bottega-version")
        key = headers.get(b"x-bottega-routing-key")
        try:
            first = route.choose(pinned.decode() if pinned else None, key.decode() if key else None)
        except RoutingError as exc:
            raise Problem(404, "not-found", str(exc), field="X-Bottega-Version") from None
        max_rows = self.settings.serve_max_rows
        try:
            rows, as_of = decode_request(body, first.plan, max_rows=max_rows)
            if pinned or key or route.sticky_key is None:
                return first, rows, as_of
            model = route.choose(None, sticky_value(rows, route.sticky_key))
            if model.plan is not first.plan:
                rows = decode_instances(body, model.plan, max_rows=max_rows)
            return model, rows, as_of
        except RequestError as exc:
            raise Problem(exc.status, _slug(exc.status), exc.detail, field=exc.field) from None

    def _as_of(self, value: Any, rows: list[Any]) -> datetime:
        from bottega.serving.features.decode import RequestError, request_as_of

        try:
            return request_as_of(value, len(rows), self.settings.serve_as_of_max_rows)
        except RequestError as exc:
            raise Problem(exc.status, _slug(exc.status), exc.detail, field=exc.field) from None

    async def _assemble(self, model: LoadedModel, rows: list[Any], as_of: datetime | None = None) -> Assembled:
        from bottega.serving.features.decode import RequestError

        assert self.joiner is not None
        try:
            return await self.joiner.assemble(model.plan, rows, as_of=as_of)
        except RequestError as exc:
            raise Problem(exc.status, _slug(exc.status), exc.detail, field=exc.field) from None

    async def _score(
        self, route: Route, model: LoadedModel, assembled: Assembled, *, shadow: bool = False
    ) -> list[Any]:
        """Predict; errors become Problems (counted here for served versions; `_score_shadows` counts shadows')."""
        from bottega.serving.runtimes.base import ModelUnavailable, PredictionFailed

        try:
            if model.blocking:
                result = await asyncio.to_thread(model.runtime.predict, assembled.matrix)
            else:
                result = model.runtime.predict(assembled.matrix)
        except ModelUnavailable as exc:
            if not shadow:
                self._count_error(route.name, "model-unavailable")
            raise Problem(503, "model-unavailable", f"{model.label}: {exc}") from None
        except PredictionFailed as exc:
            if not shadow:
                self._count_error(route.name, "model-error")
            raise Problem(500, "model-error", f"{model.label} failed to predict: {exc}") from None
        except Exception as exc:
            log.exception("%s failed to predict", model.label)
            if not shadow:
                self._count_error(route.name, "model-error")
            raise Problem(500, "model-error", f"{model.label} failed to predict: {exc}") from None
        predictions: list[Any] = result.tolist()
        return predictions

    def _log(
        self,
        route: Route,
        model: LoadedModel,
        assembled: Assembled,
        predictions: list[Any],
        request_id: str,
        latency_us: int,
        *,
        shadow: bool,
        as_of: datetime | None = None,
    ) -> None:
        from bottega.serving.predlog.record import PredictionRecord

        plog = self.prediction_log
        if plog is None:
            return
        now_us = time.time_ns() // 1000
        single = len(predictions) == 1
        served = assembled.matrix.tolist()  # NaN (missing) is written as null
        as_of_us = None if as_of is None else int(as_of.timestamp() * 1_000_000)
        for i, prediction in enumerate(predictions):
            plog.append(
                PredictionRecord(
                    request_id=request_id if single else f"{request_id}:{i}",
                    ts_us=now_us,
                    project=route.project,
                    deployment=route.name,
                    model=model.model,
                    version=model.version,
                    shadow=shadow,
                    features=served[i],
                    status=assembled.status[i],
                    prediction=prediction,
                    latency_us=latency_us,
                    as_of_us=as_of_us,
                )
            )

    def _observe(self, route: Route, model: LoadedModel, rows: int, started: int, store_ms: float) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        child = metrics.route(route.name, model.label)
        child.ok.inc()
        child.rows.inc(rows)
        child.latency.observe((time.perf_counter_ns() - started) / 1e9)
        if model.plan.entity_keys:
            metrics.store_latency.labels(route.name).observe(store_ms / 1000.0)

    def _count_error(self, deployment: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(deployment, kind).inc()

    # -- shadows ---------------------------------------------------------------------------------------------------
    def _shadow(
        self, route: Route, body: bytes, rows: list[Any], served: LoadedModel, request_id: str, as_of: datetime | None
    ) -> None:
        if len(self._shadows) >= MAX_PENDING_SHADOWS:
            self._count_error(route.name, "shadow-dropped")
            return
        scoring = self._score_shadows(route, body, rows, served, request_id, as_of)
        task = asyncio.get_running_loop().create_task(scoring)
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _score_shadows(
        self, route: Route, body: bytes, rows: list[Any], served: LoadedModel, request_id: str, as_of: datetime | None
    ) -> None:
        from bottega.serving.features.decode import RequestError, decode_instances

        for shadow in route.shadows:
            started = time.perf_counter_ns()
            try:
                same = shadow.plan.input_names == served.plan.input_names
                mine = rows if same else decode_instances(body, shadow.plan, max_rows=self.settings.serve_max_rows)
                assembled = await self._assemble(shadow, mine, as_of)
                predictions = await self._score(route, shadow, assembled, shadow=True)
            except (Problem, RequestError):
                self._count_error(route.name, "shadow-error")
                continue
            latency_us = (time.perf_counter_ns() - started) // 1000
            self._log(route, shadow, assembled, predictions, request_id, latency_us, shadow=True, as_of=as_of)
            if self.metrics is not None:
                self.metrics.shadow.labels(route.name, shadow.label).inc(len(predictions))


def _slug(status: int) -> str:
    return {400: "bad-request", 413: "payload-too-large", 422: "invalid-input"}.get(status, "invalid-input")


def create_app() -> ServingApp:
    """The uvicorn factory (`bottega serve`): settings from the environment, collaborators built at startup."""
    from bottega.serving.settings import ServingSettings

    return ServingApp(ServingSettings())
