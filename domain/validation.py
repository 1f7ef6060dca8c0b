"""Small input checks shared by services; each raises a ``DomainError`` naming the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from domain.errors import DomainError, ErrorCode

CENT = Decimal("0.01")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def clean_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    text = value.strip()
    if required and not text:
        raise DomainError(ErrorCode.REQUIRED, "This value must not be blank.", field=field)
    if len(text) > max_length:
        raise DomainError(
            ErrorCode.TOO_LONG, f"At most {max_length} characters are allowed.", field=field
        )
    if any(ord(ch) < 32 for ch in text):
        raise DomainError(ErrorCode.INVALID, "Control characters are not allowed.", field=field)
    return text


def clean_email(value: str, *, field: str = "email") -> str:
    email = clean_text(value, field=field, max_length=254).lower()
    if not _EMAIL.match(email):
        raise DomainError(ErrorCode.INVALID, "This is not an e-mail address.", field=field)
    return email


def positive_int(value: int, *, field: str, maximum: int = 1_000_000) -> int:
    if not 0 < value <= maximum:
        raise DomainError(
            ErrorCode.INVALID, f"Must be a whole number from 1 to {maximum}.", field=field
        )
    return value


# The largest key a table can hold: integer keys are 32-bit (PostgreSQL refuses larger values
# for them rather than finding nothing). Big-integer tables (orders, lines) are far from it.
MAX_KEY = 2**31 - 1


def is_key(value: int) -> bool:
    """Whether ``value`` can be the primary key of a row (so looking it up is meaningful)."""
    return 0 < value <= MAX_KEY


MAX_AMOUNT = Decimal("1e12")


def money(value: Decimal, *, field: str, allow_zero: bool = False) -> Decimal:
    """A non-negative amount with at most two decimals (positive unless ``allow_zero``)."""
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise DomainError(ErrorCode.INVALID, "Must be a positive amount.", field=field)
    if value >= MAX_AMOUNT:  # before quantize, which cannot represent huge values
        raise DomainError(ErrorCode.INVALID, "The amount is too large.", field=field)
    if value != value.quantize(CENT):
        raise DomainError(ErrorCode.INVALID, "At most two decimal places.", field=field)
    return value.quantize(CENT)


def utc_datetime(value: datetime, *, field: str, naive_is_utc: bool = False) -> datetime:
    """``value`` in UTC. A time without zone is refused (or taken as UTC with ``naive_is_utc``);
    one that leaves the representable years when moved to UTC is refused too."""
    if value.tzinfo is None:
        if not naive_is_utc:
            raise DomainError(ErrorCode.INVALID, "Give the time with a time zone.", field=field)
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise DomainError(ErrorCode.INVALID, "The time is out of range.", field=field) from None


def filter_time(value: datetime | None, *, field: str) -> datetime | None:
    """A list filter's time bound in UTC (none: no bound; without zone: taken as UTC)."""
    return None if value is None else utc_datetime(value, field=field, naive_is_utc=True)


def currency(value: str, *, field: str = "currency") -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise DomainError(ErrorCode.INVALID, "A three-letter ISO 4217 code.", field=field)
    return code


def country(value: str, *, field: str) -> str:
    code = value.strip().upper()
    if code != "*" and (len(code) != 2 or not code.isalpha()):
        raise DomainError(ErrorCode.INVALID, "A two-letter ISO 3166 code (or *).", field=field)
    return code
