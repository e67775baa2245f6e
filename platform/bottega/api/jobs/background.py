"""Background work of the API process: the scheduler thread and, when `embedded_worker` is on, one worker thread.

`start(app, settings)` is called once the app has started; it returns a function that stops what it started
(an Event tells the threads to stop; they are joined with a timeout).

- The scheduler ticks every `settings.scheduler_interval_s` seconds (0 or less: no scheduler in this process); see
  scheduler.py for what a tick does and how occurrences are queued exactly once across replicas and restarts.
- The embedded worker claims and runs jobs through the same service functions as `POST /api/v1/jobs/claim` etc.,
  polling the queue at the scheduler's interval. Jobs that talk to the API get a client for `BOTTEGA_URL` with
  `BOTTEGA_TOKEN` (or the bootstrap admin key). On shutdown it asks its current run to stop and hands it back to
  the queue; a run that does not stop within the join timeout is recovered by the heartbeat timeout.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from bottega.api.auth.principal import Principal
from bottega.api.jobs import dispatch, scheduler
from bottega.api.jobs.runtime import JobsRuntime, runtime_for
from bottega.api.jobs.schemas import (
    ClaimedRun,
    ClaimRequest,
    CompleteRequest,
    HeartbeatReply,
    HeartbeatRequest,
    JobRunRead,
)
from bottega.api.jobs.worker import Worker, default_name
from bottega.api.settings import ApiSettings

if TYPE_CHECKING:
    from bottega.sdk.client import Client

log = logging.getLogger("bottega.jobs")
JOIN_TIMEOUT_S = 10.0
EMBEDDED_USER = "embedded-worker"


class LocalBackend:
    """The worker protocol in-process: each call is one transaction through dispatch.py, as an admin."""

    def __init__(self, sessions: sessionmaker[Session], runtime: JobsRuntime) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._principal = Principal(user=EMBEDDED_USER, key_id="embedded", is_admin=True)

    def claim(self, worker: str, job_types: list[str] | None = None) -> ClaimedRun | None:
        body = ClaimRequest(worker=worker, job_types=job_types)
        with self._sessions() as session, session.begin():
            return dispatch.claim(session, self._principal, body, self._runtime.settings)

    def heartbeat(self, run_id: str, *, worker: str, attempt: int, log_tail: str | None = None) -> HeartbeatReply:
        body = HeartbeatRequest(worker=worker, attempt=attempt, log_tail=log_tail)
        with self._sessions() as session, session.begin():
            return dispatch.heartbeat(session, self._principal, run_id, body)

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
    ) -> JobRunRead:
        body = CompleteRequest.model_validate(
            {
                "worker": worker,
                "attempt": attempt,
                "status": status,
                "result": dict(result or {}),
                "error": error,
                "log_tail": log_tail,
            }
        )
        with self._sessions() as session, session.begin():
            return dispatch.complete(session, self._principal, run_id, body)


def embedded_client_factory(settings: ApiSettings) -> Callable[[], Client]:
    """Clients for jobs of the embedded worker: `BOTTEGA_URL`, and `BOTTEGA_TOKEN` or the bootstrap admin key."""

    def factory() -> Client:
        from bottega.sdk.client import Client

        token = os.environ.get("BOTTEGA_TOKEN") or settings.bootstrap_token
        saved = settings.home / "bootstrap-token"
        if not token and saved.is_file():
            token = saved.read_text().strip()
        return Client(os.environ.get("BOTTEGA_URL"), token)

    return factory


def _scheduler_loop(
    sessions: sessionmaker[Session], runtime: JobsRuntime, interval: float, stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            report = scheduler.tick(sessions, runtime.settings)
            if report.queued or report.reaped:
                log.info("scheduler: queued %d run(s), recovered %d", len(report.queued), len(report.reaped))
        except Exception:  # the database may be briefly unreachable or locked: try again next tick
            log.exception("scheduler tick failed")
        stop.wait(interval)


def _worker_loop(worker: Worker) -> None:
    try:
        worker.run()
    except Exception:
        log.exception("the embedded worker stopped")


def start(app: FastAPI, settings: ApiSettings) -> Callable[[], None]:
    runtime = runtime_for(app)
    sessions: sessionmaker[Session] = app.state.sessionmaker
    stop_event = threading.Event()
    threads: list[threading.Thread] = []
    worker: Worker | None = None
    if settings.scheduler_interval_s > 0:
        threads.append(
            threading.Thread(
                target=_scheduler_loop,
                args=(sessions, runtime, settings.scheduler_interval_s, stop_event),
                name="bottega-scheduler",
                daemon=True,
            )
        )
    if settings.embedded_worker:
        worker = Worker(
            LocalBackend(sessions, runtime),
            runtime.registry,
            name=f"embedded@{default_name()}",
            poll_interval_s=settings.scheduler_interval_s if settings.scheduler_interval_s > 0 else 1.0,
            client_factory=embedded_client_factory(settings),
        )
        threads.append(threading.Thread(target=_worker_loop, args=(worker,), name="bottega-worker", daemon=True))
    for thread in threads:
        thread.start()

    def stop() -> None:
        stop_event.set()
        if worker is not None:
            worker.stop(abandon=True)
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s did not stop within %s s", thread.name, JOIN_TIMEOUT_S)

    return stop
