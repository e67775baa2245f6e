"""The worker: claim a run, execute its job type with a heartbeat thread and a captured log tail, complete it.

One loop serves both workers: `bottega worker` passes the SDK's `client.jobs` (HTTP) as the backend and the
embedded worker of the API process passes an in-process backend over the same service functions (background.py).

Stopping: `stop()` finishes the current run and claims no more; `stop(abandon=True)` also asks the current run to
stop (ctx.cancelled() turns true) and hands it back to the queue for another worker. A run whose worker lost it
(409 on heartbeat: it was re-queued after a heartbeat timeout) is stopped and not completed.

Light on purpose (standard library, pydantic and the SDK's errors): it runs on the base install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from bottega.api.jobs.schemas import ERROR_MAX_CHARS, ClaimedRun, HeartbeatReply, JobRunRead
from bottega.api.jobs.types import JobCancelled, JobContext, JobType, JobTypeRegistry, LogTail, run_logger, tail_handler
from bottega.core.errors import (
    BottegaError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)

if TYPE_CHECKING:
    from bottega.sdk.client import Client

log = logging.getLogger("bottega.jobs.worker")
FATAL = (Unauthenticated, Forbidden, InvalidInput)
COMPLETE_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)


class WorkerBackend(Protocol):
    """What a worker needs from the API; `bottega.sdk.jobs.JobsAPI` is one."""

    def claim(self, worker: str, job_types: list[str] | None = None) -> ClaimedRun | None: ...

    def heartbeat(self, run_id: str, *, worker: str, attempt: int, log_tail: str | None = None) -> HeartbeatReply: ...

    def complete(
        self,
        run_id: str,
        *,
        worker: str,
        attempt: int,
        status: str,
        result: Mapping[str, Any] | None = None,
        error: str = "",
        log_tail: str = "",
    ) -> JobRunRead: ...


@dataclass(frozen=True)
class Outcome:
    status: str
    result: dict[str, Any]
    error: str


@dataclass(frozen=True)
class Finished:
    run_id: str
    job_type: str
    status: str
    error: str


def default_name() -> str:
    """`host:pid`, kept to the printable ASCII the API accepts for worker names."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return "".join(c if "!" <= c <= "~" else "-" for c in name)[-100:]


def _jsonable(value: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if not isinstance(value, Mapping):
        raise TypeError(f"run() must return a dict (or a pydantic model, or None), not {type(value).__name__}")
    data = to_jsonable_python(dict(value))
    if not isinstance(data, dict):  # pragma: no cover - a Mapping always dumps to a dict
        raise TypeError("the result is not a JSON object")
    return data


def execute(
    job_type: JobType[Any],
    claimed: ClaimedRun,
    logger: logging.Logger,
    cancel: threading.Event,
    client_factory: Callable[[], Client] | None = None,
) -> Outcome:
    """Run one job: params validated again, exceptions turned into a failed outcome with the traceback logged."""
    try:
        params = job_type.validate_params(claimed.params)
    except ValidationError as exc:
        logger.error("invalid params for %s: %s", job_type.name, exc)
        return Outcome("failed", {}, f"invalid params: {exc}")
    ctx: JobContext[Any] = JobContext(
        run_id=claimed.id,
        project=claimed.project,
        job_type=claimed.job_type,
        params=params,
        raw_params=dict(claimed.params),
        attempt=claimed.attempt,
        log=logger,
        cancel_event=cancel,
        client_factory=client_factory,
    )
    try:
        result = _jsonable(job_type.run(ctx))
    except JobCancelled as exc:
        logger.info("stopped: %s", exc)
        return Outcome("cancelled", {}, str(exc) or "cancelled")
    except (Exception, SystemExit) as exc:
        logger.exception("%s failed", job_type.name)
        return Outcome("failed", {}, f"{type(exc).__name__}: {exc}")
    return Outcome("succeeded", result, "")


class _Tee:
    """A text stream writing to the log tail and to the original stream."""

    def __init__(self, tail: LogTail, stream: Any) -> None:
        self.tail = tail
        self.stream = stream

    def write(self, text: str) -> int:
        self.tail.write(text)
        with contextlib.suppress(Exception):
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.flush()


@contextlib.contextmanager
def _captured(tail: LogTail, enabled: bool) -> Iterator[None]:
    """In a dedicated worker process: the root logger, stdout and stderr also go to the run's log tail."""
    if not enabled:
        yield
        return
    handler = tail_handler(tail)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(_Tee(tail, sys.stdout)), contextlib.redirect_stderr(_Tee(tail, sys.stderr)):
            yield
    finally:
        root.removeHandler(handler)


class Worker:
    """Claims and runs jobs until stopped. `run(once=True)` processes at most one run."""

    def __init__(
        self,
        backend: WorkerBackend,
        registry: JobTypeRegistry,
        *,
        name: str | None = None,
        job_types: list[str] | None = None,
        poll_interval_s: float = 2.0,
        client_factory: Callable[[], Client] | None = None,
        capture_output: bool = False,
        echo: logging.Handler | None = None,
    ) -> None:
        unknown = sorted(set(job_types or ()) - set(registry.names()))
        if unknown:
            raise ValueError(f"this worker does not know job type(s) {', '.join(unknown)}; known: {registry.names()}")
        self.backend = backend
        self.registry = registry
        self.name = name or default_name()
        self.job_types = sorted(job_types) if job_types else registry.names()
        self.poll_interval_s = poll_interval_s
        self.client_factory = client_factory
        self.capture_output = capture_output
        self.echo = echo
        self.last: Finished | None = None
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._current: threading.Event | None = None

    def stop(self, *, abandon: bool = False) -> None:
        """Claim nothing more; with `abandon`, also stop the current run and hand it back to the queue."""
        self._stop.set()
        if abandon:
            self._abandon.set()
            with self._lock:
                if self._current is not None:
                    self._current.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> int:
        """Process runs until stopped (or one, with `once`); returns how many it processed."""
        processed = 0
        while not self._stop.is_set():
            try:
                claimed = self.backend.claim(self.name, self.job_types)
            except FATAL:
                raise
            except Exception as exc:
                if once:
                    raise
                log.warning("claiming a run failed (%s); retrying in %s s", exc, self.poll_interval_s)
                self._stop.wait(self.poll_interval_s)
                continue
            if claimed is None:
                if once:
                    break
                self._stop.wait(self.poll_interval_s)
                continue
            try:
                self.process(claimed)
            except Exception:  # never expected: execute() turns job errors into outcomes
                log.exception("run %s: the worker failed around it; its heartbeat timeout will recover it", claimed.id)
            processed += 1
            if once:
                break
        return processed

    def process(self, claimed: ClaimedRun) -> Finished | None:
        """Execute a claimed run and complete it; None when the run was lost to another attempt."""
        log.info("run %s: %s attempt %d (project %s)", claimed.id, claimed.job_type, claimed.attempt, claimed.project)
        tail = LogTail()
        logger = run_logger(claimed.id, tail, self.echo)
        cancel, requested, lost, done = (threading.Event() for _ in range(4))
        with self._lock:
            self._current = cancel
            if self._abandon.is_set():
                cancel.set()
        beat = threading.Thread(
            target=self._heartbeats,
            args=(claimed, tail, cancel, requested, lost, done),
            name=f"bottega-heartbeat-{claimed.id[:8]}",
            daemon=True,
        )
        beat.start()
        try:
            job_type = self.registry.find(claimed.job_type)
            with _captured(tail, self.capture_output):
                if job_type is None:
                    logger.error("this worker does not know job type %s", claimed.job_type)
                    outcome = Outcome("failed", {}, f"worker {self.name} does not know job type {claimed.job_type}")
                else:
                    outcome = execute(job_type, claimed, logger, cancel, self.client_factory)
        finally:
            done.set()
            beat.join()
            with self._lock:
                self._current = None
        if lost.is_set():
            log.warning("run %s: lost to another attempt; its outcome (%s) is dropped", claimed.id, outcome.status)
            return None
        status = outcome.status
        if status == "cancelled" and self._abandon.is_set() and not requested.is_set():
            status = "queued"  # stopped because this worker is shutting down: hand it back
        finished = self._complete(claimed, status, outcome, tail)
        self.last = finished
        return finished

    def _heartbeats(
        self,
        claimed: ClaimedRun,
        tail: LogTail,
        cancel: threading.Event,
        requested: threading.Event,
        lost: threading.Event,
        done: threading.Event,
    ) -> None:
        sent = -1
        while not done.wait(claimed.heartbeat_interval_s):
            version = tail.version
            try:
                reply = self.backend.heartbeat(
                    claimed.id,
                    worker=self.name,
                    attempt=claimed.attempt,
                    log_tail=tail.text() if version != sent else None,
                )
            except (Conflict, NotFound) as exc:
                log.warning("run %s: %s", claimed.id, exc)
                lost.set()
                cancel.set()
                return
            except Exception as exc:  # the API is briefly unreachable: keep running, try again
                log.warning("run %s: heartbeat failed (%s)", claimed.id, exc)
                continue
            sent = version
            if reply.cancel_requested and not cancel.is_set():
                log.info("run %s: cancel requested", claimed.id)
                requested.set()
                cancel.set()

    def _complete(self, claimed: ClaimedRun, status: str, outcome: Outcome, tail: LogTail) -> Finished | None:
        delays = iter(COMPLETE_RETRY_DELAYS_S)
        result, error = outcome.result, outcome.error[-ERROR_MAX_CHARS:]
        while True:
            try:
                read = self.backend.complete(
                    claimed.id,
                    worker=self.name,
                    attempt=claimed.attempt,
                    status=status,
                    result=result,
                    error=error,
                    log_tail=tail.text(),
                )
            except (PayloadTooLarge, InvalidInput) as exc:
                if status == "failed" and not result:
                    log.error("run %s: completing it failed: %s", claimed.id, exc.detail)
                    return None
                log.error("run %s: the API refused its outcome (%s); reporting it as failed", claimed.id, exc.detail)
                status, result, error = "failed", {}, f"the API refused the run's result: {exc.detail}"
                continue
            except BottegaError as exc:
                if exc.status < 500:
                    log.error("run %s: completing it failed: %s", claimed.id, exc.detail)
                    return None
                delay = next(delays, None)
            except Exception as exc:
                log.warning("run %s: completing it failed (%s)", claimed.id, exc)
                delay = next(delays, None)
            else:
                log.info("run %s: %s", claimed.id, read.status)
                return Finished(claimed.id, claimed.job_type, read.status, read.error)
            if delay is None:
                log.error(
                    "run %s: could not report it as %s; it will be re-queued after its heartbeat timeout",
                    claimed.id,
                    status,
                )
                return None
            threading.Event().wait(delay)
