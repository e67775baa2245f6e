"""The prediction log the prediction service writes to: `open_prediction_log(...)`, then `start()` in each worker
process (after any fork), `append(record)` on the request path, `close()` at shutdown.

- `append` encodes the record and writes it to this process's spool folder (one write(2), no fsync) before it
  returns; it never raises: a record that cannot be encoded or written (full disk, closed log) counts as `dropped`.
- With `kafka_bootstrap`, a forwarder thread ships the spool to `topic_for(project)` and deletes what Kafka
  acknowledged; folders left by processes that died (kill -9) are adopted and shipped by a live process.
- Without it (embedded default) the spool is the log and is never deleted: read it with
  `bottega.serving.predlog.spool.read_spool(spool_dir)`.

`stats()`: queue_depth (records appended and not yet shipped; embedded: not yet fsynced), dropped, shipped (records
Kafka acknowledged; embedded: records fsynced), fsyncs, adopted (orphan folders taken over), plus appended, torn,
corrupt, rejected and kafka_connected (1.0 or 0.0).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from bottega.serving.predlog.forwarder import TOPIC_PATTERN, Forwarder
from bottega.serving.predlog.record import PredictionRecord
from bottega.serving.predlog.spool import SEGMENT_BYTES, SpoolWriter

log = logging.getLogger(__name__)

TOPIC_PREFIX = "bottega.predictions."


def default_topic(project: str) -> str:
    """The Kafka topic of a project's prediction log: "bottega.predictions." + project."""
    topic = TOPIC_PREFIX + project
    if not project or not TOPIC_PATTERN.match(topic):
        raise ValueError(f"project {project!r} cannot name a Kafka topic: use letters, digits, '.', '_' or '-'")
    return topic


class PredictionLog(ABC):
    @abstractmethod
    def append(self, record: PredictionRecord) -> None:
        """Spool one record before the response is sent (write(2), no fsync); never raises, counts drops."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def close(self, timeout: float = 5.0) -> None: ...

    @abstractmethod
    def stats(self) -> dict[str, float]: ...


class SpooledPredictionLog(PredictionLog):
    """A spool folder for this process, plus a Kafka forwarder when `kafka_bootstrap` is given."""

    def __init__(
        self,
        spool_dir: Path,
        *,
        kafka_bootstrap: str | None,
        topic_for: Callable[[str], str],
        segment_bytes: int = SEGMENT_BYTES,
        sync_interval_s: float = 0.05,
        linger_ms: int = 10,
    ) -> None:
        self.spool_dir = Path(spool_dir).expanduser()
        self.kafka_bootstrap = kafka_bootstrap
        self.topic_for = topic_for
        self.linger_ms = linger_ms
        self.writer = SpoolWriter(self.spool_dir, segment_bytes=segment_bytes, sync_interval_s=sync_interval_s)
        self.forwarder: Forwarder | None = None
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Open this process's spool folder and start the fsync thread and, with Kafka, the forwarder."""
        if self._started:
            raise RuntimeError("the prediction log is already started")
        try:
            folder = self.writer.open()
        except OSError as exc:
            raise OSError(f"cannot open the prediction-log spool in {self.spool_dir}: {exc}") from exc
        if self.kafka_bootstrap:
            self.forwarder = Forwarder(
                self.spool_dir,
                bootstrap=self.kafka_bootstrap,
                topic_for=self.topic_for,
                own=folder,
                linger_ms=self.linger_ms,
            )
            self.forwarder.start()
        self._started = True

    def append(self, record: PredictionRecord) -> None:
        try:
            self.writer.append(record.encode())
        except Exception as exc:
            with self._drop_lock:
                self._dropped += 1
                dropped = self._dropped
            if dropped & (dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th ... drop
                log.warning("prediction log: %d record(s) dropped so far (%r)", dropped, exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop appending, sync, give the forwarder up to `timeout` s to ship the rest, then release the folder
        (deleted when wholly shipped, or when empty on embedded defaults; otherwise a later process adopts it)."""
        if not self._started:
            return
        self._started = False
        self.writer.close()
        if self.forwarder is not None:
            drained = self.forwarder.stop(timeout)
            self.writer.release(remove=drained)
        else:
            self.writer.release(remove=self.writer.is_empty())

    def stats(self) -> dict[str, float]:
        writer, fwd = self.writer, self.forwarder
        out: dict[str, float] = {
            "appended": float(writer.appended),
            "dropped": float(self._dropped),
            "fsyncs": float(writer.fsyncs),
        }
        if fwd is None:
            out.update(queue_depth=float(writer.appended - writer.synced), shipped=float(writer.synced))
            out.update(adopted=0.0, torn=0.0, corrupt=0.0, rejected=0.0, kafka_connected=0.0)
            return out
        own_left = max(writer.appended - fwd.own_done, 0)
        out.update(queue_depth=float(own_left + fwd.orphan_pending), shipped=float(fwd.shipped))
        torn = sum(cursor.torn for cursor in [fwd.own, *fwd.orphans.values()] if cursor is not None)
        out.update(adopted=float(fwd.adopted), torn=float(torn), corrupt=float(fwd.corrupt))
        out.update(rejected=float(fwd.rejected), kafka_connected=1.0 if fwd.connected else 0.0)
        return out


def open_prediction_log(
    spool_dir: Path, *, kafka_bootstrap: str | None, topic_for: Callable[[str], str]
) -> PredictionLog:
    """The prediction log of one serving process (not started: call `start()` in each worker process).

    `kafka_bootstrap` None or "" -> local spool only (embedded default). Raises ValueError / MissingExtra naming
    what to fix for a bad spool path or a missing kafka-python.
    """
    path = Path(spool_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"the prediction-log spool {path} exists and is not a directory (BOTTEGA_SPOOL_DIR)")
    if kafka_bootstrap:
        from bottega.core.extras import require

        require("kafka", "stream")
    return SpooledPredictionLog(path, kafka_bootstrap=kafka_bootstrap or None, topic_for=topic_for)
