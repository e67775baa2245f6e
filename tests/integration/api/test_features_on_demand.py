"""On-demand groups in the catalog, on both backends: registration checks, resolution with their inputs,
versioning of request features, and the guards that keep the stored features they read in place."""

from __future__ import annotations

from typing import Any

import pytest
from api_harness import ApiHarness

from bottega.core.errors import Conflict, InvalidInput
from bottega.sdk import Client

SHA = "ab" * 32


def stored(name: str, features: list[str], **over: Any) -> dict[str, Any]:
    return {
        "kind": "batch",
        "name": name,
        "entity": "restaurant",
        "max_age": "2d",
        "features": [{"name": f, "dtype": "float"} for f in features],
        "source": {"path": f"/data/{name}.parquet"},
        "transform_sql": "SELECT * FROM source",
        **over,
    }


def computed(name: str = "prep_ratio", **over: Any) -> dict[str, Any]:
    return {
        "name": name,  # no kind: a definition with a function is on-demand
        "entity": "restaurant",
        "function": "eats_transforms.ratios:prep_ratio",
        "inputs": {"prep": "eats:daily_prep:avg_prep", "clicks": "ads:ad_stats:ctr"},
        "request_features": [{"name": "distance_km", "dtype": "float"}],
        "features": [{"name": "ratio", "dtype": "float"}, {"name": "far", "dtype": "bool"}],
        "code_sha256": SHA,
        **over,
    }


@pytest.fixture
def alice(api: ApiHarness) -> Client:
    """alice owns eats and reads ads (a viewer there); both have a restaurant entity and a stored group."""
    client = api.sdk(api.project("eats", owner="alice"))
    bob = api.sdk(api.project("ads", owner="bob"))
    api.user("alice", "ads", "viewer")
    for sdk, project, group, features in (
        (client, "eats", "daily_prep", ["avg_prep", "n_orders"]),
        (bob, "ads", "ad_stats", ["ctr"]),
    ):
        sdk.features.put_entity(project, "restaurant", {"restaurant_id": "int"})
        sdk.features.register_group(project, stored(group, features))
    return client


def test_register_and_resolve_with_inputs(alice: Client) -> None:
    registered = alice.features.register_group("eats", computed(), fingerprint=False)
    assert (registered.kind, registered.version, registered.outcome) == ("on_demand", 1, "created")
    assert registered.refs == ["eats:prep_ratio:ratio", "eats:prep_ratio:far"]
    assert registered.definition.model_dump()["code_sha256"] == SHA

    resolution = alice.features.resolve(["eats:prep_ratio:far", "eats:daily_prep:n_orders"])
    assert [(f.ref, f.kind, f.dtype) for f in resolution.features] == [
        ("eats:prep_ratio:far", "on_demand", "bool"),
        ("eats:daily_prep:n_orders", "batch", "float"),
    ]
    groups = {(g.project, g.group): g for g in resolution.groups}
    # The requested groups, then the stored group the transform reads from another project.
    assert list(groups) == [("eats", "prep_ratio"), ("eats", "daily_prep"), ("ads", "ad_stats")]
    spec = groups[("eats", "prep_ratio")].on_demand
    assert spec is not None
    assert spec.function == "eats_transforms.ratios:prep_ratio"
    assert spec.inputs == {"prep": "eats:daily_prep:avg_prep", "clicks": "ads:ad_stats:ctr"}
    assert spec.request_features == {"distance_km": "float"}
    assert (spec.mode, spec.code_sha256) == ("row", SHA)
    assert groups[("ads", "ad_stats")].on_demand is None
    assert groups[("ads", "ad_stats")].max_age_seconds == 172800

    hits = alice.features.search(kind="on_demand")
    assert [h.ref for h in hits.items] == ["eats:prep_ratio:ratio", "eats:prep_ratio:far"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": {"prep": "eats:nope:avg_prep"}}, "eats:nope does not exist"),
        ({"inputs": {"prep": "eats:daily_prep:nope"}}, "eats:daily_prep:nope, which does not exist"),
        ({"inputs": {"prep": "hidden:daily_prep:avg_prep"}}, "'hidden' does not exist or you cannot read it"),
    ],
)
def test_inputs_must_be_readable_stored_features(alice: Client, change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        alice.features.register_group("eats", computed(**change), fingerprint=False)


def test_on_demand_groups_do_not_chain(alice: Client) -> None:
    alice.features.register_group("eats", computed(), fingerprint=False)
    with pytest.raises(InvalidInput, match="is itself on-demand"):
        alice.features.register_group(
            "eats", computed("second", inputs={"r": "eats:prep_ratio:ratio"}), fingerprint=False
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (computed(function="not a function"), "function"),
        (computed(inputs={}, request_features=[]), "needs inputs or request_features"),
        (computed(request_features=[{"name": "prep", "dtype": "int"}]), "both an input and a request feature"),
        (computed(code_sha256="xyz"), "code_sha256"),
        (computed(inputs={"prep": "not-a-ref"}), "inputs"),
    ],
)
def test_bad_definitions_name_the_field(api: ApiHarness, alice: Client, body: dict[str, Any], field: str) -> None:
    response = api.call("POST", "/api/v1/projects/eats/features/groups", api.tokens["alice"], json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_versioning_of_request_features_and_code(alice: Client) -> None:
    alice.features.register_group("eats", computed(), fingerprint=False)
    changed = alice.features.register_group("eats", computed(code_sha256="cd" * 32), fingerprint=False)
    assert (changed.version, changed.outcome, changed.breaking) == (2, "updated", False)
    assert changed.changes == ["code_sha256 changed"]
    more = [{"name": "distance_km", "dtype": "float"}, {"name": "hour", "dtype": "int"}]
    with pytest.raises(Conflict, match="request feature hour added"):
        alice.features.register_group("eats", computed(code_sha256="cd" * 32, request_features=more))
    fewer = alice.features.register_group("eats", computed(code_sha256="cd" * 32, request_features=[]))
    assert fewer.changes == ["request feature distance_km removed"]
    assert not fewer.breaking


def test_stored_features_read_by_a_transform_stay(alice: Client) -> None:
    alice.features.register_group("eats", computed(), fingerprint=False)
    with pytest.raises(Conflict, match="read by on-demand group eats:prep_ratio"):
        alice.features.delete_group("eats", "daily_prep")
    # n_orders is not read: dropping it is only a breaking change; avg_prep is read: refused even as a new version.
    dropped = alice.features.register_group("eats", stored("daily_prep", ["avg_prep"]), new_version=True)
    assert dropped.breaking
    with pytest.raises(Conflict, match="on-demand group eats:prep_ratio reads avg_prep"):
        alice.features.register_group("eats", stored("daily_prep", ["other"]), new_version=True)
    alice.features.delete_group("eats", "prep_ratio")
    alice.features.delete_group("eats", "daily_prep")


def test_apply_registers_on_demand_groups_after_the_stored_ones(api: ApiHarness) -> None:
    sdk = api.sdk(api.project("shop", owner="dana"))
    applied = sdk.features.register(
        {
            "project": "shop",
            "entities": [{"name": "restaurant", "join_keys": {"restaurant_id": "int"}}],
            # The on-demand group comes first in the file and reads a group of the same file.
            "on_demand_groups": [computed(inputs={"prep": "shop:prep:avg_prep"})],
            "batch_groups": [stored("prep", ["avg_prep"])],
        },
        fingerprint=False,
    )
    assert [(g.name, g.kind, g.outcome) for g in applied.groups] == [
        ("prep", "batch", "created"),
        ("prep_ratio", "on_demand", "created"),
    ]
