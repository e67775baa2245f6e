"""Pagination for list endpoints: `limit` and `offset` query parameters (the Page model lives in pages.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from bottega.api.pages import PageParams


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)
