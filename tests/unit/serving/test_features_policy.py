"""Freshness policies from a deployment spec's `features` mapping."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bottega.serving.features.policy import FeaturePolicy, parse_policies


def test_defaults_and_full_entries() -> None:
    assert parse_policies({}) == {}
    assert parse_policies({"features": None, "replicas": 2}) == {}
    spec = {
        "features": {
            "eats:daily_prep:avg_prep": {"on_missing": "default", "on_stale": "default", "default": 20},
            "eats:daily_prep:n_orders": {"on_missing": "reject", "on_stale": "reject"},
            "eats:daily_prep:open": None,
            "eats:daily_prep:late": {},
        }
    }
    policies = parse_policies(spec)
    assert policies["eats:daily_prep:avg_prep"] == FeaturePolicy("default", "default", 20.0)
    assert isinstance(policies["eats:daily_prep:avg_prep"].default, float)
    assert policies["eats:daily_prep:n_orders"] == FeaturePolicy("reject", "reject", None)
    assert policies["eats:daily_prep:open"] == FeaturePolicy() == policies["eats:daily_prep:late"]
    assert FeaturePolicy().on_stale == "null"  # by default a stale value is served as training saw it: null
    assert math.isnan(FeaturePolicy().fill)
    assert policies["eats:daily_prep:avg_prep"].fill == 20.0


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (["eats:g:f"], r"features: must be a mapping"),
        ({"not a ref": {}}, r"features\.not a ref: .*project:group:feature"),
        ({"eats:g:f": "reject"}, r"features\.eats:g:f: must be a mapping"),
        ({"eats:g:f": {"on_missing": "serve"}}, r"features\.eats:g:f\.on_missing: must be one of default, reject"),
        ({"eats:g:f": {"on_stale": "drop"}}, r"on_stale: must be one of null, serve, default, reject"),
        ({"eats:g:f": {"default": "zero"}}, r"features\.eats:g:f\.default: must be a finite number"),
        ({"eats:g:f": {"default": True}}, r"features\.eats:g:f\.default"),
        ({"eats:g:f": {"default": float("inf")}}, r"features\.eats:g:f\.default"),
        ({"eats:g:f": {"on_mising": "reject"}}, r"features\.eats:g:f: unknown field 'on_mising'"),
    ],
)
def test_bad_entries_name_the_ref_and_field(features: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policies({"features": features})
