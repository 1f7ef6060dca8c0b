"""Operations with one statement per database engine, and which of them ran."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from tortoise import connections

R = TypeVar("R")
Impl = Callable[..., Awaitable[Any]]

POSTGRES = "postgres"
OTHER = "other"  # SQLite, and any engine without a statement of its own
ENGINES = (POSTGRES, OTHER)

SWITCHES: dict[str, DialectSwitch[Any]] = {}
calls: Counter[tuple[str, str]] = Counter()  # (switch, engine) → runs, for the tests


def is_postgres() -> bool:
    return connections.get("default").capabilities.dialect == "postgres"


def engine() -> str:
    return POSTGRES if is_postgres() else OTHER


class DialectSwitch(Generic[R]):
    """One operation with an implementation per engine (``@op.postgres``, ``@op.other``);
    calling it runs the one for the current database."""

    def __init__(self, name: str) -> None:
        if name in SWITCHES:
            raise ValueError(f"dialect switch {name!r} is defined twice")
        self.name = name
        self.impls: dict[str, Impl] = {}
        SWITCHES[name] = self

    def postgres(self, impl: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        self.impls[POSTGRES] = impl
        return impl

    def other(self, impl: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        self.impls[OTHER] = impl
        return impl

    async def __call__(self, *args: Any, **kwargs: Any) -> R:
        current = engine()
        calls[self.name, current] += 1
        result: R = await self.impls[current](*args, **kwargs)
        return result
