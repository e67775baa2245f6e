"""Request bodies `{"instances": [{<entity keys>, <request features>, ...}, ...]}` checked against a `FeaturePlan`.

Each row must carry every field of the plan with its type: entity keys (int or string, never null), request
features (int64, float64, bool; null allowed: NaN for the model), request features of on-demand transforms (their
declared type). Integers are accepted for float fields (as floats) and integral floats for int fields (as ints);
fields the plan does not know are left as they are and ignored. The rows are returned as decoded, values coerced in
place. Errors name the field: 400 for a body that is not JSON or not of that shape, 422 for a missing or mistyped
field, 413 for more rows than allowed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from bottega.feature_store.types import ValueType
from bottega.serving.features.plan import FeaturePlan

SHAPE = '{"instances": [{...}, ...]}'
EXPECTED = {ValueType.int: "an integer", ValueType.float: "a number", ValueType.bool: "a boolean"}
EXPECTED[ValueType.string] = "a string"


class RequestError(Exception):
    """A request the service refuses: an HTTP status, the field at fault (`instances[2].age`) and a detail that
    names it."""

    def __init__(self, status: int, field: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.field = field
        self.detail = detail


def shown(value: Any) -> str:
    """A short JSON rendering of a value for an error message."""
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(status: int, field: str, problem: str) -> RequestError:
    return RequestError(status, field, f"{field}: {problem}")


def decode_instances(body: bytes, plan: FeaturePlan, *, max_rows: int) -> list[dict[str, Any]]:
    """The request's rows, checked and typed against the plan; RequestError on the first problem."""
    return decode_request(body, plan, max_rows=max_rows)[0]


def decode_request(body: bytes, plan: FeaturePlan, *, max_rows: int) -> tuple[list[dict[str, Any]], Any]:
    """The request's rows (as `decode_instances`) and its raw `as_of` value (None when absent)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _fail(400, "body", f"malformed JSON ({exc})") from None
    if type(document) is not dict:
        raise _fail(400, "body", f"expected an object {SHAPE}, got {shown(document)}")
    rows = document.get("instances")
    if type(rows) is not list:
        got = "nothing" if rows is None else shown(rows)
        raise _fail(400, "instances", f"expected a list of row objects, got {got}")
    if not rows:
        raise _fail(422, "instances", "expected at least one row")
    if len(rows) > max_rows:
        raise _fail(413, "instances", f"{len(rows)} rows, more than the {max_rows} allowed in one request")
    fields = plan.fields
    getter = plan.field_getter
    exact = plan.exact_types
    for index, row in enumerate(rows):
        if type(row) is not dict:
            raise _fail(400, f"instances[{index}]", f"expected an object, got {shown(row)}")
        if getter is not None:  # fast path: every field present with exactly its type, nothing to convert
            try:
                if tuple(map(type, getter(row))) == exact:
                    continue
            except KeyError:
                pass  # the field-by-field check below names the missing field
        for field in fields:
            value = row.get(field.name, row)  # the row itself stands for "absent"
            kind = type(value)
            vtype = field.vtype
            if vtype is ValueType.float:
                if kind is float:
                    continue
                if kind is int:
                    row[field.name] = float(value)
                    continue
            elif vtype is ValueType.int:
                if kind is int:
                    continue
                if kind is float and value.is_integer():
                    row[field.name] = int(value)
                    continue
            elif (vtype is ValueType.bool and kind is bool) or (vtype is ValueType.string and kind is str):
                continue
            if value is None and field.nullable:
                continue
            _refuse(index, field.name, vtype, value, row)
    if plan.key_renames:  # the signature's key_columns: the stores read join keys by their own names
        for row in rows:
            for column, key in plan.key_renames:
                row[key] = row[column]
    return rows, document.get("as_of")


def _refuse(index: int, name: str, vtype: ValueType, value: Any, row: dict[str, Any]) -> None:
    field = f"instances[{index}].{name}"
    if value is row:
        raise _fail(422, field, f"missing (expected {EXPECTED[vtype]})")
    raise _fail(422, field, f"expected {EXPECTED[vtype]}, got {shown(value)}")


def request_as_of(value: Any, rows: int, max_rows: int) -> datetime:
    """A request's raw `as_of` (a replay of history: store features read point in time from the offline store) as a
    UTC datetime; RequestError for what is not an ISO-8601 time, or for more rows than an as_of request may have."""
    if not isinstance(value, str):
        raise _fail(422, "as_of", f"as_of: expected an ISO-8601 time such as 2026-11-01T09:00:00Z, got {shown(value)}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(422, "as_of", f"as_of: {value!r} is not an ISO-8601 time (e.g. 2026-11-01T09:00:00Z)") from None
    if rows > max_rows:
        raise _fail(
            413, "instances", f"{rows} rows with as_of, more than the {max_rows} allowed (BOTTEGA_SERVE_AS_OF_MAX_ROWS)"
        )
    from bottega.core.timestamps import as_utc

    return as_utc(moment, "as_of")  # the timestamp rule: no offset = UTC, with a warning
