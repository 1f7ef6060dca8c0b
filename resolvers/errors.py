"""Errors that reach clients as top-level GraphQL errors with a ``code`` extension.

Anything else raised in a resolver is masked (see ``service.errors``). Refusals of a command
are not errors here: they are the payload's ``userErrors`` (``resolvers.mutations``).
"""

from __future__ import annotations

from graphql import GraphQLError


class PublicError(GraphQLError):
    """Safe to show as it is, never masked. ``code`` goes to ``extensions.code``."""

    def __init__(self, message: str, *, code: str = "FORBIDDEN") -> None:
        super().__init__(message, extensions={"code": code})


def bad_input(message: str) -> PublicError:
    return PublicError(message, code="BAD_USER_INPUT")
