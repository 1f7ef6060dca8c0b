"""Children loaded in bulk by a list resolver, carried on the object so their fields need no await.

A type with such children has a private ``prefetched`` dict. Its resolver for a child returns the
prefetched value when there is one, else the awaitable that loads it through a DataLoader
(graphql-core awaits what a plain resolver returns). A page then resolves synchronously.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import Any, TypeVar

import strawberry

T = TypeVar("T")

MaybeAwaitable = T | Awaitable[T]


def prefetched_slot() -> Any:
    """The ``prefetched`` private field of a type: child name → value."""
    return dataclasses.field(default_factory=dict)


Prefetched = strawberry.Private[dict[str, Any]]
