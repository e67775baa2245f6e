"""Parsing of the run search language: `tag=key:value`, `param=key:value`, `metric=<key><op><number>`, `order_by`.

Everything here is pure (no database): the repository turns a `RunQuery` into SQL. A malformed filter raises
`InvalidInput` naming the query parameter, so the caller gets a 422 that says which one to fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bottega.api.runs.schemas import KEY_PATTERN, RunStatus
from bottega.core.errors import InvalidInput

OPERATORS = (">=", "<=", "!=", ">", "<", "=")
_METRIC = re.compile(r"^\s*(?P<key>[^<>=!]+?)\s*(?P<op>>=|<=|!=|>|<|=)\s*(?P<number>\S+)\s*$")
_KEY = re.compile(KEY_PATTERN)
ORDER_FIELDS = ("start_time", "name")
METRIC_PREFIX = "metrics."


def invalid(parameter: str, message: str) -> InvalidInput:
    """A 422 for one query parameter, shaped like FastAPI's own validation errors."""
    return InvalidInput(
        f"{parameter}: {message}",
        errors=[{"field": parameter, "message": message, "type": "value_error"}],
    )


@dataclass(frozen=True)
class MetricFilter:
    key: str
    op: str
    value: float


@dataclass(frozen=True)
class Order:
    """`field` is "start_time", "name" or a metric key (when `metric` is true)."""

    field: str
    descending: bool
    metric: bool = False


@dataclass
class RunQuery:
    status: RunStatus | None = None
    tags: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[MetricFilter] = field(default_factory=list)
    name: str | None = None
    parent_run_id: str | None = None
    order: Order = field(default_factory=lambda: Order("start_time", descending=True))


def _key_value(parameter: str, raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition(":")
    key = key.strip()
    if not sep:
        raise invalid(parameter, f"{raw!r} is not `key:value`")
    if not _KEY.match(key):
        raise invalid(parameter, f"{key!r} is not a valid key (letters, digits, `_ - . /` and spaces)")
    return key, value


def parse_metric(raw: str) -> MetricFilter:
    match = _METRIC.match(raw)
    if match is None:
        ops = " ".join(OPERATORS)
        raise invalid("query.metric", f"{raw!r} is not `<key><op><number>` with op one of {ops}")
    key, op, number = match["key"], match["op"], match["number"]
    if not _KEY.match(key):
        raise invalid("query.metric", f"{key!r} is not a valid metric key")
    try:
        value = float(number)
    except ValueError:
        raise invalid("query.metric", f"{number!r} in {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise invalid("query.metric", f"{number!r} in {raw!r} is not a finite number")
    return MetricFilter(key, op, value)


def parse_order(raw: str) -> Order:
    descending = raw.startswith("-")
    name = raw.removeprefix("-").strip()
    if name in ORDER_FIELDS:
        return Order(name, descending)
    if name.startswith(METRIC_PREFIX):
        key = name.removeprefix(METRIC_PREFIX)
        if _KEY.match(key):
            return Order(key, descending, metric=True)
    choices = ", ".join([*ORDER_FIELDS, "metrics.<key>"])
    raise invalid("query.order_by", f"{raw!r} is not one of {choices} (prefix `-` for descending)")


def parse(
    *,
    status: RunStatus | None,
    tags: list[str],
    params: list[str],
    metrics: list[str],
    name: str | None,
    parent_run_id: str | None,
    order_by: str | None,
) -> RunQuery:
    return RunQuery(
        status=status,
        tags=[_key_value("query.tag", raw) for raw in tags],
        params=[_key_value("query.param", raw) for raw in params],
        metrics=[parse_metric(raw) for raw in metrics],
        name=name or None,
        parent_run_id=parent_run_id,
        order=parse_order(order_by) if order_by else Order("start_time", descending=True),
    )
