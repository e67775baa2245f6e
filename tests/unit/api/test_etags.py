"""Revisions as entity tags: `"N"` out, `"N"`, `N` or `W/"N"` back in; anything else is a 422 that shows the form."""

from __future__ import annotations

import pytest

from bottega.api.etags import etag, parse_etag
from bottega.core.errors import InvalidInput


@pytest.mark.parametrize("given", ['"3"', "3", 'W/"3"', '  "3" '])
def test_a_revision_reads_back(given: str) -> None:
    assert parse_etag(given) == 3


def test_absent_is_none_and_nonsense_is_refused() -> None:
    assert parse_etag(None) is None
    assert parse_etag(etag(12)) == 12
    with pytest.raises(InvalidInput, match=r'If-None-Match must be a revision number in quotes, like "3"; got'):
        parse_etag('"abc"', "If-None-Match")
    with pytest.raises(InvalidInput):
        parse_etag('"12345678901"')  # more than ten digits
