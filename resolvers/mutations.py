"""How every mutation turns a refused command into its payload's ``userErrors``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from domain.errors import DomainError
from schema.types.errors import UserError

P = TypeVar("P")


async def run_command(
    payload: Callable[..., P],
    command: Callable[[], Awaitable[dict[str, Any]]],
    *,
    in_input: bool = False,
) -> P:
    """Run ``command`` (which returns the payload's fields); a ``DomainError`` becomes userErrors.

    ``in_input``: the mutation takes one ``input`` object, so error fields are paths inside it
    (``input.lines.0.quantity``); otherwise they name the mutation's own arguments (``orderId``).

    The command runs its own transaction, so a refusal has already rolled everything back.
    """
    try:
        fields = await command()
    except DomainError as error:
        return payload(user_errors=UserError.from_domain(error, prefix="input" if in_input else ""))
    return payload(**fields)
