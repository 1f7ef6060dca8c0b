"""Keyset pages of the lists the API offers: ``first`` rows after a cursor, never an offset.

A cursor is the key (``id``) of the last row of the page before: the next page is the rows
past it in id order, so a page costs one indexed statement however deep it lies, and rows
added or removed meanwhile neither repeat nor skip the rows of a later page. Visibility is the
caller's business (``domain.visibility`` scopes): this module only pages a query.
"""

from __future__ import annotations

from typing import TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from domain.errors import DomainError, ErrorCode

MAX_PAGE = 100
"""The most rows a page of a list holds (``first``)."""

M = TypeVar("M", bound=Model)


def check_first(first: int) -> None:
    """``first`` is 1 to ``MAX_PAGE``; anything else is the client's mistake."""
    if not 0 < first <= MAX_PAGE:
        raise DomainError(
            ErrorCode.BAD_USER_INPUT,
            f"`first` must be between 1 and {MAX_PAGE}.",
            field="first",
        )


async def keyset_page(
    query: QuerySet[M], *, first: int, after: int | None, newest_first: bool = False
) -> tuple[list[M], bool]:
    """The ``first`` rows of ``query`` in id order (descending when ``newest_first``) after the
    row whose id is ``after`` (None: from the start), and whether more rows follow.

    One statement: ``first + 1`` rows are read, the extra one only telling that there is a next
    page. ``query`` must not be sliced or ordered by the caller (the page orders it by id).
    """
    check_first(first)
    if after is not None:
        query = query.filter(id__lt=after) if newest_first else query.filter(id__gt=after)
    rows = await query.order_by("-id" if newest_first else "id").limit(first + 1)
    return rows[:first], len(rows) > first
