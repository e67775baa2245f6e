"""A SQLAlchemy round trip on the real PostgreSQL server `make test` starts."""

from __future__ import annotations

import sqlalchemy as sa


def test_sqlalchemy_round_trip(postgres_url: str, unique_name: str) -> None:
    engine = sa.create_engine(postgres_url)
    metadata = sa.MetaData()
    table = sa.Table(
        unique_name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False, unique=True),
        sa.Column("payload", sa.JSON),
    )
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "name": f"n{i}", "payload": {"i": i}} for i in range(10)])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.id >= 5).order_by(table.c.id)).all()
            server = conn.execute(sa.text("SHOW server_version")).scalar_one()
        assert [row.name for row in rows] == ["n5", "n6", "n7", "n8", "n9"]
        assert rows[0].payload == {"i": 5}
        assert int(server.split(".")[0]) >= 15
        with engine.begin() as conn:
            try:
                conn.execute(table.insert(), [{"id": 99, "name": "n1"}])
                raise AssertionError("a duplicate name must violate the unique constraint")
            except sa.exc.IntegrityError:
                pass
    finally:
        metadata.drop_all(engine)
        engine.dispose()
