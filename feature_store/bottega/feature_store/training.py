"""Training sets: resolve feature references through the API, then join them point-in-time from the offline store.

The offline store is read directly by the caller (a notebook, a trainer, a job), never through the API: the API
only tells where each feature lives and what it looks like (`GET /api/v1/features/resolve`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bottega.core.extras import require
from bottega.core.keys import check_key_columns, key_column, rename_from_keys, rename_to_keys
from bottega.feature_store.offline.pit_duckdb import column_name, status_column
from bottega.feature_store.on_demand import OnDemandTransform, add_on_demand_columns
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType

if TYPE_CHECKING:
    from bottega.sdk import Client


def schemas_from_resolution(resolution: Any) -> dict[tuple[str, str], GroupSchema]:
    """GroupSchemas of the stored groups of the API's `Resolution` (entity keys in order, every feature's type,
    max age); on-demand groups are computed, not stored, and have none."""
    schemas = {}
    for group in resolution.groups:
        if getattr(group, "on_demand", None) is not None:
            continue
        schema = GroupSchema(
            project=group.project,
            name=group.group,
            entity_keys=tuple((k, ValueType(v)) for k, v in group.entity.join_keys.items()),
            features=tuple((f, ValueType(t)) for f, t in group.features.items()),
            max_age=timedelta(seconds=group.max_age_seconds),
        )
        schemas[schema.key] = schema
    return schemas


def read_labels(label_source: Any) -> Any:
    """A pyarrow Table from a Parquet/CSV path, a pandas DataFrame or a pyarrow Table."""
    import pyarrow as pa

    if isinstance(label_source, pa.Table):
        return label_source
    if isinstance(label_source, str | Path):
        import duckdb

        path = str(label_source).replace("'", "''")
        reader = "read_csv_auto" if str(label_source).endswith(".csv") else "read_parquet"
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            return con.sql(f"SELECT * FROM {reader}('{path}')").to_arrow_table()
        finally:
            con.close()
    return pa.Table.from_pandas(label_source, preserve_index=False)


def get_training_set(
    client: Client,
    label_source: Any,
    features: Sequence[str | FeatureRef],
    *,
    timestamp_column: str = "timestamp",
    offline_root: str | Path | None = None,
    engine: Literal["duckdb", "spark"] = "duckdb",
    spark: Any = None,
    on_duplicates: str = "warn",
    entity_keys: Sequence[str] | None = None,
    with_status: bool = False,
    key_columns: Mapping[str, str] | None = None,
) -> Any:
    """The label rows with one column per feature (`<group>__<feature>`), point-in-time correct, as pyarrow.

    Duplicate label rows (exact copies) and conflicting ones (same entity keys and timestamp, other values) are
    counted first (`bottega.feature_store.labels`): `on_duplicates` `warn` keeps them and logs, `keep` keeps them,
    `error` refuses the table. The counts ride in the result's schema metadata: `labels.label_duplicates(table)`.
    `entity_keys` defaults to the join keys of the features' entities. `with_status` adds, per joined group, a
    `<group>___status` column: FRESH / STALE / MISSING of the row found, as the online store would judge it.
    `key_columns` maps join keys to the label table's columns when it names them otherwise (`{"user_id": "userId"}`,
    see `bottega.core.keys`); the result keeps the label table's names."""
    require("duckdb", "store")
    from bottega.feature_store.config import StoreSettings
    from bottega.feature_store.labels import check_labels, with_duplicates
    from bottega.feature_store.offline.store import OfflineStore

    refs = [f if isinstance(f, FeatureRef) else FeatureRef.parse(f) for f in features]
    if not refs:
        raise ValueError("ask for at least one feature reference")
    resolution = client.features.resolve([str(r) for r in refs])
    schemas = schemas_from_resolution(resolution)
    transforms = {(g.project, g.group): OnDemandTransform.from_resolved(g) for g in resolution.groups if g.on_demand}
    stored = [r for r in refs if r.group_key not in transforms]
    computed: dict[tuple[str, str], list[str]] = {}
    for ref in refs:
        if ref.group_key in transforms:
            computed.setdefault(ref.group_key, []).append(ref.feature)
    inputs = [ref for key in computed for ref in transforms[key].inputs.values()]
    joined = list(dict.fromkeys([*stored, *inputs]))
    store = OfflineStore(offline_root) if offline_root else StoreSettings.from_env().offline()
    labels = read_labels(label_source)
    join_keys = list(dict.fromkeys(k for g in resolution.groups for k in g.entity.join_keys))
    if key_columns:
        check_key_columns(key_columns, join_keys, "key_columns")
    if entity_keys is None:
        entity_keys = [key_column(key_columns, k) for k in join_keys]
    found = check_labels(labels, entity_keys, timestamp_column, on_duplicates, what="the label table")
    table = rename_to_keys(labels, key_columns, "the label table")
    if joined:
        table = _join(store, table, joined, schemas, timestamp_column, engine, spark, with_status)
    table = add_on_demand_columns(table, [(transforms[key], names) for key, names in computed.items()], column_name)
    table = rename_from_keys(table, key_columns)
    wanted = [*labels.column_names, *(column_name(r) for r in refs)]
    if with_status and joined:
        wanted += list(dict.fromkeys(status_column(r.group) for r in joined))
    return with_duplicates(table.select(list(dict.fromkeys(wanted))), found)


def _join(
    store: Any,
    labels: Any,
    refs: list[FeatureRef],
    schemas: dict[tuple[str, str], GroupSchema],
    timestamp_column: str,
    engine: str,
    spark: Any,
    with_status: bool = False,
) -> Any:
    if engine == "spark":
        if spark is None:
            raise ValueError("engine='spark' needs a SparkSession: pass spark=...")
        from bottega.feature_store.offline.pit_spark import point_in_time_join_spark

        return point_in_time_join_spark(
            spark, store, labels, refs, schemas, timestamp_column=timestamp_column, with_status=with_status
        )
    from bottega.feature_store.offline.pit_duckdb import point_in_time_join

    return point_in_time_join(store, labels, refs, schemas, timestamp_column=timestamp_column, with_status=with_status)
