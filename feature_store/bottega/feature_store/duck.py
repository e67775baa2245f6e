"""DuckDB sessions for the pipelines and the offline store: in-memory, in UTC (dates, `strftime` and casts of
timestamps give UTC days whatever the machine's zone). A new database costs about 15 ms, so one batch run shares
one session between its steps (`session(con)` hands back the caller's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def session(con: Any = None) -> Iterator[Any]:
    """`con` itself when given (its owner closes it), else a new UTC connection, closed on exit."""
    if con is not None:
        yield con
        return
    import duckdb

    own = duckdb.connect()
    try:
        own.execute("SET TimeZone = 'UTC'")
        yield own
    finally:
        own.close()
