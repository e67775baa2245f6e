from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

from bottega.core.timestamps import NaiveTimestampWarning, to_utc_micros

INSTANT = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Rome", "America/New_York", "+05:30"])
def test_aware_units_and_zones_become_utc_micros(unit: str, zone: str) -> None:
    series = pd.Series([pd.Timestamp(INSTANT).tz_convert(zone)]).astype(f"datetime64[{unit}, {zone}]")
    out = to_utc_micros(pa.Array.from_pandas(series), "ts")
    assert out.type == pa.timestamp("us", tz="UTC")
    assert out.to_pylist() == [INSTANT]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_naive_is_utc_with_warning(unit: str) -> None:
    series = pd.Series([pd.Timestamp("2026-01-01 09:00")]).astype(f"datetime64[{unit}]")
    with pytest.warns(NaiveTimestampWarning, match="'ts' has no time zone"):
        assert to_utc_micros(pa.Array.from_pandas(series), "ts").to_pylist() == [INSTANT]


def test_text_parses_and_numbers_are_refused() -> None:
    assert to_utc_micros(pa.array(["2026-01-01T10:00:00+01:00"]), "ts").to_pylist() == [INSTANT]
    with pytest.raises(ValueError, match="'ts' has type int64"):
        to_utc_micros(pa.array([1]), "ts")
    with pytest.raises(ValueError, match="'ts' has text 'soon'"):
        to_utc_micros(pa.array(["soon"]), "ts")


def test_cli_start_end_follow_the_rule() -> None:
    """`bottega features run --start/--end`: an offset is honoured; no offset is UTC, with the rule's warning."""
    from datetime import UTC, datetime

    from bottega.cli.pipelines import _when

    assert _when("2026-11-01T01:00:00+01:00", "--start") == datetime(2026, 11, 1, tzinfo=UTC)
    assert _when("2026-11-01T00:00:00Z", "--end") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.warns(NaiveTimestampWarning, match="--start 2026-11-01T00:00:00 has no time zone"):
        assert _when("2026-11-01T00:00:00", "--start") == datetime(2026, 11, 1, tzinfo=UTC)
