"""One helper turns pydantic errors into `errors[]` entries and a detail line, for every 422 path."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from bottega.core.errors import InvalidInput
from bottega.core.names import PROJECT_PATTERN, field_errors
from bottega.sdk.models import _body


class Thing(BaseModel):
    name: str = Field(pattern=PROJECT_PATTERN)
    size: int


def test_entries_name_the_field_state_the_rule_and_keep_the_pattern() -> None:
    with pytest.raises(ValidationError) as caught:
        Thing.model_validate({"name": "Bad-Name"})
    entries, detail = field_errors(caught.value.errors(), "body.spec")
    assert [e["field"] for e in entries] == ["body.spec.name", "body.spec.size"]
    assert entries[0]["pattern"] == PROJECT_PATTERN
    assert "lowercase letters, digits and _ . -" in entries[0]["message"]
    assert "'Bad-Name'" in entries[0]["message"]
    assert detail == f"{entries[0]['field']}: {entries[0]['message']}; body.spec.size: is required"


def test_the_sdk_refuses_a_body_with_the_same_entries() -> None:
    with pytest.raises(InvalidInput) as caught:
        _body(Thing, name="Bad-Name", size=1)
    assert caught.value.extra["errors"][0]["pattern"] == PROJECT_PATTERN
    assert caught.value.detail.startswith("name: must be lowercase letters")
