"""Domain errors travel as problem+json and come back as the same class."""

from __future__ import annotations

import httpx
import pytest

from bottega.core.errors import (
    BottegaError,
    Conflict,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    StaleRevision,
    error_class_for,
)
from bottega.sdk.transport import raise_for_problem


def test_problem_document_shape() -> None:
    problem = Conflict("project 'eats' already exists", field="name").to_problem()
    assert problem == {
        "type": "urn:bottega:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "project 'eats' already exists",
        "field": "name",
    }


@pytest.mark.parametrize(
    ("problem_type", "status", "expected"),
    [
        ("urn:bottega:problem:not-found", 404, NotFound),
        ("urn:bottega:problem:conflict", 400, Conflict),  # the type wins over the status
        (None, 413, PayloadTooLarge),
        ("about:blank", 599, BottegaError),
    ],
)
def test_error_class_for(problem_type: str | None, status: int, expected: type[BottegaError]) -> None:
    assert error_class_for(problem_type, status) is expected


def test_sdk_reraises_the_server_class_with_its_detail_and_extras() -> None:
    response = httpx.Response(
        409,
        json={"type": "urn:bottega:problem:conflict", "status": 409, "detail": "stale", "current_revision": 4},
        request=httpx.Request("PUT", "http://x/api/v1/y"),
    )
    with pytest.raises(Conflict, match="stale") as info:
        raise_for_problem(response)
    assert info.value.extra == {"current_revision": 4}


def test_sdk_error_for_a_non_json_failure() -> None:
    response = httpx.Response(502, text="bad gateway", request=httpx.Request("GET", "http://x/"))
    with pytest.raises(BottegaError, match="bad gateway"):
        raise_for_problem(response)


def test_domain_subclasses_come_back_typed_by_slug() -> None:
    problem = StaleRevision("stale", current_revision=4, expected_revision=3).to_problem()
    assert (problem["type"], problem["status"]) == ("urn:bottega:problem:stale-revision", 409)
    response = httpx.Response(409, json=problem, request=httpx.Request("PUT", "http://x/api/v1/y"))
    with pytest.raises(Conflict) as info:  # still a Conflict for callers that catch the general class
        raise_for_problem(response)
    assert type(info.value) is StaleRevision
    assert (info.value.current_revision, info.value.expected_revision, info.value.http_status) == (4, 3, 409)
    assert error_class_for("urn:bottega:problem:model-not-found", 404) is ModelNotFound
    assert issubclass(ModelNotFound, NotFound)
    assert NotFound("gone").http_status == 404
