"""Parsing the IDs clients send."""

from __future__ import annotations

from domain.errors import DomainError, ErrorCode
from domain.validation import is_key


def parse_id(raw: str, *, field: str) -> int:
    """A positive integer id, or a NOT_FOUND error naming ``field`` (ids are opaque to clients)."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise DomainError(ErrorCode.NOT_FOUND, "No object has this id.", field=field) from None
    if not is_key(value):
        raise DomainError(ErrorCode.NOT_FOUND, "No object has this id.", field=field)
    return value


def optional_id(raw: str | None, *, field: str) -> int | None:
    return None if raw is None else parse_id(raw, field=field)


def parse_ids(raws: list[str], *, field: str) -> list[int]:
    return [parse_id(raw, field=f"{field}.{i}") for i, raw in enumerate(raws)]
