"""The error convention of every mutation payload."""

from __future__ import annotations

import strawberry

from domain.errors import DomainError, ValidationErrors
from schema.types.enums import ErrorCode


@strawberry.type(description="Why a mutation did nothing. The mutation changed no data.")
class UserError:
    code: ErrorCode = strawberry.field(description="Machine-readable reason.")
    field: str | None = strawberry.field(
        description="The argument it is about, as a dotted path: `input.lines.0.quantity` in a "
        "mutation's `input` object, or the argument's name (`orderId`)."
    )
    message: str = strawberry.field(description="Human-readable explanation.")

    @classmethod
    def from_domain(cls, error: DomainError, *, prefix: str = "") -> list[UserError]:
        errors = error.errors if isinstance(error, ValidationErrors) else [error]
        return [
            cls(
                code=ErrorCode(e.code),
                field=(f"{prefix}.{e.field}" if prefix else e.field) if e.field else None,
                message=e.message,
            )
            for e in errors
        ]
