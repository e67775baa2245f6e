"""A CQL keyspace/table write and read through cassandra-driver against the real node `make test` starts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from cassandra.cluster import Cluster, Session


@pytest.fixture
def session(cassandra_hosts: str) -> Iterator[Session]:
    host, port = cassandra_hosts.rsplit(":", 1)
    cluster = Cluster([host], port=int(port), connect_timeout=10)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def test_keyspace_table_write_and_read(session: Session, unique_name: str) -> None:
    session.execute(
        f"CREATE KEYSPACE {unique_name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    try:
        session.execute(f"CREATE TABLE {unique_name}.features (entity text PRIMARY KEY, value double, id uuid)")
        insert = session.prepare(f"INSERT INTO {unique_name}.features (entity, value, id) VALUES (?, ?, ?)")
        ids = {f"e{i}": uuid.uuid4() for i in range(20)}
        for i, (entity, ident) in enumerate(ids.items()):
            session.execute(insert, (entity, i * 1.5, ident))
        rows = {row.entity: row for row in session.execute(f"SELECT entity, value, id FROM {unique_name}.features")}
        assert set(rows) == set(ids)
        assert rows["e7"].value == pytest.approx(10.5)
        assert rows["e7"].id == ids["e7"]
        version = session.execute("SELECT release_version FROM system.local").one().release_version
        assert version.startswith("5.0")
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {unique_name}")
