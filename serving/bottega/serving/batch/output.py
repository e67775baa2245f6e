"""Inputs and atomic outputs of batch scoring.

An output is written beside its final place under a hidden temporary name (`.<name>.tmp-<id>`) and renamed into
place only when complete, so a failed run leaves nothing half-written: the temporary copy is removed and an earlier
output at that place stays as it was. An existing output is replaced (moved aside, the new one renamed in, the old
one deleted). The local engine works on local paths (`file://` URIs too); the Spark engine does the same through
Hadoop's FileSystem API, so any URI Spark writes to works (on object stores a rename is a copy, not atomic).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bottega.serving.batch.plan import BatchInputError, ColumnKind, arrow_kind

FILE_SCHEME = "file://"


def local_path(uri: str, what: str) -> Path:
    """A local path from a path or `file://` URI; BatchInputError for other schemes."""
    if uri.startswith(FILE_SCHEME):
        return Path(uri[len(FILE_SCHEME) :])
    if "://" in uri:
        raise BatchInputError(
            f"{what}: the local engine reads and writes local paths (or file:// URIs), not {uri!r}; "
            "use engine `spark` for other file systems"
        )
    return Path(uri).expanduser()


def input_format(path: Path) -> str:
    """`csv` for a .csv file or a folder of them, else `parquet`."""
    if path.is_dir():
        csv = any(path.rglob("*.csv"))
        parquet = any(path.rglob("*.parquet"))
        return "csv" if csv and not parquet else "parquet"
    return "csv" if path.suffix.lower() == ".csv" else "parquet"


def open_input(uri: str) -> Any:
    """A pyarrow Dataset over a Parquet file or folder, or CSV; BatchInputError when it is missing or unreadable."""
    import pyarrow.dataset as ds

    path = local_path(uri, "input")
    if not path.exists():
        raise BatchInputError(f"input: {uri!r} does not exist")
    fmt = input_format(path)
    try:
        return ds.dataset(str(path), format=fmt)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for unreadable files
        raise BatchInputError(f"input: {uri!r} is not readable as {fmt}: {exc}") from exc


def column_kinds(schema: Any) -> dict[str, ColumnKind]:
    return {f.name: arrow_kind(f.type) for f in schema}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def publish_local(tmp: Path, target: Path) -> None:
    """Move the finished `tmp` to `target`, replacing what is there."""
    if not target.exists() and not target.is_symlink():
        os.rename(tmp, target)
        return
    if target.is_file() and tmp.is_file():
        os.replace(tmp, target)  # atomic for files
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _remove(old)


@contextmanager
def staged_local(output: str) -> Iterator[Path]:
    """A temporary path beside `output` to write to; renamed to `output` when the block succeeds, removed when not."""
    target = local_path(output, "output")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        publish_local(tmp, target)
    finally:
        _remove(tmp)


class HadoopFiles:
    """The Hadoop FileSystem of a URI, through the Spark session's JVM."""

    def __init__(self, spark: Any, uri: str) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self.target = self.path(uri)
        self.fs = self.target.getFileSystem(self._conf)

    def path(self, uri: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def sibling(self, prefix: str) -> Any:
        return self.path(
            f"{self.target.getParent().toString()}/.{self.target.getName()}.{prefix}-{uuid.uuid4().hex[:12]}"
        )

    def publish(self, tmp: Any) -> None:
        if not self.fs.exists(self.target):
            if not self.fs.rename(tmp, self.target):
                raise OSError(f"could not rename {tmp.toString()} to {self.target.toString()}")
            return
        old = self.sibling("old")
        if not self.fs.rename(self.target, old):
            raise OSError(f"could not move the previous output {self.target.toString()} aside")
        if not self.fs.rename(tmp, self.target):
            self.fs.rename(old, self.target)
            raise OSError(f"could not rename {tmp.toString()} to {self.target.toString()}")
        self.fs.delete(old, True)

    def remove(self, path: Any) -> None:
        if self.fs.exists(path):
            self.fs.delete(path, True)


@contextmanager
def staged_hadoop(spark: Any, output: str) -> Iterator[str]:
    """`staged_local` for Spark: yields a temporary URI beside `output`."""
    files = HadoopFiles(spark, output)
    tmp = files.sibling("tmp")
    try:
        yield tmp.toString()
        files.publish(tmp)
    finally:
        files.remove(tmp)
