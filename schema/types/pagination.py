"""Cursor pagination shared by every connection (keyset cursors, never offsets)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import strawberry


class _Edge(Protocol):
    cursor: str


@strawberry.type(description="Where a page of a connection lies (Relay's cursor connections).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="Whether items come before this page: true for a page read `after` a "
        "cursor (pages are read forwards)."
    )
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, edges: Sequence[_Edge], *, has_next_page: bool, after: object) -> PageInfo:
        """The page of ``edges`` read after the cursor ``after`` (None: from the start)."""
        return cls(
            has_next_page=has_next_page,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
