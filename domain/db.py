"""Database configuration and the one way services open a transaction."""

from __future__ import annotations

import contextvars
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tortoise.backends.base.config_generator import expand_db_url
from tortoise.exceptions import DBConnectionError, OperationalError
from tortoise.transactions import in_transaction

from compat.tortoise import sqlite_writes_begin_at_once
from domain import tracing

sqlite_writes_begin_at_once()  # two processes on one SQLite file: see its docstring

MODELS_MODULE = "domain.models"
MIGRATIONS_MODULE = "domain.migrations"

# What a request meets when the database does not answer (refused, dropped, shut down): the
# HTTP endpoints answer 503, which clients retry, instead of a bare 500.
DATABASE_UNAVAILABLE = (DBConnectionError, OperationalError, OSError)


async def _keep_session(connection: Any) -> None:
    """What a pooled PostgreSQL connection needs when it goes back to the pool, beyond the
    rollback of an open transaction that asyncpg always does: nothing. asyncpg's default reset
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) is a round trip after every
    statement run outside a transaction, and this code leaves no session state behind: its
    advisory locks are transaction-scoped, it opens no cursors, listens on nothing and sets
    no session settings."""


def _connection(database_url: str, pool_size: int | None) -> str | dict[str, Any]:
    config = expand_db_url(database_url)
    if config["engine"] != "tortoise.backends.asyncpg":
        return database_url
    config["credentials"]["reset"] = _keep_session
    if pool_size is not None:
        config["credentials"]["maxsize"] = pool_size
    return config


def tortoise_config(database_url: str, *, pool_size: int | None = None) -> dict[str, Any]:
    """Tortoise config for one database holding the ``models`` app and its migrations;
    ``pool_size``: the most connections a PostgreSQL pool opens (tortoise's default, 5, when
    None)."""
    return {
        "connections": {"default": _connection(database_url, pool_size)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "migrations": MIGRATIONS_MODULE,
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# Used by the ``tortoise`` command line (``make migrations``): ``-c domain.db.TORTOISE_ORM``.
TORTOISE_ORM = tortoise_config(os.environ.get("DATABASE_URL", "sqlite://./supplygraph.sqlite3"))


_commit_hooks: dict[str, list[Callable[[], None]]] = {}
_pending_hooks: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "pending_commit_hooks", default=None
)


def add_commit_listener(listener: Callable[[], None], *, topic: str = "events") -> None:
    """Call ``listener`` after every outermost transaction that notified ``topic`` commits."""
    _commit_hooks.setdefault(topic, []).append(listener)


def remove_commit_listener(listener: Callable[[], None], *, topic: str = "events") -> None:
    hooks = _commit_hooks.get(topic, [])
    if listener in hooks:
        hooks.remove(listener)


def notify_after_commit(topic: str = "events") -> None:
    """Ask for the listeners of ``topic`` to run once the current transaction commits (each
    once, however often it was notified). Outside a transaction they run at once."""
    hooks = _commit_hooks.get(topic, [])
    pending = _pending_hooks.get()
    if pending is None:
        for hook in list(hooks):
            hook()
        return
    pending.extend(hook for hook in hooks if hook not in pending)


def inside_transaction() -> bool:
    """Whether the caller runs inside ``transaction()``."""
    return _pending_hooks.get() is not None


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """A database transaction; nested uses become savepoints of the outer one.

    On commit of the outermost transaction, commit listeners requested inside it run (the
    outbox publisher is one). On error everything rolls back and no listener runs. With
    tracing on, the outermost commit is a span of the current trace (``domain.tracing``).
    """
    if inside_transaction():
        async with in_transaction():
            yield
        return
    pending: list[Callable[[], None]] = []
    token = _pending_hooks.set(pending)
    try:
        outermost = in_transaction()
        async with tracing.TracedCommit(outermost) if tracing.ENABLED else outermost:
            yield
    finally:
        _pending_hooks.reset(token)
    for hook in pending:
        hook()


@asynccontextmanager
async def transaction_unless(one_statement: bool) -> AsyncIterator[None]:
    """``transaction()``, unless the block writes in one statement, which is atomic by itself
    (then a transaction would only hold its locks until a later commit). Inside an outer
    transaction the block is part of it either way. With tracing on, a statement committed by
    itself is the trace's ``commit`` span (``tracing.autocommit``)."""
    if one_statement:
        if tracing.ENABLED and not inside_transaction():
            with tracing.autocommit():
                yield
        else:
            yield
        return
    async with transaction():
        yield
