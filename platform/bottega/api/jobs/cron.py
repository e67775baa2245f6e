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


class CronError(ValueError):
    """A cron expression the platform scheduler cannot use; the message says why and how to write one."""


def normalize(expr: str, now: datetime) -> str:
    """The expression with single spaces (an alias lowercased): the one check every schedule goes through (job
    schedules, batch feature groups, batch deployments); CronError when it is not usable or never fires."""
    normalized = " ".join(expr.split())
    fields = normalized.split(" ") if normalized else []
    if normalized.lower() in ALIASES:
        return normalized.lower()
    if len(fields) not in (5, 6):
        raise CronError(
            f"{expr!r} has {len(fields)} fields; use 5 (minute hour day month weekday, e.g. `0 3 * * *`), 6 with "
            "seconds first (second minute hour day month weekday), or an alias such as @daily"
        )
    if not croniter.is_valid(normalized, second_at_beginning=True):
        raise CronError(f"{expr!r} is not a valid cron expression (e.g. `0 3 * * *`)")
    try:
        next_after(normalized, now)
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        raise CronError(f"{expr!r} never fires ({exc})") from exc
    return normalized


def validate(expr: str, now: datetime) -> str:
    """`normalize` for a job schedule: InvalidInput naming the field `cron`."""
    try:
        return normalize(expr, now)
    except CronError as exc:
        raise InvalidInput(f"cron: {exc}", field="cron") from exc


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
