"""Routing inside the prediction service: weights, sticky keys, pinned versions and name lookup."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import pytest

from bottega.serving.routing import LoadedModel, Route, RoutingError, ServingState, sticky_value


def model(version: int, name: str = "eta", project: str = "eats") -> LoadedModel:
    return LoadedModel(
        project=project,
        model=name,
        version=version,
        runtime=cast(Any, None),
        plan=cast(Any, None),
        signature={},
        output_kind="probability",
    )


def route(weights: dict[int, int], shadows: tuple[int, ...] = (), name: str = "eta", project: str = "eats") -> Route:
    return Route(
        project=project,
        name=name,
        revision=1,
        targets=tuple(model(v, project=project) for v in weights),
        weights=tuple(weights.values()),
        shadows=tuple(model(v, project=project) for v in shadows),
    )


def test_random_split_follows_the_weights() -> None:
    r = route({1: 90, 2: 10})
    counts = Counter(r.choose().version for _ in range(20_000))
    assert 0.08 < counts[2] / 20_000 < 0.12
    assert set(counts) == {1, 2}


def test_zero_weight_target_gets_no_traffic_but_can_be_pinned() -> None:
    r = route({1: 100, 2: 0})
    assert {r.choose().version for _ in range(2_000)} == {1}
    assert r.choose(pinned="2").version == 2


def test_sticky_keys_always_land_on_the_same_version_and_split_by_weight() -> None:
    r = route({1: 50, 2: 50})
    first = {f"user-{i}": r.choose(routing_key=f"user-{i}").version for i in range(2_000)}
    again = {key: r.choose(routing_key=key).version for key in first}
    assert first == again
    share = sum(1 for v in first.values() if v == 2) / len(first)
    assert 0.45 < share < 0.55


def test_pinning_a_version_the_deployment_does_not_serve_names_what_it_serves() -> None:
    r = route({1: 100}, shadows=(3,))
    assert r.choose(pinned="eta:3").version == 3  # a shadow can be called directly
    with pytest.raises(RoutingError, match=r"does not serve '7'; it serves eta:1, eta:3"):
        r.choose(pinned="7")
    with pytest.raises(RoutingError, match="not a version number"):
        r.choose(pinned="latest")


def test_two_models_with_the_same_version_number_need_the_model_name() -> None:
    r = Route(
        project="eats",
        name="eta",
        revision=1,
        targets=(model(1, "eta"), model(1, "eta_v2")),
        weights=(50, 50),
    )
    with pytest.raises(RoutingError, match="ambiguous"):
        r.choose(pinned="1")
    assert r.choose(pinned="eta_v2:1").model == "eta_v2"


def test_weights_must_match_targets() -> None:
    with pytest.raises(ValueError, match="one weight per target"):
        Route(project="p", name="d", revision=1, targets=(model(1),), weights=(50, 50))


def test_a_name_in_two_projects_needs_the_project_path() -> None:
    a, b = route({1: 100}, project="eats"), route({2: 100}, project="rides")
    state = ServingState.of({("eats", "eta"): a, ("rides", "eta"): b}, 5)
    with pytest.raises(RoutingError, match="several projects"):
        state.find("eta")
    assert state.find("eta", "rides") is b
    assert state.find("nope") is None
    assert set(state.models()) == {("eats", "eta", 1), ("rides", "eta", 2)}


def test_sticky_value_reads_the_first_row() -> None:
    assert sticky_value([{"user_id": 42}, {"user_id": 7}], "user_id") == "42"
    assert sticky_value([{"other": 1}], "user_id") is None
    assert sticky_value([], "user_id") is None
