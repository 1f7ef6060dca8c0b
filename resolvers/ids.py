"""Parsing the ids clients send: global ids of the type each argument names."""

from __future__ import annotations

from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.pages import check_first
from domain.validation import is_key
from schema.global_ids import parse


def parse_id(raw: str, type_name: str | tuple[str, ...], *, field: str) -> int:
    """The key of ``raw``, a global id of ``type_name``; otherwise a ``BAD_USER_INPUT`` error
    naming ``field`` (a malformed id, or the id of another type)."""
    return parse(raw, type_name, field=field)


def optional_id(raw: str | None, type_name: str, *, field: str) -> int | None:
    return None if raw is None else parse_id(raw, type_name, field=field)


def parse_ids(raws: list[str], type_name: str, *, field: str) -> list[int]:
    return [parse_id(raw, type_name, field=f"{field}.{i}") for i, raw in enumerate(raws)]


def parse_cursor(raw: str | None, *, field: str = "after") -> int | None:
    """A page cursor this API handed out (opaque to clients), or a ``BAD_USER_INPUT`` error."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if not is_key(value):
        raise DomainError(ErrorCode.BAD_USER_INPUT, "Not a cursor from this list.", field=field)
    return value


def page_arguments(first: int, after: str | None) -> dict[str, Any]:
    """``first`` and ``after`` of a connection, checked before anything is read (whatever the
    other arguments): 1 to ``domain.pages.MAX_PAGE``, and a cursor this API handed out; else
    ``BAD_USER_INPUT``."""
    check_first(first)
    return {"first": first, "after": parse_cursor(after)}
