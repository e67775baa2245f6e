"""On-demand transforms: the same function gives the same values in row and pandas mode, over a training set
built through the API (embedded SQLite catalog, DuckDB offline store) and over rows as the prediction service
passes them; outputs are type-checked; code that changed since registration is refused."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from api_harness import ApiHarness, harness, migrated_sqlite

from bottega.feature_store.offline.store import OfflineStore
from bottega.feature_store.on_demand import OnDemandError, OnDemandTransform
from bottega.feature_store.training import get_training_set
from bottega.feature_store.types import FeatureRef, GroupSchema, ValueType
from bottega.sdk import Client

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PREP = GroupSchema(
    "eats", "daily_prep", (("restaurant_id", ValueType.int),), (("avg_prep", ValueType.float),), timedelta(days=2)
)
TRANSFORMS = """
import pandas as pd


def row_ratio(row):
    prep = row["prep"]
    ratio = None if prep is None else prep / (1.0 + row["distance_km"])
    return {"ratio": ratio, "far": row["distance_km"] > 5.0, "label": f"r{int(row['distance_km'])}"}


def frame_ratio(frame):
    return pd.DataFrame(
        {
            "ratio": frame["prep"] / (1.0 + frame["distance_km"]),
            "far": frame["distance_km"] > 5.0,
            "label": "r" + frame["distance_km"].astype(int).astype(str),
        }
    )


def wrong_type(row):
    return {"ratio": "fast", "far": True, "label": "x"}


def missing_output(row):
    return {"ratio": 1.0}
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user module of transforms, importable under a name no other test uses."""
    name = f"odt_{uuid.uuid4().hex[:10]}"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{name}.py").write_text(TRANSFORMS)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    return name


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    url = migrated_sqlite(tmp_path)
    with harness(url, tmp_path / "home") as h:
        yield h


def group(module: str, function: str, mode: str = "row", **over: Any) -> dict[str, Any]:
    return {
        "name": f"ratio_{mode}",
        "entity": "restaurant",
        "function": f"{module}:{function}",
        "mode": mode,
        "inputs": {"prep": "eats:daily_prep:avg_prep"},
        "request_features": [{"name": "distance_km", "dtype": "float"}],
        "features": [
            {"name": "ratio", "dtype": "float"},
            {"name": "far", "dtype": "bool"},
            {"name": "label", "dtype": "string"},
        ],
        **over,
    }


@pytest.fixture
def catalog(api: ApiHarness, module: str, tmp_path: Path) -> tuple[Client, OfflineStore]:
    sdk = api.sdk(api.project("eats"))
    sdk.features.put_entity("eats", "restaurant", {"restaurant_id": "int"})
    batch = {
        "name": "daily_prep",
        "entity": "restaurant",
        "max_age": "2d",
        "features": [{"name": "avg_prep", "dtype": "float"}],
        "source": {"path": "/unused.parquet"},
        "transform_sql": "SELECT * FROM source",
    }
    sdk.features.register_group("eats", batch)
    sdk.features.register_group("eats", group(module, "row_ratio"))  # fingerprinted from the imported module
    sdk.features.register_group("eats", group(module, "frame_ratio", "pandas"))
    store = OfflineStore(tmp_path / "offline")
    store.upsert(
        PREP,
        pa.table(
            {
                "restaurant_id": [1, 2],
                "avg_prep": [12.0, 30.0],
                "event_time": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    return sdk, store


def labels() -> pa.Table:
    return pa.table(
        {
            "restaurant_id": [1, 2, 3, 1],
            "distance_km": [2.0, 9.0, 1.0, 3.0],
            "timestamp": pa.array(
                [T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=3), T0 - timedelta(hours=1)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def test_training_set_computes_on_demand_features(catalog: tuple[Client, OfflineStore]) -> None:
    sdk, store = catalog
    refs = ["eats:ratio_row:ratio", "eats:ratio_row:far", "eats:daily_prep:avg_prep", "eats:ratio_row:label"]
    table = get_training_set(sdk, labels(), refs, offline_root=store.root)
    assert table.column_names == [
        "restaurant_id",
        "distance_km",
        "timestamp",
        "ratio_row__ratio",
        "ratio_row__far",
        "daily_prep__avg_prep",
        "ratio_row__label",
    ]
    # Restaurant 3 has no stored value and the last label row predates the first one: the input is None there.
    assert table.column("ratio_row__ratio").to_pylist() == [12.0 / 3.0, 30.0 / 10.0, None, None]
    assert table.column("ratio_row__far").to_pylist() == [False, True, False, False]
    assert table.column("ratio_row__label").to_pylist() == ["r2", "r9", "r1", "r3"]
    assert table.schema.field("ratio_row__far").type == pa.bool_()


def test_row_and_pandas_modes_agree_offline_and_online(catalog: tuple[Client, OfflineStore]) -> None:
    sdk, store = catalog
    outputs = ["ratio", "far", "label"]
    row_set = get_training_set(sdk, labels(), [f"eats:ratio_row:{f}" for f in outputs], offline_root=store.root)
    frame_set = get_training_set(sdk, labels(), [f"eats:ratio_pandas:{f}" for f in outputs], offline_root=store.root)
    for name in outputs:
        assert row_set.column(f"ratio_row__{name}").to_pylist() == frame_set.column(f"ratio_pandas__{name}").to_pylist()

    # Online, the service hands the transform the request's rows with the values read from the online store.
    resolution = sdk.features.resolve(["eats:ratio_row:ratio", "eats:ratio_pandas:ratio"])
    transforms = [OnDemandTransform.from_resolved(g) for g in resolution.groups if g.on_demand]
    rows: list[dict[str, Any]] = [{"prep": 12.0, "distance_km": 2.0}, {"prep": None, "distance_km": 1.0}]
    online = [t.compute(t.load(), rows) for t in transforms]
    assert (
        online[0]
        == online[1]
        == [
            {"ratio": 4.0, "far": False, "label": "r2"},
            {"ratio": None, "far": False, "label": "r1"},
        ]
    )
    offline_first = {name: row_set.column(f"ratio_row__{name}")[0].as_py() for name in outputs}
    assert online[0][0] == offline_first


def test_request_features_must_be_in_the_labels(catalog: tuple[Client, OfflineStore]) -> None:
    sdk, store = catalog
    with pytest.raises(OnDemandError, match=r"needs request features \['distance_km'\]"):
        get_training_set(sdk, labels().drop_columns(["distance_km"]), ["eats:ratio_row:far"], offline_root=store.root)


@pytest.mark.parametrize(
    ("function", "message"),
    [("wrong_type", "feature 'ratio' must be float"), ("missing_output", "returned no 'far'")],
)
def test_outputs_are_checked(module: str, function: str, message: str) -> None:
    transform = OnDemandTransform(
        "eats",
        "bad",
        f"{module}:{function}",
        outputs=(("ratio", ValueType.float), ("far", ValueType.bool)),
        request_features={"distance_km": ValueType.float},
    )
    with pytest.raises(OnDemandError, match=message):
        transform.compute(transform.load(), [{"distance_km": 1.0}])


def test_changed_code_is_refused(catalog: tuple[Client, OfflineStore], module: str, tmp_path: Path) -> None:
    sdk, store = catalog
    path = tmp_path / "code" / f"{module}.py"
    path.write_text(path.read_text() + textwrap.dedent("\n\ndef added(row):\n    return row\n"))
    with pytest.raises(OnDemandError, match="changed since it was registered"):
        get_training_set(sdk, labels(), ["eats:ratio_row:far"], offline_root=store.root)
    # Registering again (a new version with the new fingerprint) makes it usable.
    again = sdk.features.register_group("eats", group(module, "row_ratio"))
    assert again.version == 2
    assert again.changes == ["code_sha256 changed"]
    assert get_training_set(sdk, labels(), ["eats:ratio_row:far"], offline_root=store.root).num_rows == 4


def test_stored_inputs_resolve_to_feature_refs(catalog: tuple[Client, OfflineStore]) -> None:
    sdk, _ = catalog
    group_read = next(g for g in sdk.features.resolve(["eats:ratio_row:far"]).groups if g.on_demand)
    transform = OnDemandTransform.from_resolved(group_read)
    assert transform.inputs == {"prep": FeatureRef("eats", "daily_prep", "avg_prep")}
    assert transform.request_features == {"distance_km": ValueType.float}
