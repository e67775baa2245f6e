"""The streaming run's reports to the catalog: throttled, and never fatal when the API cannot be reached."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_harness import harness, migrated_sqlite

from bottega.feature_store.catalog import StreamReporter
from bottega.feature_store.streaming.processor import StreamStats
from bottega.sdk import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_catalog_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with Client(f"http://127.0.0.1:{free_port()}", token="btg_x", timeout=2) as client:
        reporter = StreamReporter(client, "eats", "live", every_s=0)
        assert reporter.report(StreamStats(rows_offline=3)) is False
        reporter(StreamStats(rows_offline=4))  # the progress callback does not raise either
    assert "could not report stats of eats:live" in caplog.text


def test_reports_are_throttled_and_carry_freshness(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path)
    with harness(url, tmp_path / "home") as api:
        sdk = api.sdk(api.project("eats"))
        sdk.features.put_entity("eats", "driver", {"driver_id": "int"})
        sdk.features.register_group(
            "eats",
            {
                "name": "live",
                "entity": "driver",
                "max_age": "1h",
                "topic": "trips",
                "event_schema": {"driver_id": "int"},
                "aggregations": [{"name": "trips_1h", "function": "count", "window": "1h"}],
                "features": [{"name": "trips_1h", "dtype": "int"}],
            },
        )
        newest = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=90)
        reporter = StreamReporter(sdk, "eats", "live", every_s=3600)
        reporter(StreamStats(rows_offline=5, rows_online=2, last_event_us=int(newest.timestamp() * 1_000_000)))
        reporter(StreamStats(rows_offline=50))  # within the hour: not sent
        stats = sdk.features.group("eats", "live").stats
        assert stats is not None
        assert (stats.rows_offline, stats.rows_online, stats.last_event_time) == (5, 2, newest)
        assert stats.freshness_seconds is not None
        assert 89 <= stats.freshness_seconds <= 120
        assert reporter.report(StreamStats(rows_offline=50)) is True  # the final report always goes
        assert sdk.features.group("eats", "live").stats.rows_offline == 50  # type: ignore[union-attr]
