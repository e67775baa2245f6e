"""Cron expressions of schedules, all in UTC (croniter).

Accepted: 5 fields `minute hour day-of-month month day-of-week`; 6 fields with SECONDS FIRST
`second minute hour day-of-month month day-of-week` (the Quartz/Spring order, for fine-grained schedules such as
`*/2 * * * * *`); or the aliases `@yearly @annually @monthly @weekly @daily @midnight @hourly`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from bottega.core.errors import InvalidInput

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _iterator(expr: str, start: datetime) -> croniter:
    return croniter(expr, start, second_at_beginning=True)


def validate(expr: str, now: datetime) -> str:
    """The normalized expression (single spaces); InvalidInput naming the field `cron` when it is not usable."""
    normalized = " ".join(expr.split())
    fields = normalized.split(" ")
    if normalized.lower() in ALIASES:
        normalized = normalized.lower()
    elif len(fields) not in (5, 6):
        raise InvalidInput(
            f"cron: {expr!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
            "or 6 with seconds first (second minute hour day month weekday)",
            field="cron",
        )
    elif not croniter.is_valid(normalized, second_at_beginning=True):
        raise InvalidInput(f"cron: {expr!r} is not a valid cron expression", field="cron")
    try:
        next_after(normalized, now)
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        raise InvalidInput(f"cron: {expr!r} never fires ({exc})", field="cron") from exc
    return normalized


def next_after(expr: str, moment: datetime) -> datetime:
    """The first occurrence strictly after `moment`."""
    value: datetime = _iterator(expr, moment.astimezone(UTC)).get_next(datetime)
    return value.astimezone(UTC)


def latest_at_or_before(expr: str, moment: datetime) -> datetime:
    """The last occurrence at or before `moment` (occurrences fall on whole seconds)."""
    moment = moment.astimezone(UTC)
    ceiling = moment.replace(microsecond=0) + timedelta(seconds=1)
    value: datetime = _iterator(expr, ceiling).get_prev(datetime)
    return value.astimezone(UTC)


def is_occurrence(expr: str, moment: datetime) -> bool:
    """True when `moment` is one of the expression's occurrences."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return False
    return latest_at_or_before(expr, moment) == moment
