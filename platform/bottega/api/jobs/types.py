"""Job types: what a job is (`JobType`), what it sees while it runs (`JobContext`) and where types come from.

A component registers job types through the Python entry-point group `bottega.job_types`: each entry point names a
function that returns a list of `JobType` (or the list itself). `JobTypeRegistry.discover()` loads them when it is
called, never at import; the registry is then passed explicitly to the API and to workers.

Light on purpose (standard library and pydantic): `bottega worker` imports it on the base install.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bottega.api.jobs.schemas import LOG_TAIL_MAX_BYTES, LOG_TAIL_MAX_LINES, JobTypeRead
from bottega.core.errors import InvalidInput
from bottega.core.names import field_errors

if TYPE_CHECKING:
    from bottega.sdk.client import Client

ENTRY_POINT_GROUP = "bottega.job_types"
BUILTIN_ENTRY_POINT = "bottega.api.jobs.builtin:job_types"
P = TypeVar("P", bound=BaseModel)
log = logging.getLogger("bottega.jobs")


class NoParams(BaseModel):
    """The params model of job types that take none."""

    model_config = ConfigDict(extra="forbid")


class JobCancelled(Exception):
    """Raised inside a job (by `ctx.check_cancelled()` or `ctx.sleep()`) when the run was asked to stop."""


@dataclass(frozen=True)
class JobType(Generic[P]):
    """A kind of job. `run(ctx)` does the work and returns a JSON-able dict (the run's result).

    `params` is the pydantic model the submitted params are validated against, at submission (422) and again on
    the worker before `run` is called; `ctx.params` is the validated instance.
    """

    name: str
    description: str
    run: Callable[[JobContext[P]], Mapping[str, Any] | BaseModel | None]
    params: type[P] = NoParams  # type: ignore[assignment]

    def validate_params(self, params: Mapping[str, Any]) -> P:
        return self.params.model_validate(dict(params))

    def read(self) -> JobTypeRead:
        return JobTypeRead(name=self.name, description=self.description, params_schema=self.params.model_json_schema())


class LogTail:
    """The last `max_lines` lines / `max_bytes` bytes written to it; thread-safe."""

    def __init__(self, max_lines: int = LOG_TAIL_MAX_LINES, max_bytes: int = LOG_TAIL_MAX_BYTES) -> None:
        self._lines: deque[str] = deque()
        self._bytes = 0
        self._partial = ""
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.version = 0

    def write(self, text: str) -> int:
        with self._lock:
            pieces = (self._partial + text).split("\n")
            self._partial = pieces.pop()[-self._max_bytes :]
            for line in pieces:
                self._append(line[-self._max_bytes :] + "\n")
            self.version += 1
        return len(text)

    def _append(self, line: str) -> None:
        self._lines.append(line)
        self._bytes += len(line.encode("utf-8"))
        while self._lines and (len(self._lines) > self._max_lines or self._bytes > self._max_bytes):
            self._bytes -= len(self._lines.popleft().encode("utf-8"))

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines) + self._partial

    def flush(self) -> None:
        return None


class _TailHandler(logging.Handler):
    def __init__(self, tail: LogTail) -> None:
        super().__init__()
        self.tail = tail
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tail.write(self.format(record) + "\n")
        except Exception:  # a logging handler must never raise into the job
            self.handleError(record)


def run_logger(run_id: str, tail: LogTail, echo: logging.Handler | None = None) -> logging.Logger:
    """A logger for one run whose records go to `tail` (and to `echo` when given).

    Made with `logging.Logger(...)` rather than `getLogger`, so it is not kept in logging's global registry.
    """
    logger = logging.Logger(f"bottega.job.{run_id}", logging.INFO)
    logger.addHandler(_TailHandler(tail))
    if echo is not None:
        logger.addHandler(echo)
    return logger


def tail_handler(tail: LogTail) -> logging.Handler:
    """A handler that writes records into `tail` (the CLI worker hangs it on the root logger during a run)."""
    return _TailHandler(tail)


@dataclass
class JobContext(Generic[P]):
    """What a running job sees: its params, project, run id, a logger, cancellation and an SDK client."""

    run_id: str
    project: str
    job_type: str
    params: P
    raw_params: dict[str, Any]
    attempt: int
    log: logging.Logger
    cancel_event: threading.Event = field(default_factory=threading.Event)
    client_factory: Callable[[], Client] | None = None

    def cancelled(self) -> bool:
        """True once the run was asked to stop (cancelled by a user, or the worker is shutting down)."""
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the run was asked to stop: call it between units of work."""
        if self.cancel_event.is_set():
            raise JobCancelled(f"run {self.run_id} was cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking up (with JobCancelled) as soon as the run is asked to stop."""
        if self.cancel_event.wait(max(0.0, seconds)):
            raise JobCancelled(f"run {self.run_id} was cancelled")

    def client(self) -> Client:
        """An SDK client for talking to the API (the worker's URL and key); close it when done."""
        if self.client_factory is None:
            raise RuntimeError("this worker has no API client to give jobs")
        return self.client_factory()


def params_error(exc: ValidationError, prefix: str = "params") -> InvalidInput:
    """A 422 naming each invalid field, in the same shape as request validation errors."""
    errors, detail = field_errors(exc.errors(), prefix)
    return InvalidInput(detail or "invalid params", errors=errors)


class JobTypeRegistry:
    """The job types a process knows, by name. Built explicitly and passed around (no global registry)."""

    def __init__(self, types: Iterable[JobType[Any]] = ()) -> None:
        self._types: dict[str, JobType[Any]] = {}
        for job_type in types:
            self.add(job_type)

    @classmethod
    def discover(cls, *, builtins: bool = True, group: str = ENTRY_POINT_GROUP) -> JobTypeRegistry:
        """The built-in types (`builtins`) plus every type registered under the entry-point group.

        The built-ins are added from their module once; the distribution's own `builtin` entry point is skipped so
        they never arrive twice (nor at all with `builtins=False`). A plugin that fails to load, or that redefines a
        name already taken, is logged and skipped: one broken component must not take the API down.
        """
        registry = cls()
        if builtins:
            from bottega.api.jobs.builtin import job_types

            for job_type in job_types():
                registry.add(job_type)
        for point in entry_points(group=group):
            if point.value == BUILTIN_ENTRY_POINT:
                continue
            try:
                loaded = point.load()
                found = loaded() if callable(loaded) else loaded
                types = list(found)
            except Exception:
                log.exception("job types from entry point %s (%s) failed to load", point.name, point.value)
                continue
            for job_type in types:
                try:
                    registry.add(job_type)
                except ValueError as exc:
                    log.warning("entry point %s: %s", point.name, exc)
        return registry

    def add(self, job_type: JobType[Any]) -> None:
        if not isinstance(job_type, JobType):
            raise ValueError(f"{job_type!r} is not a JobType")
        existing = self._types.get(job_type.name)
        if existing is not None and existing != job_type:
            raise ValueError(f"job type {job_type.name!r} is already defined by {existing.run!r}")
        self._types[job_type.name] = job_type

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[JobType[Any]]:
        return [self._types[name] for name in self.names()]

    def find(self, name: str) -> JobType[Any] | None:
        return self._types.get(name)

    def get(self, name: str) -> JobType[Any]:
        """The job type called `name`; InvalidInput (422, naming `job_type`) when unknown."""
        job_type = self._types.get(name)
        if job_type is None:
            known = ", ".join(self.names()) or "none"
            raise InvalidInput(f"job_type: unknown job type {name!r} (known: {known})", field="job_type")
        return job_type

    def validate(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check `params` against the type's model; returns them as JSON (defaults filled in)."""
        job_type = self.get(name)
        try:
            model = job_type.validate_params(params)
        except ValidationError as exc:
            raise params_error(exc) from exc
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped
