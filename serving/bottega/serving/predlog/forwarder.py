"""The forwarder: a background thread that ships the spool to Kafka, at least once, in order per writer folder.

Each round reads up to `batch_records` complete lines from this process's own folder and from the folders it
adopted (dead writers, see `spool.try_lock`), decodes each line, and produces it to `topic_for(project)` with the
request id as key (kafka-python, acks="all", idempotent, `linger_ms` batching). Only after the producer's futures
succeeded does it persist, per folder, the position after the last acknowledged line; segments wholly before it
are deleted, and an adopted folder is deleted once everything in it is shipped. A crash between the acks and that
persist ships those lines again: consumers dedupe on request_id.

When Kafka is unreachable (no producer, metadata timeouts, delivery timeouts) nothing is committed, the folder is
re-read from its acknowledged position after a backoff (0.2 s doubling to 5 s), and the spool grows: nothing is
dropped. Lines that are not records (`corrupt`) and records Kafka can never take (`rejected`: a topic name that is
not valid for Kafka, a message over the broker's size limit) are skipped and counted so they cannot block the log.
Cost: kafka-python spends ~25-45 µs of CPU per record (install the C `crc32c` package: without it, CRC32C is pure
Python and costs ~3x more), in this process and under its GIL, so a busy worker pays for shipping. Shipping live
folders from a separate process would need a shipping lock per folder beside the writer's lock (today the writer's
process ships its own folder, and only folders of dead writers are taken over).

Topics are created with the broker's defaults (admin client) the first time they are seen; if that fails the
broker's auto-create (enabled in deploy/services/conf/kafka) still applies.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottega.serving.predlog.record import decode
from bottega.serving.predlog.spool import FolderCursor, Position, clean_abandoned_new, remove_folder, try_lock
from bottega.serving.predlog.spool import writer_folders as list_writer_folders

log = logging.getLogger(__name__)

TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
SEND, CORRUPT, REJECTED = 0, 1, 2
MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


@dataclass(slots=True)
class Item:
    cursor: FolderCursor
    end: Position
    kind: int
    topic: str = ""
    key: bytes = b""
    value: bytes = b""


class _Countdown:
    """Sets `done` once `n` futures have completed (success or failure); used as a kafka-python `add_both` hook."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.lock = threading.Lock()
        self.done = threading.Event()
        if n == 0:
            self.done.set()

    def __call__(self, _result: Any) -> None:
        with self.lock:
            self.left -= 1
            if self.left <= 0:
                self.done.set()


class Forwarder:
    """Ships `own` (this process's writer folder, may be None) and adopted orphan folders under `root` to Kafka."""

    def __init__(
        self,
        root: Path,
        *,
        bootstrap: str,
        topic_for: Callable[[str], str],
        own: Path | None,
        batch_records: int = 5000,
        batch_bytes: int = 4 * 1024 * 1024,
        linger_ms: int = 10,
        idle_s: float = 0.01,
        scan_interval_s: float = 1.0,
        delivery_timeout_s: float = 15.0,
        client_id: str = "bottega-predlog",
    ) -> None:
        if not bootstrap.strip():
            raise ValueError("the Kafka bootstrap servers for the prediction log are empty")
        if batch_records < 1:
            raise ValueError(f"batch_records must be at least 1, got {batch_records}")
        self.root = Path(root)
        self.bootstrap = bootstrap
        self.topic_for = topic_for
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.linger_ms = linger_ms
        self.idle_s = idle_s
        self.scan_interval_s = scan_interval_s
        self.delivery_timeout_s = delivery_timeout_s
        self.client_id = client_id
        self.own = FolderCursor(own, final=False) if own is not None else None
        self.orphans: dict[Path, FolderCursor] = {}
        self.shipped = 0
        self.own_done = 0  # own lines acknowledged or skipped
        self.orphan_pending = 0
        self.adopted = 0
        self.corrupt = 0
        self.rejected = 0
        self.failures = 0
        self.connected = False
        self._producer: Any = None
        self._topics: set[str] = set()
        self._partition_cache: dict[str, list[int]] = {}
        self._bad_topics: set[str] = set()
        self._draining = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the forwarder is already started")
        self._thread = threading.Thread(target=self._run, name="bottega-predlog-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ship what is left until `timeout`, then stop. True when the own folder is wholly shipped."""
        self._draining.set()
        if self._thread is not None:
            self._thread.join(max(timeout, 0.0))
            if self._thread.is_alive():
                self._halt.set()
                self._thread.join(10.0)
            self._thread = None
        return self.own_drained()

    def own_drained(self) -> bool:
        own = self.own
        return own is None or (own.acked == own.read_pos and own.at_end())

    # -- the loop -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        next_scan = 0.0
        try:
            while not self._halt.is_set():
                if time.monotonic() >= next_scan:
                    self._adopt_orphans()
                    next_scan = time.monotonic() + self.scan_interval_s
                items, touched = self._collect()
                if not touched:
                    self._retire_finished_orphans()
                    if self._draining.is_set():
                        return
                    self._halt.wait(self.idle_s)
                    continue
                if self._ship(items, touched):
                    backoff = MIN_BACKOFF_S
                    continue
                self._halt.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        except Exception:
            log.exception("the prediction-log forwarder stopped on an unexpected error; the spool keeps the records")
        finally:
            self._drop_producer(timeout=1.0 if self._halt.is_set() else 5.0)
            for cursor in self.orphans.values():
                cursor.close()
            self.orphans.clear()
            if self.own is not None:
                self.own.close()

    def _cursors(self) -> list[FolderCursor]:
        return ([self.own] if self.own is not None else []) + list(self.orphans.values())

    def _collect(self) -> tuple[list[Item], list[FolderCursor]]:
        items: list[Item] = []
        touched: list[FolderCursor] = []
        budget = self.batch_records
        for cursor in self._cursors():
            before = cursor.read_pos
            lines = cursor.read(budget, self.batch_bytes)
            for line in lines:
                items.append(self._item(cursor, line.data, line.end))
            if lines or cursor.read_pos != before:
                touched.append(cursor)
            budget -= len(lines)
            if budget <= 0:
                break
        return items, touched

    def _item(self, cursor: FolderCursor, data: bytes, end: Position) -> Item:
        try:
            record = decode(data)
        except ValueError as exc:
            log.warning("skipping a spool line that is not a prediction record (%s): %s", cursor.folder, exc)
            return Item(cursor, end, CORRUPT)
        try:
            topic = self.topic_for(record["project"])
        except Exception as exc:
            return self._reject(cursor, end, f"topic_for({record['project']!r}) failed: {exc}")
        if not isinstance(topic, str) or not TOPIC_PATTERN.match(topic):
            return self._reject(cursor, end, f"{topic!r} is not a valid Kafka topic name")
        return Item(cursor, end, SEND, topic, record["request_id"].encode(), data)

    def _reject(self, cursor: FolderCursor, end: Position, why: str) -> Item:
        if why not in self._bad_topics:
            self._bad_topics.add(why)
            log.error("prediction records cannot be shipped and are skipped: %s", why)
        return Item(cursor, end, REJECTED)

    # -- shipping ---------------------------------------------------------------------------------------------

    def _ship(self, items: list[Item], touched: list[FolderCursor]) -> bool:
        futures: list[Any] = [None] * len(items)
        sent_all = True
        if any(item.kind == SEND for item in items):
            try:
                producer = self._ensure_producer()
            except Exception as exc:
                self._note_failure(f"cannot connect: {exc!r}")
                for cursor in touched:
                    cursor.rewind()
                return False
            sent_all = self._send(producer, items, futures)
            self._await(futures)
        ok = self._settle(items, futures, touched)
        if ok and sent_all:
            if not self.connected and any(future is not None for future in futures):
                log.info("prediction log: shipping to Kafka at %s", self.bootstrap)
                self.connected = True
            return True
        self._note_failure("records were not acknowledged")
        self._drop_producer(timeout=0.0)
        return False

    def _send(self, producer: Any, items: list[Item], futures: list[Any]) -> bool:
        """Produce every SEND item; stops at the first failure to enqueue (the rest are retried later)."""
        from kafka.errors import MessageSizeTooLargeError

        for index, item in enumerate(items):
            if item.kind != SEND:
                continue
            try:
                partitions = self._partitions(producer, item.topic)
                partition = partitions[zlib.crc32(item.key) % len(partitions)]
                futures[index] = producer.send(item.topic, key=item.key, value=item.value, partition=partition)
            except (MessageSizeTooLargeError, ValueError, TypeError) as exc:
                item.kind = REJECTED
                self._reject(item.cursor, item.end, f"Kafka refuses a record of {len(item.value)} bytes: {exc}")
            except Exception as exc:
                log.debug("producing to %s failed: %r", item.topic, exc)
                return False
        return True

    def _partitions(self, producer: Any, topic: str) -> list[int]:
        """The topic's partitions (cached per producer). The forwarder picks the partition itself, crc32(request id)
        modulo their number: as stable per key as Kafka's murmur2 partitioner, at a fraction of its Python cost."""
        known = self._partition_cache.get(topic)
        if known is None:
            self._ensure_topic(topic)
            found = producer.partitions_for(topic)
            if not found:
                raise RuntimeError(f"no partitions known for topic {topic}")
            known = self._partition_cache[topic] = sorted(found)
        return known

    def _await(self, futures: Sequence[Any]) -> None:
        pending = [f for f in futures if f is not None]
        countdown = _Countdown(len(pending))
        for future in pending:
            future.add_both(countdown)
        deadline = time.monotonic() + self.delivery_timeout_s + 5.0
        while not countdown.done.wait(0.05):
            if self._halt.is_set() or time.monotonic() > deadline:
                return

    def _settle(self, items: list[Item], futures: list[Any], touched: list[FolderCursor]) -> bool:
        """Commit, per folder, the longest acknowledged prefix; rewind the rest. True when everything was acked."""
        good: dict[int, Position] = {}
        done: dict[int, int] = {}
        broken: set[int] = set()
        shipped = 0
        for item, future in zip(items, futures, strict=True):
            key = id(item.cursor)
            if key in broken:
                continue
            if item.kind == SEND and (future is None or not future.succeeded()):
                broken.add(key)
                continue
            good[key] = item.end
            done[key] = done.get(key, 0) + 1
            shipped += item.kind == SEND
            self.corrupt += item.kind == CORRUPT
            self.rejected += item.kind == REJECTED
        for cursor in touched:
            key = id(cursor)
            target = good.get(key, cursor.acked) if key in broken else cursor.read_pos
            cursor.commit(target, delete=True)
            cursor.rewind(target)
            if cursor is self.own:
                self.own_done += done.get(key, 0)
            else:
                self.orphan_pending = max(self.orphan_pending - done.get(key, 0), 0)
        self.shipped += shipped
        return not broken

    def _note_failure(self, why: str) -> None:
        self.failures += 1
        if self.connected or self.failures == 1:
            log.warning("prediction log: Kafka at %s unavailable (%s); records stay in the spool", self.bootstrap, why)
        self.connected = False

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            request_timeout_ms = 5000
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                linger_ms=self.linger_ms,
                batch_size=512 * 1024,
                max_block_ms=2000,
                request_timeout_ms=request_timeout_ms,
                delivery_timeout_ms=max(int(self.delivery_timeout_s * 1000), request_timeout_ms + self.linger_ms),
                reconnect_backoff_max_ms=1000,
                retry_backoff_ms=100,
            )
        return self._producer

    def _drop_producer(self, *, timeout: float) -> None:
        producer, self._producer = self._producer, None
        self._partition_cache.clear()
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception as exc:
                log.debug("closing the prediction-log producer: %r", exc)

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        self._topics.add(topic)
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin", request_timeout_ms=5000
            )
        except Exception as exc:
            log.debug("no admin client for creating %s (the broker may auto-create it): %r", topic, exc)
            return
        try:
            if topic not in admin.list_topics():
                admin.create_topics({topic: {}}, raise_errors=False, wait_for_metadata=True)
        except Exception as exc:
            log.debug("creating topic %s failed (the broker may auto-create it): %r", topic, exc)
        finally:
            admin.close()

    # -- orphans ----------------------------------------------------------------------------------------------

    def _adopt_orphans(self) -> None:
        clean_abandoned_new(self.root)
        own = self.own.folder if self.own is not None else None
        for folder in list_writer_folders(self.root):
            if folder == own or folder in self.orphans:
                continue
            fd = try_lock(folder)
            if fd is None:
                continue
            if not folder.exists():  # deleted by the forwarder that held it before us
                os.close(fd)
                continue
            cursor = FolderCursor(folder, final=True, lock_fd=fd)
            pending = cursor.pending_lines()
            self.orphan_pending += pending
            self.orphans[folder] = cursor
            self.adopted += 1
            log.info("prediction log: adopted %s from a writer that is gone (%d records to ship)", folder, pending)

    def _retire_finished_orphans(self) -> None:
        for folder, cursor in list(self.orphans.items()):
            if cursor.acked == cursor.read_pos and cursor.at_end():
                remove_folder(folder)
                cursor.close()
                del self.orphans[folder]
