"""Which bucket of a group's offline files a row's event time lives in: a day, a month or a year.

A bucket is a folder `event_date=YYYY-MM-DD`, `event_month=YYYY-MM` or `event_year=YYYY`. Its size follows the
density of the rows that create it, so a backfill of thin history writes a few files instead of one per day:
- a past year (before the current UTC year) that has no bucket yet is one year bucket when its rows are very sparse
  (under `dense_rows_per_day / 30` per day they touch);
- otherwise a month without buckets is one month bucket when its rows are sparse (under `dense_rows_per_day` per day);
- otherwise each day is its own bucket (dense data, streamed rows, and data written before months and years existed).
A period keeps the buckets it has: rows for a year or month that already has a bucket go there. So each
(entity keys, event_time) has exactly one bucket, and both engines (DuckDB, Spark) decide the same from the same
per-day row counts (`plan`).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

DAY_BUCKET, MONTH_BUCKET, YEAR_BUCKET = "event_date=", "event_month=", "event_year="
PREFIXES = {"d": DAY_BUCKET, "m": MONTH_BUCKET, "y": YEAR_BUCKET}
DENSE_ROWS_PER_DAY = 10_000
EPOCH = date(1970, 1, 1)
DAY_NUMBER_SQL = "CAST(floor(epoch_us(event_time) / 86400000000) AS BIGINT)"
"""DuckDB SQL for the UTC day of a row's `event_time`, as days since 1970-01-01 (cheaper than formatting dates)."""


def dir_name(label: str) -> str:
    """The folder of a bucket label: `d2026-11-05` -> `event_date=2026-11-05`, `m2026-11` -> `event_month=2026-11`,
    `y2026` -> `event_year=2026` (labels carry no `=`, so engines can partition by them)."""
    return PREFIXES[label[0]] + label[1:]


def period(name: str) -> str:
    """The period of a bucket folder name: `2026-11-05`, `2026-11` or `2026`."""
    return name.split("=", 1)[1]


@dataclass(frozen=True)
class Plan:
    years: frozenset[str]
    months: frozenset[str]

    def label(self, day: str) -> str:
        """The bucket label of a `YYYY-MM-DD` day."""
        if day[:4] in self.years:
            return f"y{day[:4]}"
        return f"m{day[:7]}" if day[:7] in self.months else f"d{day}"


def plan(
    existing: Iterable[str],
    days: Mapping[str, int],
    *,
    dense_rows_per_day: int = DENSE_ROWS_PER_DAY,
    current_year: str,
    new_periods: bool = True,
) -> Plan:
    """The buckets of rows touching `days` (`YYYY-MM-DD` -> rows), given the group's bucket folder names."""
    names = list(existing)
    years = {period(n) for n in names if n.startswith(YEAR_BUCKET)}
    months = {period(n) for n in names if n.startswith(MONTH_BUCKET)}
    day_months = {period(n)[:7] for n in names if n.startswith(DAY_BUCKET)}
    busy_years = {m[:4] for m in months | day_months}
    by_year = _density(days, 4)
    by_month = _density(days, 7)
    chosen_years = years & by_year.keys()
    if new_periods:
        chosen_years |= {
            y
            for y, (rows, touched) in by_year.items()
            if y < current_year and y not in busy_years and rows * 30 < dense_rows_per_day * touched
        }
    chosen_months = (months & by_month.keys()) - {m for m in by_month if m[:4] in chosen_years}
    if new_periods:
        chosen_months |= {
            m
            for m, (rows, touched) in by_month.items()
            if m[:4] not in chosen_years and m not in day_months and rows < dense_rows_per_day * touched
        }
    return Plan(frozenset(chosen_years), frozenset(chosen_months))


def _density(days: Mapping[str, int], width: int) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for day, rows in days.items():
        total, touched = out.get(day[:width], (0, 0))
        out[day[:width]] = (total + rows, touched + 1)
    return out


def overlapping(names: Iterable[str]) -> bool:
    """Whether some period has buckets of two sizes (a year bucket and a month or day bucket in it, or a month
    bucket and day buckets in it): the writers never make that, but a reader must not assume it away."""
    listed = list(names)
    years = {period(n) for n in listed if n.startswith(YEAR_BUCKET)}
    months = {period(n) for n in listed if n.startswith(MONTH_BUCKET)}
    days = [period(n) for n in listed if n.startswith(DAY_BUCKET)]
    return any(m[:4] in years for m in months) or any(d[:4] in years or d[:7] in months for d in days)


def day_name(number: int) -> str:
    """`YYYY-MM-DD` of a day number (days since 1970-01-01)."""
    return (EPOCH + timedelta(days=number)).isoformat()


def label_days(labels: Iterable[str]) -> tuple[list[int], list[str]]:
    """Every day number of these buckets with its bucket label (a year bucket: its 365 or 366 days; a month: its
    days; a day: itself): a table a query joins on the day number to label rows without formatting dates."""
    numbers: list[int] = []
    names: list[str] = []
    for label in labels:
        period_ = label[1:]
        if label[0] == "y":
            first, count = date(int(period_), 1, 1), 366 if calendar.isleap(int(period_)) else 365
        elif label[0] == "m":
            year, month = (int(part) for part in period_.split("-"))
            first, count = date(year, month, 1), calendar.monthrange(year, month)[1]
        else:
            first, count = date.fromisoformat(period_), 1
        start = (first - EPOCH).days
        numbers.extend(range(start, start + count))
        names.extend([label] * count)
    return numbers, names
