"""Where the stores are, from `BOTTEGA_*` environment variables read when a pipeline or job starts.

| variable | default | meaning |
|---|---|---|
| `BOTTEGA_HOME` | `~/.bottega` | data directory of the embedded defaults |
| `BOTTEGA_OFFLINE_URL` | `$BOTTEGA_HOME/offline` | the offline store's root folder |
| `BOTTEGA_ONLINE_STORE` | `sqlite` | `sqlite` or `cassandra` |
| `BOTTEGA_ONLINE_SQLITE_PATH` | `$BOTTEGA_HOME/online.db` | the SQLite online store |
| `BOTTEGA_CASSANDRA_HOSTS` | `127.0.0.1:9042` | comma-separated `host:port` contact points |
| `BOTTEGA_CASSANDRA_KEYSPACE` | `bottega_online` | the online keyspace |
| `BOTTEGA_CASSANDRA_CONSISTENCY` | `LOCAL_ONE` | read/write consistency level |
| `BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS` | `100` | rows per unlogged write batch (10 on clusters with default warnings) |
| `BOTTEGA_CASSANDRA_WRITE_BATCH_BYTES` | `49152` | bytes per write batch (under the 50 KiB failure threshold) |
| `BOTTEGA_KAFKA_BOOTSTRAP` | `127.0.0.1:9092` | Kafka bootstrap servers for streaming groups |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.online.base import OnlineStore


@dataclass(frozen=True)
class StoreSettings:
    offline_root: Path
    online_kind: str
    sqlite_path: Path
    cassandra_hosts: tuple[str, ...]
    cassandra_keyspace: str
    cassandra_consistency: str
    kafka_bootstrap: str
    cassandra_write_batch_rows: int = 100
    cassandra_write_batch_bytes: int = 48 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        env = os.environ if env is None else env
        home = Path(env.get("BOTTEGA_HOME", str(Path.home() / ".bottega"))).expanduser()
        kind = env.get("BOTTEGA_ONLINE_STORE", "sqlite").lower()
        if kind not in ("sqlite", "cassandra"):
            raise ValueError(f"BOTTEGA_ONLINE_STORE={kind!r}: choose sqlite or cassandra")
        return cls(
            offline_root=Path(env.get("BOTTEGA_OFFLINE_URL", str(home / "offline"))).expanduser(),
            online_kind=kind,
            sqlite_path=Path(env.get("BOTTEGA_ONLINE_SQLITE_PATH", str(home / "online.db"))).expanduser(),
            cassandra_hosts=tuple(
                h.strip() for h in env.get("BOTTEGA_CASSANDRA_HOSTS", "127.0.0.1:9042").split(",") if h.strip()
            ),
            cassandra_keyspace=env.get("BOTTEGA_CASSANDRA_KEYSPACE", "bottega_online"),
            cassandra_consistency=env.get("BOTTEGA_CASSANDRA_CONSISTENCY", "LOCAL_ONE"),
            kafka_bootstrap=env.get("BOTTEGA_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            cassandra_write_batch_rows=_positive(env, "BOTTEGA_CASSANDRA_WRITE_BATCH_ROWS", 100),
            cassandra_write_batch_bytes=_positive(env, "BOTTEGA_CASSANDRA_WRITE_BATCH_BYTES", 48 * 1024),
        )

    def offline(self) -> OfflineStore:
        return OfflineStore(self.offline_root)

    def online(self) -> OnlineStore:
        if self.online_kind == "cassandra":
            from bottega.feature_store.online.cassandra import CassandraOnlineStore

            hosts, ports = [], set()
            for host_port in self.cassandra_hosts:
                host, _, port = host_port.partition(":")
                hosts.append(host)
                ports.add(int(port or 9042))
            if len(ports) != 1:
                raise ValueError("BOTTEGA_CASSANDRA_HOSTS must use one port for every host")
            return CassandraOnlineStore(
                hosts,
                port=ports.pop(),
                keyspace=self.cassandra_keyspace,
                consistency=self.cassandra_consistency,
                write_batch_rows=self.cassandra_write_batch_rows,
                write_batch_bytes=self.cassandra_write_batch_bytes,
            )
        from bottega.feature_store.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(self.sqlite_path)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r}: give a positive whole number")
    return int(raw)
