"""Store settings come from the environment, with clear errors for values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from bottega.feature_store.config import StoreSettings


def test_defaults_live_under_bottega_home(tmp_path: Path) -> None:
    settings = StoreSettings.from_env({"BOTTEGA_HOME": str(tmp_path)})
    assert settings.offline_root == tmp_path / "offline"
    assert settings.sqlite_path == tmp_path / "online.db"
    assert (settings.online_kind, settings.cassandra_write_batch_rows) == ("sqlite", 100)
    assert settings.cassandra_write_batch_bytes == 48 * 1024


def test_cassandra_batch_sizes_can_be_lowered_for_clusters_with_default_warnings() -> None:
    env = {"BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS": "10", "BOTTEGA_CASSANDRA_WRITE_BATCH_BYTES": "4096"}
    settings = StoreSettings.from_env(env)
    assert (settings.cassandra_write_batch_rows, settings.cassandra_write_batch_bytes) == (10, 4096)


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1.5"])
def test_a_batch_size_that_is_not_a_positive_whole_number_is_named(value: str) -> None:
    with pytest.raises(ValueError, match=f"BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS={value!r}"):
        StoreSettings.from_env({"BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS": value})


def test_an_unknown_online_store_is_named() -> None:
    with pytest.raises(ValueError, match="choose sqlite or cassandra"):
        StoreSettings.from_env({"BOTTEGA_ONLINE_STORE": "redis"})


def test_stores_built_by_hand_expand_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/feature_store.md builds them as OfflineStore("~/.bottega/offline"): no folder literally named "~"
    from bottega.feature_store.offline.store import OfflineStore
    from bottega.feature_store.online.sqlite import SqliteOnlineStore

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert OfflineStore("~/.bottega/offline").root == tmp_path / ".bottega" / "offline"
    online = SqliteOnlineStore("~/.bottega/online.db")
    try:
        assert online.path == tmp_path / ".bottega" / "online.db"
        assert online.path.exists()
        assert not (tmp_path / "~").exists()
    finally:
        online.close()
