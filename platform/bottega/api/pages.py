"""The paginated list envelope `{items, total, limit, offset, next_offset}` (pydantic only: the SDK uses it too)."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None

    @classmethod
    def of(cls, items: list[T], total: int, params: PageParams) -> Page[T]:
        following = params.offset + len(items)
        return cls(
            items=items,
            total=total,
            limit=params.limit,
            offset=params.offset,
            next_offset=following if following < total else None,
        )
