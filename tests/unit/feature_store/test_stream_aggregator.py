"""The streaming pipeline's pure parts: sliding windows, lateness, corrections, pruning, event decoding, sink rows."""

from __future__ import annotations

import base64
import json
import math
import pickle
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bottega.feature_store.definitions import Aggregation, Entity, Feature, StreamingFeatureGroup
from bottega.feature_store.streaming.aggregator import Row, WindowAggregator, WindowSpec
from bottega.feature_store.streaming.events import BadEvent, EventDecoder, dead_letter, from_micros, to_micros
from bottega.feature_store.streaming.processor import decode_metadata, encode_metadata
from bottega.feature_store.streaming.sink import online_rows, rows_table
from bottega.feature_store.types import ValueType

MIN = 60_000_000  # one minute in microseconds
T0 = to_micros(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
DRIVER = Entity(name="driver", join_keys={"driver_id": ValueType.int})
AGGS: list[tuple[str, str, str | None, str, ValueType]] = [
    ("trips_10m", "count", None, "10m", ValueType.int),
    ("rated_10m", "count", "rating", "10m", ValueType.int),
    ("fare_sum_10m", "sum", "fare", "10m", ValueType.float),
    ("rating_sum_1h", "sum", "rating", "1h", ValueType.int),
    ("fare_mean_1h", "mean", "fare", "1h", ValueType.float),
    ("fare_min_1h", "min", "fare", "1h", ValueType.float),
    ("rating_max_1h", "max", "rating", "1h", ValueType.int),
    ("city_last_1h", "last", "city", "1h", ValueType.string),
]


def make_group(
    aggs: list[tuple[str, str, str | None, str, ValueType]] = AGGS, lateness: str = "5m"
) -> StreamingFeatureGroup:
    return StreamingFeatureGroup(
        name="driver_live",
        entity="driver",
        max_age="1d",
        topic="trips",
        timestamp_field="ts",
        event_schema={"fare": ValueType.float, "rating": ValueType.int, "city": ValueType.string},
        aggregations=[Aggregation(name=n, function=f, field=fd, window=w) for n, f, fd, w, _ in aggs],
        features=[Feature(name=n, dtype=t) for n, _, _, _, t in aggs],
        allowed_lateness=lateness,
    )


def fields(fare: float | None = 10.0, rating: int | None = 4, city: str | None = "rome") -> dict[str, Any]:
    return {"fare": fare, "rating": rating, "city": city}


def at(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def reference(
    events: list[tuple[tuple[Any, ...], int, dict[str, Any]]], keys: tuple[Any, ...], t: int
) -> dict[str, Any]:
    """Brute force over accepted events in arrival order: the value of every aggregation at t."""
    out: dict[str, Any] = {}
    for name, function, field, window, _ in AGGS:
        w = to_micros(timedelta(minutes={"10m": 10, "1h": 60}[window]))
        inside = sorted(
            ((ts, i, f) for i, (k, ts, f) in enumerate(events) if k == keys and t - w < ts <= t),
            key=lambda e: (e[0], e[1]),
        )
        if field is None:
            out[name] = len(inside)
            continue
        vals = [f[field] for _, _, f in inside if f[field] is not None]
        if function == "count":
            out[name] = len(vals)
        elif function == "last":
            out[name] = inside[-1][2][field] if inside else None
        elif not vals:
            out[name] = None
        elif function == "sum":
            out[name] = math.fsum(vals) if isinstance(vals[0], float) else sum(vals)
        elif function == "mean":
            out[name] = math.fsum(vals) / len(vals)
        else:
            out[name] = min(vals) if function == "min" else max(vals)
    return out


def test_each_function_over_its_window() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group()))
    k = (1,)
    agg.add(k, at(0), fields(10.0, 5, "rome"))
    agg.add(k, at(5), fields(20.0, 3, "milan"))
    (row,) = agg.add(k, at(12), fields(30.0, 4, "turin")).rows
    assert row.ts_us == at(12)
    assert row.revision == 0
    assert row.values == {
        "trips_10m": 2,  # 5 and 12 (0 is outside (2, 12])
        "rated_10m": 2,
        "fare_sum_10m": 50.0,
        "rating_sum_1h": 12,
        "fare_mean_1h": 20.0,
        "fare_min_1h": 10.0,
        "rating_max_1h": 5,
        "city_last_1h": "turin",
    }
    assert agg.evaluate((2,), at(12))["trips_10m"] == 0  # unknown entity: count 0, others null
    assert agg.evaluate((2,), at(12))["fare_mean_1h"] is None


def test_window_start_is_exclusive_and_end_inclusive() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group()))
    k = (1,)
    agg.add(k, at(0), fields(1.0))
    (row,) = agg.add(k, at(10), fields(2.0)).rows  # the event at exactly T - 10m is out
    assert row.values["trips_10m"] == 1
    assert row.values["fare_sum_10m"] == 2.0
    assert row.values["fare_mean_1h"] == 1.5
    assert agg.evaluate(k, at(10) - 1)["trips_10m"] == 1  # one microsecond earlier: only the event at 0
    assert agg.evaluate(k, at(10) - 1)["fare_sum_10m"] == 1.0
    assert agg.evaluate(k, at(9.99))["trips_10m"] == 1


def test_nulls_are_skipped_and_empty_aggregates_are_null() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group()))
    k = (7,)
    (row,) = agg.add(k, at(0), fields(None, None, None)).rows
    assert row.values == {
        "trips_10m": 1,
        "rated_10m": 0,
        "fare_sum_10m": None,
        "rating_sum_1h": None,
        "fare_mean_1h": None,
        "fare_min_1h": None,
        "rating_max_1h": None,
        "city_last_1h": None,
    }
    agg.add(k, at(1), fields(4.0, 2, "rome"))
    (row,) = agg.add(k, at(2), fields(None, None, None)).rows
    assert row.values["fare_mean_1h"] == 4.0
    assert row.values["rated_10m"] == 1
    assert row.values["city_last_1h"] is None  # `last` is the latest event's value, null included


def test_out_of_order_event_corrects_later_rows_within_the_longest_window() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group(lateness="4h")))
    k = (1,)
    for minute in (0, 20, 50, 70, 200):
        agg.add(k, at(minute), fields(float(minute)))
    result = agg.add(k, at(15), fields(100.0, 1, "bari"))
    assert not result.late
    # rows at its own time and every later one before 15 + 60 minutes: 15, 20, 50, 70 (200 is untouched)
    assert [r.ts_us for r in result.rows] == [at(15), at(20), at(50), at(70)]
    assert [r.revision for r in result.rows] == [0, 1, 1, 1]
    by_time = {r.ts_us: r.values for r in result.rows}
    assert by_time[at(20)]["trips_10m"] == 2  # 15 and 20
    assert by_time[at(20)]["fare_sum_10m"] == 120.0
    assert by_time[at(70)]["trips_10m"] == 1
    assert by_time[at(70)]["fare_min_1h"] == 20.0
    assert by_time[at(70)]["rating_sum_1h"] == 4 + 4 + 4 + 1
    assert by_time[at(15)]["city_last_1h"] == "bari"
    assert by_time[at(20)]["city_last_1h"] == "rome"
    # a second correction of row 20 counts again; an event at an existing time corrects that row
    assert [r.revision for r in agg.add(k, at(18), fields()).rows][:2] == [0, 2]
    (row, *_) = agg.add(k, at(50), fields(1.0, 1, "pisa")).rows
    assert (row.ts_us, row.revision, row.values["city_last_1h"]) == (at(50), 3, "pisa")


def test_lateness_cut_off_is_the_max_event_time_minus_the_allowed_lateness() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group(lateness="5m")))
    assert agg.watermark_us is None
    agg.add((1,), at(30), fields())
    assert agg.watermark_us == at(25)
    late = agg.add((2,), at(25) - 1, fields())  # another entity of the same stream: same watermark
    assert late.late
    assert late.rows == ()
    assert late.watermark_us == at(25)
    assert agg.entity_count == 1
    on_time = agg.add((2,), at(25), fields())  # exactly at the watermark: accepted
    assert not on_time.late
    assert [r.ts_us for r in on_time.rows] == [at(25)]
    agg.add((1,), at(20), fields())  # a late event never moves the watermark
    assert agg.watermark_us == at(25)


def test_pruning_keeps_exactly_what_future_rows_can_see() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group(lateness="5m")))
    agg.add((3,), at(0), fields())
    for minute in range(0, 200, 10):
        agg.add((1,), at(minute), fields(float(minute)))
        agg.add((2,), at(minute), fields(float(minute)))
    # watermark = 190 - 5 = 185; state keeps events after 185 - 60 = 125: 130..190 for entities 1 and 2
    agg.prune()
    assert agg.entity_count == 2
    assert agg.event_count == 2 * 7
    row, later = agg.add((1,), at(186), fields(0.0)).rows  # at the watermark: its 1h window is still whole
    assert row.values["rating_sum_1h"] == 4 * 7  # 130..180 and 186
    assert row.values["fare_min_1h"] == 0.0
    assert (later.ts_us, later.revision, later.values["trips_10m"]) == (at(190), 1, 2)
    two = agg.evaluate((2,), at(186))  # pruned entity 2 still has its whole hour: 130..180
    assert (two["trips_10m"], two["rating_sum_1h"], two["fare_min_1h"], two["fare_mean_1h"]) == (1, 24, 130.0, 155.0)


def test_two_events_at_the_same_time_make_one_row_with_both() -> None:
    agg = WindowAggregator(WindowSpec.from_group(make_group()))
    first = agg.add((1,), at(0), fields(1.0, 1, "a")).rows
    second = agg.add((1,), at(0), fields(2.0, 2, "b")).rows
    assert [(r.ts_us, r.revision) for r in (*first, *second)] == [(at(0), 0), (at(0), 1)]
    assert second[0].values["trips_10m"] == 2
    assert second[0].values["city_last_1h"] == "b"  # ties in time: the later arrival is the latest


def test_random_stream_matches_a_brute_force_reference_and_replay_rebuilds_revisions() -> None:
    rng = random.Random(7)
    spec = WindowSpec.from_group(make_group(lateness="15m"))
    live, replayed = WindowAggregator(spec), WindowAggregator(spec)
    accepted: list[tuple[tuple[Any, ...], int, dict[str, Any]]] = []
    final: dict[tuple[tuple[Any, ...], int], Row] = {}
    emissions: dict[tuple[tuple[Any, ...], int], int] = {}
    clock = at(0)
    stream = []
    for _ in range(400):
        clock += rng.randint(0, 3 * MIN)
        ts = clock - rng.choice([0, 0, 0, rng.randint(0, 20 * MIN)])  # some out of order, some too late
        keys = (rng.randint(1, 4),)
        f = fields(rng.choice([None, round(rng.uniform(1, 50), 2)]), rng.choice([None, 1, 5]), rng.choice("xyz"))
        stream.append((keys, ts, f))
    for index, (keys, ts, f) in enumerate(stream):
        result = live.add(keys, ts, f)
        if not result.late:
            accepted.append((keys, ts, f))
        for row in result.rows:
            final[(row.keys, row.ts_us)] = row
            emissions[(row.keys, row.ts_us)] = emissions.get((row.keys, row.ts_us), 0) + 1
        if index % 50 == 0:
            live.prune()
    assert 0 < len(accepted) < len(stream)
    for (keys, ts), row in final.items():
        expected = reference(accepted, keys, ts)
        assert row.values == pytest.approx(expected), (keys, ts)
        assert row.revision == emissions[(keys, ts)] - 1  # the revision is the correction count
    # replaying the same stream without emitting rebuilds the state: the same rows and revisions come next
    for keys, ts, f in stream:
        replayed.add(keys, ts, f, emit=False)
    nxt = (1,), clock - 10 * MIN, fields()
    assert live.add(*nxt).rows == replayed.add(*nxt).rows


def test_state_survives_pickling_as_the_spark_path_keeps_it() -> None:
    spec = WindowSpec.from_group(make_group(lateness="15m"))
    live = WindowAggregator(spec)
    for minute in (0, 5, 30, 31, 90):
        live.add((minute % 2,), at(minute), fields(float(minute)))
    restored = pickle.loads(pickle.dumps(live))
    assert (restored.entity_count, restored.event_count, restored.watermark_us) == (2, 4, live.watermark_us)
    for agg in (live, restored):  # an out-of-order event re-emits the same corrections from either
        assert agg.prune() == 1  # the event at 5 min: at or before 90 - 15 - 60 = 15 (0 went when 90 came)
    assert live.add((1,), at(80), fields(1.0)).rows == restored.add((1,), at(80), fields(1.0)).rows


def test_declared_feature_types_must_hold_the_aggregate() -> None:
    with pytest.raises(ValueError, match="mean"):
        WindowSpec.from_group(make_group([("m", "mean", "rating", "1h", ValueType.int)]))
    with pytest.raises(ValueError, match="sum"):
        WindowSpec.from_group(make_group([("s", "sum", "fare", "1h", ValueType.int)]))
    with pytest.raises(ValueError, match="last"):
        WindowSpec.from_group(make_group([("c", "last", "city", "1h", ValueType.float)]))
    spec = WindowSpec.from_group(make_group([("r", "max", "rating", "1h", ValueType.float)]))
    (row,) = WindowAggregator(spec).add((1,), at(0), fields()).rows
    assert row.values == {"r": 4.0}
    assert isinstance(row.values["r"], float)


def decoder() -> EventDecoder:
    group = make_group()
    return EventDecoder(group.schema_for("mobility", DRIVER).entity_keys, group.event_schema, group.timestamp_field)


def encode(**event: Any) -> bytes:
    return json.dumps({"driver_id": 3, "ts": 1_795_000_000_123, **fields(), **event}).encode()


def test_events_decode_with_epoch_millis_or_iso_timestamps() -> None:
    event = decoder().decode(encode(rating=5.0, fare=3))
    assert event.keys == (3,)
    assert event.ts_us == 1_795_000_000_123_000
    assert event.fields == {"fare": 3.0, "rating": 5, "city": "rome"}
    iso = decoder().decode(encode(ts="2026-11-24T09:30:00.250+01:00", city=None, extra="ignored"))
    assert from_micros(iso.ts_us) == datetime(2026, 11, 24, 8, 30, 0, 250_000, tzinfo=UTC)
    assert iso.fields["city"] is None
    assert decoder().decode(encode(ts="2026-11-24T08:30:00Z")).ts_us == at(30)


def test_key_columns_read_a_join_key_from_the_events_own_field() -> None:
    group = make_group()
    keys = group.schema_for("mobility", DRIVER).entity_keys
    mapped = EventDecoder(keys, group.event_schema, group.timestamp_field, {"driver_id": "driverId"})
    raw = json.dumps({"driverId": 7, "ts": 1_795_000_000_123, **fields()}).encode()
    assert mapped.decode(raw).keys == (7,)
    with pytest.raises(BadEvent, match="bad_key"):
        decoder().decode(raw)


def test_fast_and_standard_parsing_agree() -> None:
    # values already of their type pass as they are; others are converted or rejected as before
    assert decoder().decode(encode(driver_id=3.0, fare=2)).keys == (3,)
    assert type(decoder().decode(encode(fare=2)).fields["fare"]) is float
    with pytest.raises(BadEvent, match="bad_field"):
        decoder().decode(encode(rating=True))  # a boolean is not an int
    with pytest.raises(BadEvent, match="bad_key"):
        decoder().decode(encode(driver_id=False))
    # an integer beyond 64 bits (which a fast parser may refuse) still decodes like the standard parser does
    assert decoder().decode(encode(driver_id=2**70)).keys == (2**70,)
    assert decoder().decode(encode()).fields == fields()
    with pytest.raises(BadEvent, match="not_object"):
        decoder().decode(b"null")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (None, "not_json"),
        (b'{"driver_id": 3, "ts": NaN}', "not_json"),
        (b"[1, 2]", "not_object"),
        (json.dumps({"ts": 1, **fields()}).encode(), "bad_key"),
        (encode(driver_id="three"), "bad_key"),
        (encode(driver_id=None), "bad_key"),
        (json.dumps({"driver_id": 3, "ts": 1, "fare": 1.0, "city": "x"}).encode(), "missing_field"),
        (encode(fare="cheap"), "bad_field"),
        (encode(rating=4.5), "bad_field"),
        (encode(city=7), "bad_field"),
        (encode(ts="2026-11-24T08:30:00"), "bad_timestamp"),
        (encode(ts="yesterday"), "bad_timestamp"),
        (encode(ts=True), "bad_timestamp"),
        (encode(ts=10**20), "bad_timestamp"),
        (json.dumps({"driver_id": 3, **fields()}).encode(), "bad_timestamp"),
    ],
)
def test_malformed_events_are_rejected_with_a_reason(raw: bytes | None, code: str) -> None:
    with pytest.raises(BadEvent) as info:
        decoder().decode(raw)
    assert info.value.code == code


def test_dead_letters_keep_the_original_text_or_its_base64() -> None:
    text = json.loads(dead_letter("late", "d", topic="trips", partition=1, offset=9, raw=b'{"a": 1}'))
    assert text == {
        "reason": "late",
        "detail": "d",
        "topic": "trips",
        "partition": 1,
        "offset": 9,
        "raw": '{"a": 1}',
        "raw_encoding": "utf-8",
    }
    binary = json.loads(dead_letter("not_json", "d", topic="trips", partition=0, offset=1, raw=b"\xff\x00"))
    assert (binary["raw_encoding"], base64.b64decode(binary["raw"])) == ("base64", b"\xff\x00")


def test_sink_rows_offline_exact_and_online_shifted_by_revision() -> None:
    schema = make_group([("n", "count", None, "10m", ValueType.int)]).schema_for("mobility", DRIVER)
    rows = [
        Row((1,), at(0), {"n": 1}, 0),
        Row((1,), at(5), {"n": 2}, 0),
        Row((2,), at(1), {"n": 1}, 0),
        Row((1,), at(5), {"n": 3}, 2),
        Row((1,), at(3), {"n": 9}, 4),
    ]
    table = rows_table(schema, rows)
    assert table.column_names == ["driver_id", "n", "event_time"]
    assert table.column("event_time").to_pylist()[1] == from_micros(at(5))
    online = sorted(online_rows(schema, rows), key=lambda r: r["driver_id"])
    assert online == [
        {"driver_id": 1, "n": 3, "event_time": from_micros(at(5) + 2)},
        {"driver_id": 2, "n": 1, "event_time": from_micros(at(1))},
    ]


def test_commit_metadata_round_trips_and_tolerates_foreign_metadata() -> None:
    assert decode_metadata(encode_metadata(at(3))) == at(3)
    assert decode_metadata(encode_metadata(None)) is None
    for foreign in (None, "", "not json", "[]", '{"max_ts_us": "x"}', '{"max_ts_us": true}'):
        assert decode_metadata(foreign) is None
