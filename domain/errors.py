"""Errors a business command can end with. The API turns them into typed ``userErrors``."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Machine-readable reasons a command was refused. Part of the public API; what each means
    is ``MEANINGS`` (the README's table is printed from it)."""

    INVALID = "INVALID"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    TOO_MANY = "TOO_MANY"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FORBIDDEN = "FORBIDDEN"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
    CONFLICT = "CONFLICT"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INACTIVE = "INACTIVE"
    ATTRIBUTES_MISMATCH = "ATTRIBUTES_MISMATCH"
    NOT_DELIVERABLE = "NOT_DELIVERABLE"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    NO_WAREHOUSE = "NO_WAREHOUSE"
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"


MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.INVALID: "A value is malformed or out of range.",
    ErrorCode.BAD_USER_INPUT: "An id that is not a gid:// id, or names another type.",
    ErrorCode.REQUIRED: "A value is missing or blank.",
    ErrorCode.TOO_LONG: "A string exceeds its maximum length.",
    ErrorCode.TOO_MANY: "A list, or an object's history, would pass its documented maximum.",
    ErrorCode.NOT_FOUND: "No such object, or not visible to the caller.",
    ErrorCode.ALREADY_EXISTS: "A unique value is taken.",
    ErrorCode.FORBIDDEN: "The caller's role may not do this.",
    ErrorCode.ILLEGAL_TRANSITION: "The object's status does not allow it.",
    ErrorCode.CONFLICT: "The object changed concurrently; reload and retry.",
    ErrorCode.INSUFFICIENT_FUNDS: "The wallet cannot cover the charge.",
    ErrorCode.CURRENCY_MISMATCH: "Amounts in different currencies.",
    ErrorCode.INACTIVE: "A SKU, product or method that is switched off.",
    ErrorCode.ATTRIBUTES_MISMATCH: "A store variant does not match the SKU.",
    ErrorCode.NOT_DELIVERABLE: "No freight rule for the destination.",
    ErrorCode.UPSTREAM_FAILED: "A store or warehouse API refused or did not answer.",
    ErrorCode.NO_WAREHOUSE: "No third-party warehouse fulfils this distributor.",
    ErrorCode.INSUFFICIENT_STOCK: "The buyer's cloud-warehouse stock is short.",
}


class DomainError(Exception):
    """A refused command. ``field`` names the input it is about (dotted path), if any."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class ValidationErrors(DomainError):
    """Several input problems at once; nothing was changed."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__(errors[0].code, errors[0].message, field=errors[0].field)
        self.errors = errors


def not_found(what: str, *, field: str | None = None) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"{what} not found.", field=field)


class SubscriptionEnded(Exception):
    """An event stream cannot go on (its token was revoked); the client should reconnect.
    Raised by the event hub (``integrations/bus/hub.py``), answered by the subscription
    resolvers."""
