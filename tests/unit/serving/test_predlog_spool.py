"""The prediction-log spool: appends read back in order, segment roll, torn tails, resumable progress, orphan
adoption across processes, and the embedded PredictionLog (no Kafka)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bottega.serving.predlog.log import default_topic, open_prediction_log
from bottega.serving.predlog.record import PredictionRecord, decode
from bottega.serving.predlog.spool import (
    LOCK_NAME,
    FolderCursor,
    Position,
    SpoolWriter,
    read_spool,
    segment_name,
    segment_seqs,
    try_lock,
    writer_folders,
)


def record(i: int, project: str = "eats") -> PredictionRecord:
    return PredictionRecord(f"req-{i}", 1_000 + i, project, "eta", "m", 1, False, {"x": float(i)}, {}, i * 0.5, 10)


def write(root: Path, count: int, *, segment_bytes: int = 64 * 1024 * 1024) -> SpoolWriter:
    writer = SpoolWriter(root, segment_bytes=segment_bytes)
    writer.open()
    for i in range(count):
        writer.append(record(i).encode())
    return writer


def test_appends_read_back_in_order_and_are_synced(tmp_path: Path) -> None:
    writer = write(tmp_path, 50)
    deadline = time.monotonic() + 5
    while writer.synced < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.synced == 50, "the background thread fsyncs what was written"
    assert writer.fsyncs >= 1
    assert [r["request_id"] for r in read_spool(tmp_path)] == [f"req-{i}" for i in range(50)]
    writer.close()
    writer.release(remove=False)
    assert [r["request_id"] for r in read_spool(tmp_path)] == [f"req-{i}" for i in range(50)]


def test_segments_roll_at_the_size_limit(tmp_path: Path) -> None:
    writer = write(tmp_path, 200, segment_bytes=2048)
    writer.close()
    assert writer.folder is not None
    seqs = segment_seqs(writer.folder)
    assert len(seqs) > 5
    assert seqs == list(range(1, len(seqs) + 1))
    for seq in seqs[:-1]:
        size = (writer.folder / segment_name(seq)).stat().st_size
        assert 2048 <= size < 2048 + 200, "a segment rolls at the first append past the limit"
    assert [r["request_id"] for r in read_spool(tmp_path)] == [f"req-{i}" for i in range(200)]
    writer.release(remove=False)


def test_a_torn_last_line_is_skipped_never_shipped_half(tmp_path: Path) -> None:
    writer = write(tmp_path, 10)
    writer.close()
    assert writer.folder is not None
    segment = writer.folder / segment_name(1)
    full = record(10).encode()
    with segment.open("ab") as handle:  # what a writer killed in the middle of write(2) could leave
        handle.write(full[: len(full) // 2])
    assert [r["request_id"] for r in read_spool(tmp_path)] == [f"req-{i}" for i in range(10)]

    cursor = FolderCursor(writer.folder, final=True)
    lines = cursor.read(1000)
    assert [decode(line.data)["request_id"] for line in lines] == [f"req-{i}" for i in range(10)]
    assert cursor.torn == 1
    assert cursor.at_end()
    assert cursor.read(1000) == []
    cursor.close()
    writer.release(remove=False)


def test_a_live_writers_incomplete_tail_is_waited_for_not_skipped(tmp_path: Path) -> None:
    writer = write(tmp_path, 3)
    assert writer.folder is not None
    cursor = FolderCursor(writer.folder, final=False)
    assert len(cursor.read(100)) == 3
    full = record(3).encode()
    fd = os.open(writer.folder / segment_name(1), os.O_WRONLY | os.O_APPEND)
    os.write(fd, full[:20])
    assert cursor.read(100) == []
    assert cursor.torn == 0
    os.write(fd, full[20:])
    os.close(fd)
    assert [decode(line.data)["request_id"] for line in cursor.read(100)] == ["req-3"]
    cursor.close()
    writer.close()
    writer.release(remove=True)
    assert writer_folders(tmp_path) == []


def test_progress_resumes_after_restart_and_deletes_shipped_segments(tmp_path: Path) -> None:
    writer = write(tmp_path, 100, segment_bytes=2048)
    writer.close()
    folder = writer.folder
    assert folder is not None
    first = FolderCursor(folder, final=True)
    lines = first.read(60)
    assert len(lines) == 60
    first.commit(lines[-1].end, delete=True)
    first.close()
    assert min(segment_seqs(folder)) == lines[-1].end.segment, "segments wholly before the position are deleted"

    second = FolderCursor(folder, final=True)  # a new process: reads progress.json
    assert second.acked == lines[-1].end
    assert second.pending_lines() == 40
    rest = second.read(1000)
    assert [decode(line.data)["request_id"] for line in rest] == [f"req-{i}" for i in range(60, 100)]
    second.close()
    writer.release(remove=False)


def test_progress_pointing_at_a_deleted_segment_moves_to_the_next(tmp_path: Path) -> None:
    writer = write(tmp_path, 100, segment_bytes=2048)
    writer.close()
    folder = writer.folder
    assert folder is not None
    cursor = FolderCursor(folder, final=True)
    cursor.commit(Position(2, 100), delete=True)
    cursor.close()
    (folder / segment_name(2)).unlink()  # a crash between deleting a segment and persisting a later position
    assert FolderCursor(folder, final=True).acked == Position(3, 0)
    writer.release(remove=False)


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bottega.serving.predlog.spool import SpoolWriter
    writer = SpoolWriter(Path(sys.argv[1]))
    print(writer.open(), flush=True)
    writer.append(b'{"x": 1}\\n')
    time.sleep(120)
    """
)


def test_a_dead_writers_folder_is_adopted_a_live_one_is_not(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        folder = Path(child.stdout.readline().strip())
        assert folder.parent == tmp_path
        assert (folder / LOCK_NAME).exists()
        assert try_lock(folder) is None, "the live writer holds its lock"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    fd = try_lock(folder)
    assert fd is not None, "the lock of a killed writer is free: its folder can be adopted"
    try:
        assert try_lock(folder) is None, "an adopted folder is not adopted twice"
    finally:
        os.close(fd)


def test_embedded_log_appends_counts_and_never_raises(tmp_path: Path) -> None:
    log = open_prediction_log(tmp_path / "spool", kafka_bootstrap=None, topic_for=default_topic)
    log.append(record(0))  # before start: counted, not raised
    assert log.stats()["dropped"] == 1
    log.start()
    for i in range(1, 21):
        log.append(record(i))
    log.append(PredictionRecord("bad", 1, "eats", "d", "m", 1, False, {}, {}, object(), 1))
    stats = log.stats()
    assert stats["appended"] == 20
    assert stats["dropped"] == 2
    assert set(stats) >= {"queue_depth", "dropped", "shipped", "fsyncs", "adopted"}
    log.close()
    assert log.stats()["queue_depth"] == 0
    assert log.stats()["shipped"] == 20
    assert [r["request_id"] for r in read_spool(tmp_path / "spool")] == [f"req-{i}" for i in range(1, 21)]
    log.append(record(99))  # after close
    assert log.stats()["dropped"] == 3


def test_an_unused_embedded_log_leaves_no_folder(tmp_path: Path) -> None:
    log = open_prediction_log(tmp_path, kafka_bootstrap=None, topic_for=default_topic)
    log.start()
    log.close()
    assert writer_folders(tmp_path) == []


def test_bad_settings_are_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        open_prediction_log(tmp_path / "file", kafka_bootstrap=None, topic_for=default_topic)
    with pytest.raises(ValueError, match="project 'a b'"):
        default_topic("a b")
    assert default_topic("eats") == "bottega.predictions.eats"
