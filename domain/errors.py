"""Errors a business command can end with. The API turns them into typed ``userErrors``."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Machine-readable reasons a command was refused. Part of the public API."""

    INVALID = "INVALID"  # a value is malformed or out of range
    BAD_USER_INPUT = "BAD_USER_INPUT"  # an id that is not a gid:// id, or names another type
    REQUIRED = "REQUIRED"  # a value is missing or blank
    TOO_LONG = "TOO_LONG"  # a string exceeds its maximum length
    TOO_MANY = "TOO_MANY"  # a list, or an object's history, would pass its documented maximum
    NOT_FOUND = "NOT_FOUND"  # no such object, or not visible to the caller
    ALREADY_EXISTS = "ALREADY_EXISTS"  # a unique value is taken
    FORBIDDEN = "FORBIDDEN"  # the caller's role may not do this
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"  # the object's status does not allow it
    CONFLICT = "CONFLICT"  # the object changed concurrently; reload and retry
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"  # the wallet cannot cover the charge
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"  # amounts in different currencies
    INACTIVE = "INACTIVE"  # a SKU, product or method that is switched off
    ATTRIBUTES_MISMATCH = "ATTRIBUTES_MISMATCH"  # a store variant does not match the SKU
    NOT_DELIVERABLE = "NOT_DELIVERABLE"  # no freight rule for the destination
    UPSTREAM_FAILED = "UPSTREAM_FAILED"  # a store or warehouse API refused or did not answer
    NO_WAREHOUSE = "NO_WAREHOUSE"  # no third-party warehouse fulfils this distributor
    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"  # the buyer's cloud-warehouse stock is short


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
