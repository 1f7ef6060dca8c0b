"""Small helpers for written-out statements."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def placeholder(dialect: str, index: int) -> str:
    """The ``index``-th (from 1) parameter of a written-out statement in ``dialect``."""
    return f"${index}" if dialect == "postgres" else "?"


def int_list(values: Iterable[int]) -> str:
    """Integers for an ``IN (...)`` list: integers only, so nothing to escape."""
    return ",".join(str(int(v)) for v in values)


def id_in(dialect: str, column: str, index: int, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """``column`` among ``ids``, and the parameters that adds. On PostgreSQL ``= ANY($index)``
    with the ids as one array parameter: the statement's text is the same whatever the ids, so
    the driver prepares it once (an inline list is a new statement, prepared again, each time).
    Elsewhere an inline ``IN`` list of integers."""
    if dialect == "postgres":
        return f"{column} = ANY(${index}::bigint[])", [[int(i) for i in ids]]
    return f"{column} IN ({int_list(ids)})", []
