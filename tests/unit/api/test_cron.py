"""The one cron check every schedule goes through (job schedules, batch feature groups, batch deployments)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bottega.api.jobs.cron import CronError, normalize

NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "normalized"),
    [("0  3 * * *", "0 3 * * *"), ("@Daily", "@daily"), ("*/2 * * * * *", "*/2 * * * * *")],
)
def test_usable_expressions_are_normalized(given: str, normalized: str) -> None:
    assert normalize(given, NOW) == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("every day", "has 2 fields"),
        ("", "has 0 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_unusable_expressions_say_why(given: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        normalize(given, NOW)
