"""Small input checks shared by services; each raises a ``DomainError`` naming the field."""

from __future__ import annotations

import re

from domain.errors import DomainError, ErrorCode

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
