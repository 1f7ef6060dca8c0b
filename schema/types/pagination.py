"""Cursor pagination shared by every connection (keyset cursors, never offsets).

``Connection[T]`` and ``Edge[T]`` are Relay's connection and edge of any node type; Strawberry
names each specialisation after its node: ``Connection[Product]`` is ``ProductConnection``,
``Edge[Product]`` is ``ProductEdge``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import strawberry


class _Keyed(Protocol):
    id: int


T = TypeVar("T")  # a node type
R = TypeVar("R", bound=_Keyed)  # a domain row, its key the cursor


class _Edge(Protocol):
    cursor: str


@strawberry.type(description="Where a page of a connection lies (Relay's cursor connections).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="Whether items come before this page: true for a page read `after` a "
        "cursor; read backwards (`last`/`before`, where a list offers it), whether more come "
        "before it."
    )
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def backwards(
        cls, edges: Sequence[_Edge], *, has_previous_page: bool, before: object
    ) -> PageInfo:
        """The page of ``edges`` read backwards (``last``) before the cursor ``before``."""
        return cls(
            has_next_page=before is not None,
            has_previous_page=has_previous_page,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )

    @classmethod
    def of(cls, edges: Sequence[_Edge], *, has_next_page: bool, after: object) -> PageInfo:
        """The page of ``edges`` read after the cursor ``after`` (None: from the start)."""
        return cls(
            has_next_page=has_next_page,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )


@strawberry.type(description="One item of a page and its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as `after` to read the items after this one."
    )
    node: T


@strawberry.type(
    description="A page of a list (Relay's cursor connection): `edges` (each item with its "
    "cursor) or `nodes` (the same items, without cursors), and `pageInfo`. Read on with "
    "`after: pageInfo.endCursor` while `pageInfo.hasNextPage`."
)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T] = strawberry.field(description="The nodes of `edges`, in the same order.")
    page_info: PageInfo

    @classmethod
    def of(
        cls,
        rows: Sequence[R],
        node: Callable[[R], T],
        *,
        has_next_page: bool,
        after: object,
    ) -> Connection[T]:
        """The page of ``rows`` (domain rows, each cursor its key) as ``node`` maps them, read
        after the cursor ``after`` (None: from the start)."""
        nodes = [node(row) for row in rows]
        edges = [Edge(cursor=str(row.id), node=n) for row, n in zip(rows, nodes, strict=True)]
        return cls(
            edges=edges,
            nodes=nodes,
            page_info=PageInfo.of(edges, has_next_page=has_next_page, after=after),
        )
