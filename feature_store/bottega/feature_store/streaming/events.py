"""Decoding and validating the events of a streaming feature group, and the dead-letter record format.

An event is one JSON object (UTF-8) holding:
- every join key of the group's entity, non-null, of the key's type;
- the group's `timestamp_field`: epoch milliseconds (an integer, or a number with a fraction of a millisecond) or an
  ISO-8601 string WITH a timezone (`2026-11-24T09:00:00Z`, `...+01:00`); times are kept as integer microseconds
  since the epoch (UTC);
- every field of the group's `event_schema`, of its type (an integer is accepted where a float is declared). A
  field may be `null` (aggregations skip nulls); a missing field is an error. Other members are ignored.

Anything else (not UTF-8 JSON, not an object, NaN/Infinity, a missing or mistyped member, a bad timestamp) raises
`BadEvent` with a stable `code`; the processor sends it to the dead-letter topic `<topic>.dlq` as the JSON object
`dead_letter` builds: `{"reason", "detail", "topic", "partition", "offset", "raw", "raw_encoding"}` where `raw` is
the original text, or its base64 when it is not UTF-8 (`raw_encoding` says which).

Decoding uses orjson when it is installed (the standard parser words the error of anything orjson refuses) and
leaves values already of their declared type as they are (`ValueType.coerce` converts or rejects the others).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bottega.feature_store.types import ValueType

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = int((datetime(1, 1, 2, tzinfo=UTC) - EPOCH) / timedelta(microseconds=1))
MAX_US = int((datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) / timedelta(microseconds=1))

# Stable reasons written to the dead-letter topic.
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
BAD_KEY = "bad_key"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
BAD_TIMESTAMP = "bad_timestamp"
LATE = "late"


class BadEvent(ValueError):
    """An event that cannot be used; `code` is the dead-letter reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Event:
    """A valid event: typed join keys, event time (epoch microseconds, UTC) and typed fields."""

    keys: tuple[Any, ...]
    ts_us: int
    fields: dict[str, Any]


def to_micros(moment: datetime | timedelta) -> int:
    """A timezone-aware datetime as epoch microseconds, or a duration in microseconds (exact)."""
    if isinstance(moment, timedelta):
        return moment // timedelta(microseconds=1)
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """Epoch microseconds as a UTC datetime (exact, unlike `datetime.fromtimestamp` on a float)."""
    return EPOCH + timedelta(microseconds=micros)


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds (a number) or an ISO-8601 string with a timezone, as epoch microseconds."""
    if isinstance(value, bool) or value is None:
        raise BadEvent(BAD_TIMESTAMP, f"{value!r} is not a timestamp")
    if isinstance(value, int | float):
        micros = round(value * 1000)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise BadEvent(BAD_TIMESTAMP, f"{value!r} is not an ISO-8601 timestamp") from None
        if moment.tzinfo is None:
            raise BadEvent(BAD_TIMESTAMP, f"{value!r} has no timezone")
        micros = to_micros(moment)
    else:
        raise BadEvent(BAD_TIMESTAMP, f"{value!r} is not a timestamp")
    if not MIN_US <= micros <= MAX_US:
        raise BadEvent(BAD_TIMESTAMP, f"{value!r} is out of range")
    return micros


# The Python type a value of each ValueType already has when no conversion is needed (`coerce` does the rest).
EXACT: dict[ValueType, type] = {ValueType.int: int, ValueType.float: float, ValueType.string: str, ValueType.bool: bool}


def _fast_loads() -> Callable[[bytes], Any] | None:
    """orjson's parser when it is installed (strict JSON: it rejects NaN and Infinity as `json` is told to here),
    returning None instead of raising so that the standard parser, which is always there, words the error."""
    try:
        import orjson
    except ImportError:
        return None
    parse, error = orjson.loads, orjson.JSONDecodeError

    def loads(raw: bytes) -> Any:
        try:
            return parse(raw)
        except error:
            return None

    return loads


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class EventDecoder:
    """Decodes raw Kafka values into `Event`s for one group (join keys, timestamp field, event schema)."""

    def __init__(
        self,
        entity_keys: tuple[tuple[str, ValueType], ...],
        event_schema: Mapping[str, ValueType],
        timestamp_field: str,
        key_columns: Mapping[str, str] | None = None,
    ) -> None:
        self.entity_keys = entity_keys
        self.event_schema = dict(event_schema)
        self.timestamp_field = timestamp_field
        where = dict(key_columns or {})  # join key -> the event field holding it (default: the key's name)
        self._keys = [(where.get(name, name), vtype, EXACT[vtype]) for name, vtype in entity_keys]
        self._fields = [(name, vtype, EXACT[vtype]) for name, vtype in self.event_schema.items()]
        self._loads = _fast_loads()

    def decode(self, raw: bytes | None) -> Event:
        """The event in `raw`, or `BadEvent` saying why not."""
        if raw is None:
            raise BadEvent(NOT_JSON, "the record has no value")
        data = self._loads(raw) if self._loads is not None else None
        if data is None:  # no fast parser, it failed (the standard one says why), or the text was `null`
            try:
                data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise BadEvent(NOT_JSON, str(exc)[:200]) from None
        if not isinstance(data, dict):
            raise BadEvent(NOT_OBJECT, f"expected a JSON object, got {type(data).__name__}")
        return self.validate(data)

    def validate(self, data: Mapping[str, Any]) -> Event:
        """An already parsed event object, checked and typed."""
        keys = []
        for name, vtype, exact in self._keys:
            value = data.get(name)
            if value is None:
                raise BadEvent(BAD_KEY, f"join key {name!r} is missing or null")
            if type(value) is exact:  # the common case: already of the key's type
                keys.append(value)
                continue
            try:
                keys.append(vtype.coerce(value))
            except (TypeError, ValueError) as exc:
                raise BadEvent(BAD_KEY, f"join key {name!r}: {exc}") from None
        if self.timestamp_field not in data:
            raise BadEvent(BAD_TIMESTAMP, f"timestamp field {self.timestamp_field!r} is missing")
        ts_us = parse_timestamp(data[self.timestamp_field])
        fields = {}
        for name, vtype, exact in self._fields:
            if name not in data:
                raise BadEvent(MISSING_FIELD, f"field {name!r} is missing")
            value = data[name]
            if value is None or type(value) is exact:
                fields[name] = value
                continue
            try:
                fields[name] = vtype.coerce(value)
            except (TypeError, ValueError) as exc:
                raise BadEvent(BAD_FIELD, f"field {name!r}: {exc}") from None
        return Event(keys=tuple(keys), ts_us=ts_us, fields=fields)


def dead_letter(reason: str, detail: str, *, topic: str, partition: int, offset: int, raw: bytes | None) -> bytes:
    """The dead-letter record for a rejected event (JSON, UTF-8)."""
    text: str | None
    encoding = "utf-8"
    if raw is None:
        text = None
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    record = {
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw": text,
        "raw_encoding": encoding,
    }
    return json.dumps(record).encode("utf-8")
