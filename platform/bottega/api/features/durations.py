"""Durations on the wire: `90s`, `15m`, `1h`, `14d`, `2w`, a number of seconds or ISO 8601 (`P2D`), whole seconds,
written back in the short form (pydantic and the standard library only: the SDK imports this module)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

MAX_DURATION_SECONDS = 100 * 365 * 86_400
_SHORT_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60))
_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


def _duration_in(value: Any) -> Any:
    """`90s`/`15m`/`1h`/`14d`/`2w` become a timedelta; numbers (seconds) and ISO 8601 strings go to pydantic."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like 90s, 15m, 1h, 14d or 2w, or a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a duration must be finite")
    if isinstance(value, str):
        match = _SHORT_DURATION.match(value)
        if match:
            seconds = int(match.group(1)) * _SECONDS[match.group(2)]
            if seconds > MAX_DURATION_SECONDS:
                raise ValueError(f"duration {value!r} is over the limit of {MAX_DURATION_SECONDS} seconds")
            return timedelta(seconds=seconds)
        if not value.strip().upper().startswith(("P", "-P")):
            raise ValueError(f"duration {value!r} must look like 90s, 15m, 1h, 14d or 2w (or ISO 8601, e.g. P2D)")
    return value


def _whole_seconds(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("a duration cannot be negative")
    if value.microseconds:
        raise ValueError("a duration must be a whole number of seconds")
    if value.total_seconds() > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration is at most {MAX_DURATION_SECONDS} seconds (100 years)")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("the duration must be positive")
    return value


def format_duration(value: timedelta) -> str:
    """The short form of a whole-second duration: the largest unit that divides it (`2w`, `36h`, `90s`)."""
    seconds = int(value.total_seconds())
    for unit, size in _UNIT_SECONDS:
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration_seconds(text: str) -> int:
    """Seconds of a duration in the short form `format_duration` writes."""
    match = _SHORT_DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a short duration")
    return int(match.group(1)) * _SECONDS[match.group(2)]


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_in),
    AfterValidator(_whole_seconds),
    PlainSerializer(format_duration, return_type=str),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
