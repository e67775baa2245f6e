"""PredictionRecord's one-line JSON encoding and its decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bottega.serving.predlog.record import FIELDS, PredictionRecord, decode


def make(**overrides: object) -> PredictionRecord:
    fields: dict[str, object] = {
        "request_id": "r-1",
        "ts_us": 1_764_000_000_000_000,
        "project": "eats",
        "deployment": "eta",
        "model": "eta_model",
        "version": 3,
        "shadow": False,
        "features": {"age": 31.0, "prep_time": math.nan},
        "status": {"prep_time": "MISSING"},
        "prediction": 0.25,
        "latency_us": 412,
    }
    fields.update(overrides)
    return PredictionRecord(**fields)  # type: ignore[arg-type]


def test_encode_is_one_line_that_decodes_back() -> None:
    line = make(request_id='odd "id"\nwith newline').encode()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    back = decode(line)
    assert tuple(back) == (*FIELDS, "as_of_us")  # the optional field last, null unless a replay
    assert back["as_of_us"] is None
    assert back["request_id"] == 'odd "id"\nwith newline'
    assert back["features"] == {"age": 31.0, "prep_time": None}  # NaN is served as missing: null
    assert back["status"] == {"prep_time": "MISSING"}
    assert back["version"] == 3
    assert back["shadow"] is False


def test_a_replay_carries_its_as_of_and_older_lines_still_decode() -> None:
    assert decode(make(as_of_us=1_700_000_000_000_000).encode())["as_of_us"] == 1_700_000_000_000_000
    old = make().encode().replace(b',"as_of_us":null', b"")  # a line written before the field existed
    assert "as_of_us" not in decode(old)


def test_numpy_predictions_and_features_encode() -> None:
    record = make(prediction=np.array([0.1, 0.9]), features={"x": np.float32(1.5), "n": np.int64(7)}, shadow=True)
    back = decode(record.encode())
    assert back["prediction"] == pytest.approx([0.1, 0.9])
    assert back["features"] == {"x": 1.5, "n": 7}
    assert back["shadow"] is True


def test_unencodable_value_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        make(prediction=object()).encode()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"request_id": "x"', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"request_id": "x", "project": "p"}', "lacks the field"),
    ],
)
def test_decode_names_the_problem(line: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(line)


def test_decode_requires_a_request_id() -> None:
    line = make(request_id="").encode()
    with pytest.raises(ValueError, match="request_id"):
        decode(line)
