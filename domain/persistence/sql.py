"""Small helpers for written-out statements."""

from __future__ import annotations

from collections.abc import Iterable


def placeholder(dialect: str, index: int) -> str:
    """The ``index``-th (from 1) parameter of a written-out statement in ``dialect``."""
    return f"${index}" if dialect == "postgres" else "?"


def int_list(values: Iterable[int]) -> str:
    """Integers for an ``IN (...)`` list: integers only, so nothing to escape."""
    return ",".join(str(int(v)) for v in values)
