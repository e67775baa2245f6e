"""Request decoding against a plan: types, coercions, and an error naming the field for every way a body is bad."""

from __future__ import annotations

import math

import orjson
import pytest

from bottega.feature_store.types import ValueType
from bottega.serving.features.decode import RequestError, decode_instances
from bottega.serving.features.plan import FeaturePlan, Field

PLAN = FeaturePlan(
    input_names=("prep_time", "hour", "promo"),
    entity_keys=("restaurant_id", "user_id"),
    fields=(
        Field("restaurant_id", ValueType.int, False),
        Field("user_id", ValueType.string, False),
        Field("prep_time", ValueType.float, True),
        Field("hour", ValueType.int, True),
        Field("promo", ValueType.bool, True),
    ),
    request_columns=(("prep_time", 0), ("hour", 1), ("promo", 2)),
    read_refs=(),
    stored=(),
    on_demand=(),
    schemas=(),
)


def row(**over: object) -> dict[str, object]:
    return {"restaurant_id": 7, "user_id": "u1", "prep_time": 12.5, "hour": 9, "promo": False, **over}


def body(*rows: object) -> bytes:
    return orjson.dumps({"instances": list(rows)})


def test_good_rows_are_typed_and_extras_kept() -> None:
    rows = decode_instances(
        body(row(), row(prep_time=3, hour=10.0, promo=None, extra={"x": 1}), row(prep_time=None)), PLAN, max_rows=10
    )
    assert rows[0] == row()
    assert type(rows[1]["prep_time"]) is float
    assert rows[1]["prep_time"] == 3.0
    assert type(rows[1]["hour"]) is int
    assert rows[1]["hour"] == 10
    assert rows[1]["promo"] is None
    assert rows[1]["extra"] == {"x": 1}  # unknown fields are ignored, not refused
    assert rows[2]["prep_time"] is None


@pytest.mark.parametrize(
    ("payload", "status", "field", "detail"),
    [
        (b"{not json", 400, "body", "body: malformed JSON"),
        (b"", 400, "body", "body: malformed JSON"),
        (b"[1, 2]", 400, "body", 'body: expected an object {"instances"'),
        (b'{"rows": []}', 400, "instances", "instances: expected a list of row objects, got nothing"),
        (b'{"instances": {"a": 1}}', 400, "instances", 'instances: expected a list of row objects, got {"a":1}'),
        (b'{"instances": []}', 422, "instances", "instances: expected at least one row"),
        (body(row(), 5), 400, "instances[1]", "instances[1]: expected an object, got 5"),
        (
            body(row(prep_time="abc")),
            422,
            "instances[0].prep_time",
            'instances[0].prep_time: expected a number, got "abc"',
        ),
        (body(row(prep_time=True)), 422, "instances[0].prep_time", "expected a number, got true"),
        (body(row(hour=9.5)), 422, "instances[0].hour", "instances[0].hour: expected an integer, got 9.5"),
        (body(row(hour="9")), 422, "instances[0].hour", 'expected an integer, got "9"'),
        (body(row(promo=1)), 422, "instances[0].promo", "instances[0].promo: expected a boolean, got 1"),
        (body(row(), row(user_id=5)), 422, "instances[1].user_id", "instances[1].user_id: expected a string, got 5"),
        (body(row(restaurant_id=None)), 422, "instances[0].restaurant_id", "expected an integer, got null"),
        (body(row(restaurant_id="7")), 422, "instances[0].restaurant_id", 'expected an integer, got "7"'),
        (
            body({"user_id": "u1", "prep_time": 1.0, "hour": 1, "promo": True}),
            422,
            "instances[0].restaurant_id",
            "instances[0].restaurant_id: missing (expected an integer)",
        ),
        (
            body({k: v for k, v in row().items() if k != "hour"}),
            422,
            "instances[0].hour",
            "missing (expected an integer)",
        ),
        (body(row(prep_time="x" * 200)), 422, "instances[0].prep_time", "x..."),
    ],
)
def test_errors_name_the_field(payload: bytes, status: int, field: str, detail: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_instances(payload, PLAN, max_rows=10)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert detail in caught.value.detail
    assert str(caught.value) == caught.value.detail


def test_too_many_rows_is_413() -> None:
    assert len(decode_instances(body(*[row()] * 3), PLAN, max_rows=3)) == 3
    with pytest.raises(RequestError) as caught:
        decode_instances(body(*[row()] * 4), PLAN, max_rows=3)
    assert (caught.value.status, caught.value.field) == (413, "instances")
    assert "4 rows, more than the 3 allowed" in caught.value.detail


def test_nan_never_comes_from_json() -> None:
    with pytest.raises(RequestError) as caught:
        decode_instances(b'{"instances": [{"prep_time": NaN}]}', PLAN, max_rows=1)
    assert caught.value.status == 400
    assert not math.isnan(decode_instances(body(row()), PLAN, max_rows=1)[0]["prep_time"])
