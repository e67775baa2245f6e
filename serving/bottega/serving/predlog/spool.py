"""The prediction-log spool: append-only local segment files that survive `kill -9` of the process writing them.

Layout under the spool root (shared by every worker process of one prediction service):

    <root>/w-<start µs>-<pid>-<rand>/     one folder per writer process
        .lock                             flock'ed (LOCK_EX) by the writer for as long as it lives
        seg-0000000001.log ...            one JSON record per line (see `record`), rolled at `segment_bytes`
        progress.json                     {"segment": n, "offset": bytes}: what Kafka acknowledged (forwarder only)

- `SpoolWriter.append` is one `os.write` to the current segment (O_APPEND) under a lock: once it returns, the line
  is in the kernel's page cache and survives the death of the process. A background thread `fdatasync`s the
  segment every `sync_interval_s` (or after `sync_every` lines) when something was written, so a machine crash
  loses at most that window. A short or failed write is cut back (ftruncate), so a live segment never holds half
  a line; the caller counts the record as dropped.
- A writer folder is created under a hidden name, locked, then renamed into place, so nobody sees it unlocked.
  A `w-*` folder whose lock can be taken belongs to a dead writer: a forwarder adopts it by taking the lock
  (`try_lock`) and ships it; two forwarders never ship the same folder at once.
- A crash can leave the last line of a dead writer's last segment half written (no newline): readers skip such a
  torn tail and never ship it. Lines that are not a record (corrupt after a power loss) are skipped and counted.
- `FolderCursor` reads a folder in order and persists the forwarder's acknowledged position with an atomic replace
  and fsync; with Kafka, segments wholly before that position are deleted, and an adopted folder is deleted once
  everything in it is shipped.
- Embedded default (no Kafka): nothing is deleted; the spool is the prediction log and `read_spool(root)` iterates
  every complete record in it, oldest writer folder first, segments in order.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from bottega.serving.predlog.record import decode

log = logging.getLogger(__name__)

WRITER_PREFIX = "w-"
NEW_PREFIX = ".new-"
LOCK_NAME = ".lock"
PROGRESS_NAME = "progress.json"
SEGMENT_BYTES = 64 * 1024 * 1024
READ_CHUNK = 1024 * 1024
_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


class SpoolClosed(OSError):
    """The spool writer is not open (not started yet, or closed)."""


class Position(NamedTuple):
    segment: int
    offset: int


def segment_name(seq: int) -> str:
    return f"seg-{seq:010d}.log"


def segment_seqs(folder: Path) -> list[int]:
    """The segment numbers present in a writer folder, ascending."""
    seqs = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith("seg-") and name.endswith(".log"):
                with contextlib.suppress(ValueError):
                    seqs.append(int(name[4:-4]))
    return sorted(seqs)


def writer_folders(root: Path) -> list[Path]:
    """Every writer folder under the root, oldest first (names start with the writer's start time)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [root / name for name in sorted(names) if name.startswith(WRITER_PREFIX) and (root / name).is_dir()]


def try_lock(folder: Path) -> int | None:
    """Take the folder's writer lock without waiting: the open fd when it was free (its writer is dead), else None."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_folder(folder: Path) -> None:
    """Delete a writer folder, the lock file last (the caller still holds the lock)."""
    for seq in segment_seqs(folder):
        (folder / segment_name(seq)).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name != LOCK_NAME:
                path = folder / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    (folder / LOCK_NAME).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def clean_abandoned_new(root: Path, *, min_age_s: float = 60.0) -> None:
    """Remove half-created writer folders (`.new-*`) whose creator died before renaming them into place."""
    try:
        names = [name for name in os.listdir(root) if name.startswith(NEW_PREFIX)]
    except FileNotFoundError:
        return
    for name in names:
        folder = root / name
        try:
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue
        except FileNotFoundError:
            continue
        fd = try_lock(folder)
        if fd is None and (folder / LOCK_NAME).exists():
            continue  # its creator lives
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            if fd is not None:
                os.close(fd)


class SpoolWriter:
    """This process's folder in the spool: thread-safe appends, background fdatasync, segment roll."""

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        sync_interval_s: float = 0.05,
        sync_every: int = 1000,
    ) -> None:
        if segment_bytes < 1024:
            raise ValueError(f"segment_bytes must be at least 1024, got {segment_bytes}")
        if not 0 < sync_interval_s <= 60:
            raise ValueError(f"sync_interval_s must be in (0, 60], got {sync_interval_s}")
        if sync_every < 1:
            raise ValueError(f"sync_every must be at least 1, got {sync_every}")
        self.root = Path(root)
        self.segment_bytes = segment_bytes
        self.sync_interval_s = sync_interval_s
        self.sync_every = sync_every
        self.folder: Path | None = None
        self.appended = 0  # lines written by this writer
        self.synced = 0  # lines covered by the last successful fdatasync
        self.fsyncs = 0
        self.sync_errors = 0
        self._lock = threading.Lock()
        self._fd = -1
        self._lock_fd = -1
        self._seq = 0
        self._size = 0
        self._retired: list[int] = []
        self._dirs_dirty = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def segment(self) -> int:
        return self._seq

    def open(self) -> Path:
        """Create, lock and publish this writer's folder, open its first segment and start the sync thread."""
        if self.folder is not None:
            raise RuntimeError("the spool writer is already open")
        self.root.mkdir(parents=True, exist_ok=True)
        tag = f"{time.time_ns() // 1000:016d}-{os.getpid()}-{secrets.token_hex(3)}"
        staging = self.root / f"{NEW_PREFIX}{tag}"
        staging.mkdir()
        lock_fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fd = os.open(staging / segment_name(1), _APPEND_FLAGS, 0o644)
        folder = self.root / f"{WRITER_PREFIX}{tag}"
        staging.rename(folder)
        self.folder, self._lock_fd, self._fd, self._seq, self._size = folder, lock_fd, fd, 1, 0
        self._dirs_dirty = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._sync_loop, name="bottega-spool-sync", daemon=True)
        self._thread.start()
        return folder

    def append(self, line: bytes) -> None:
        """Write one complete line (ending in a newline). Raises OSError (the line is not in the spool) on failure."""
        with self._lock:
            if self._fd < 0:
                raise SpoolClosed(errno.EBADF, "the prediction-log spool is not open")
            if self._size >= self.segment_bytes:
                self._roll()
            try:
                written = os.write(self._fd, line)
            except OSError:
                self._cut_back()
                raise
            if written != len(line):
                self._cut_back()
                raise OSError(errno.ENOSPC, f"short write to the spool ({written} of {len(line)} bytes)")
            self._size += written
            self.appended += 1
            if self.appended - self.synced >= self.sync_every:
                self._wake.set()

    def _cut_back(self) -> None:
        """Remove the part of a line that a failed write may have left, so the segment ends on a line boundary."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)

    def _roll(self) -> None:
        assert self.folder is not None
        seq = self._seq + 1
        fd = os.open(self.folder / segment_name(seq), _APPEND_FLAGS, 0o644)
        self._retired.append(self._fd)
        self._fd, self._seq, self._size = fd, seq, 0
        self._dirs_dirty = True

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.sync_interval_s)
            self._wake.clear()
            self.sync()

    def sync(self) -> None:
        """fdatasync what was written since the last sync (retired segments too), and the folder after a roll."""
        with self._lock:
            fd, count, retired, dirs = self._fd, self.appended, self._retired, self._dirs_dirty
            self._retired, self._dirs_dirty = [], False
        if count == self.synced and not retired and not dirs:
            return
        try:
            for old in retired:
                try:
                    os.fdatasync(old)
                finally:
                    os.close(old)
            if fd >= 0 and count != self.synced:
                os.fdatasync(fd)
            if dirs and self.folder is not None:
                fsync_dir(self.folder)
                fsync_dir(self.root)
        except OSError as exc:
            self.sync_errors += 1
            log.warning("prediction-log spool fsync failed: %s", exc)
            return
        self.synced = count
        self.fsyncs += 1

    def close(self) -> None:
        """Stop the sync thread, sync, close the segment. The folder stays locked until `release`."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.sync()
        with self._lock:
            fd, self._fd = self._fd, -1
            retired, self._retired = self._retired, []
        for old in [*retired, fd]:
            if old >= 0:
                with contextlib.suppress(OSError):
                    os.close(old)

    def is_empty(self) -> bool:
        return self.appended == 0 and self._seq <= 1

    def release(self, *, remove: bool) -> None:
        """Give up the folder's lock; with `remove`, delete the folder first (it must hold nothing unshipped)."""
        if self.folder is not None and remove:
            remove_folder(self.folder)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class Line(NamedTuple):
    data: bytes  # the line without its newline
    end: Position  # where the line after it starts


class FolderCursor:
    """Reads one writer folder in order from its acknowledged position; only complete lines come out.

    `final` says no writer will append to the folder again (an adopted folder, or this process's own after its
    writer closed): then a last segment's tail without a newline is torn and skipped. While a writer may still
    append, a segment counts as finished only when the next one existed before the segment was read to its end.
    """

    def __init__(self, folder: Path, *, final: bool, lock_fd: int | None = None) -> None:
        self.folder = folder
        self.final = final
        self.lock_fd = lock_fd
        self.acked = self._load_progress()
        self.read_pos = self.acked
        self.torn = 0
        self._fd = -1
        self._fd_seq = 0

    def _load_progress(self) -> Position:
        seqs = segment_seqs(self.folder)
        try:
            raw = orjson.loads((self.folder / PROGRESS_NAME).read_bytes())
            pos = Position(int(raw["segment"]), int(raw["offset"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return Position(seqs[0], 0) if seqs else Position(1, 0)
        if pos.segment in seqs or not seqs:
            return pos
        later = [s for s in seqs if s > pos.segment]
        return Position(later[0], 0) if later else Position(seqs[-1] + 1, 0)

    def _pread(self, seq: int, size: int, offset: int) -> bytes:
        if self._fd < 0 or self._fd_seq != seq:
            self._close_fd()
            try:
                self._fd = os.open(self.folder / segment_name(seq), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return b""
            self._fd_seq = seq
        return os.pread(self._fd, size, offset)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _next_seq(self, seq: int) -> int | None:
        if (self.folder / segment_name(seq + 1)).exists():
            return seq + 1
        later = [s for s in segment_seqs(self.folder) if s > seq]
        return later[0] if later else None

    def read(self, max_lines: int, max_bytes: int = 4 * READ_CHUNK) -> list[Line]:
        """Up to `max_lines` complete lines from `read_pos` on (advancing it); [] when nothing new is complete."""
        out: list[Line] = []
        budget = max_bytes
        while len(out) < max_lines and budget > 0:
            seq, offset = self.read_pos
            following = self._next_seq(seq)
            finished = self.final or following is not None
            data = self._read_lines(seq, offset, min(budget, READ_CHUNK))
            cut = data.rfind(b"\n")
            if cut < 0:
                if not finished:
                    break
                if data:
                    self.torn += 1
                    log.warning("skipped a torn last line (%d bytes) in %s", len(data), self.folder / segment_name(seq))
                if following is None:
                    self.read_pos = Position(seq, offset + len(data))
                    break
                self.read_pos = Position(following, 0)
                continue
            pos = offset
            for line in data[:cut].split(b"\n")[: max_lines - len(out)]:
                pos += len(line) + 1
                out.append(Line(line, Position(seq, pos)))
            self.read_pos = Position(seq, pos)
            budget -= pos - offset
        return out

    def _read_lines(self, seq: int, offset: int, size: int) -> bytes:
        """`size` bytes from the segment, extended to the next newline when a single line is longer than that."""
        data = self._pread(seq, size, offset)
        while len(data) >= size and b"\n" not in data:
            more = self._pread(seq, READ_CHUNK, offset + len(data))
            if not more:
                break
            data += more
        return data

    def at_end(self) -> bool:
        """Everything in the folder has been read (only meaningful for a final folder)."""
        seq, offset = self.read_pos
        if self._next_seq(seq) is not None:
            return False
        try:
            return (self.folder / segment_name(seq)).stat().st_size <= offset
        except FileNotFoundError:
            return True

    def rewind(self, pos: Position | None = None) -> None:
        self.read_pos = self.acked if pos is None else pos

    def commit(self, pos: Position, *, delete: bool) -> None:
        """Persist `pos` as acknowledged (atomic replace + fsync); with `delete`, drop segments wholly before it."""
        if pos == self.acked:
            return
        tmp = self.folder / f".{PROGRESS_NAME}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, orjson.dumps({"segment": pos.segment, "offset": pos.offset}))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / PROGRESS_NAME)
        fsync_dir(self.folder)
        self.acked = pos
        if delete:
            for seq in segment_seqs(self.folder):
                if seq < pos.segment:
                    (self.folder / segment_name(seq)).unlink(missing_ok=True)

    def pending_lines(self) -> int:
        """Complete lines at or after the acknowledged position (reads the files; for adopted folders)."""
        count = 0
        for seq in segment_seqs(self.folder):
            if seq < self.acked.segment:
                continue
            offset = self.acked.offset if seq == self.acked.segment else 0
            count += _count_lines(self.folder / segment_name(seq), offset)
        return count

    def close(self) -> None:
        self._close_fd()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _count_lines(path: Path, offset: int) -> int:
    count = 0
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(READ_CHUNK):
                count += chunk.count(b"\n")
    except FileNotFoundError:
        return 0
    return count


def read_spool(root: Path) -> Iterator[dict[str, Any]]:
    """Every complete record in the spool, decoded: writer folders oldest first, segments and lines in order.

    On embedded defaults this is the whole prediction log. With Kafka it is what the forwarders have not deleted
    yet (unshipped records, plus the shipped part of segments still in use). A torn last line (a writer killed
    mid-write) and lines that are not records are skipped.
    """
    for folder in writer_folders(Path(root)):
        for seq in segment_seqs(folder):
            yield from _segment_records(folder / segment_name(seq))


def _segment_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        rest = b""
        while chunk := handle.read(READ_CHUNK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                try:
                    yield decode(line)
                except ValueError:
                    log.warning("skipping a line that is not a prediction record in %s", path)
