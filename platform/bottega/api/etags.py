"""ETags of revisioned resources (the HTTP layer's part of optimistic concurrency): a revision number is sent as
the entity tag `"N"` and read back from `If-Match` / `If-None-Match`. Services only ever see the number."""

from __future__ import annotations

import re

from bottega.core.errors import InvalidInput

ETAG = re.compile(r'^\s*(?:W/)?(?:"(\d{1,10})"|(\d{1,10}))\s*$')


def parse_etag(value: str | None, header: str = "If-Match") -> int | None:
    """The revision in an `If-Match`-style header (`"3"`, `3` or `W/"3"`), or None when the header is absent."""
    if value is None:
        return None
    match = ETAG.match(value)
    if match is None:
        raise InvalidInput(f'{header} must be a revision number in quotes, like "3"; got {value[:40]!r}')
    return int(match.group(1) or match.group(2))


def etag(revision: int) -> str:
    """The entity tag of a revision: `\"3\"`."""
    return f'"{revision}"'
