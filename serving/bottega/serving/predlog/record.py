"""One prediction as it is logged: a `PredictionRecord`, encoded as one line of JSON (orjson) ending in a newline.

The line is the unit of the spool and the value of the Kafka message (without the newline); its key is the
request id, which consumers use to drop the rare duplicates of at-least-once delivery. Fields, in this order:
request_id, ts_us (microseconds since the epoch, UTC), project, deployment, model, version, shadow, features
(the served input vector in the model's input order - the version signature's request inputs, then its store
features - or a mapping by input name; NaN and infinities become null), status (feature name ->
FRESH/STALE/MISSING/DEFAULT), prediction (any JSON-able value; numpy scalars and arrays are accepted), latency_us,
and as_of_us (optional, null unless the request replayed history with `as_of`: the store features then came from
the offline store at that time, in microseconds since the epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

FIELDS: tuple[str, ...] = (
    "request_id",
    "ts_us",
    "project",
    "deployment",
    "model",
    "version",
    "shadow",
    "features",
    "status",
    "prediction",
    "latency_us",
)
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(value: Any) -> Any:
    """orjson's `default`: numpy-like scalars (`.item()`), array-likes (`.tolist()`), sets; anything else fails."""
    for attr in ("tolist", "item"):
        method = getattr(value, attr, None)
        if callable(method):
            return method()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"a prediction record cannot hold a value of type {type(value).__name__}")


@dataclass(slots=True)
class PredictionRecord:
    request_id: str
    ts_us: int
    project: str
    deployment: str
    model: str
    version: int
    shadow: bool
    features: list[Any] | dict[str, Any] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    prediction: Any = None
    latency_us: int = 0
    as_of_us: int | None = None

    def encode(self) -> bytes:
        """One JSON object on one line, ending in b"\\n" (orjson escapes newlines inside strings)."""
        return orjson.dumps(self, default=_fallback, option=_OPTIONS)


def decode(line: bytes) -> dict[str, Any]:
    """A spool line (with or without its newline) or a Kafka message value back to a dict of the record's fields.

    Raises ValueError naming the problem when the bytes are not one JSON object with every field of a record.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"a prediction log line is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a prediction log line must be a JSON object, got {type(value).__name__}")
    missing = [name for name in FIELDS if name not in value]
    if missing:
        raise ValueError(f"a prediction log line lacks the field(s) {', '.join(missing)}")
    if not isinstance(value["request_id"], str) or not value["request_id"]:
        raise ValueError("a prediction log line has no request_id string")
    if not isinstance(value["project"], str) or not value["project"]:
        raise ValueError("a prediction log line has no project string")
    return value
