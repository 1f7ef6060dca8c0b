"""tortoise-orm: the internals the fast read and write paths rely on.

- A model's column lists by kind (``Meta.db_native_fields`` and friends) and its primary-key
  bookkeeping, which ``domain.persistence.rows`` reads to build instances without
  ``Model._init_from_db``.
- The attributes ``_init_from_db`` sets on an instance it loads (``loaded_state``).
- A query set's SQL before it runs (``QuerySet._make_query``), for running it ourselves.
- A model's table, columns and value conversions (``Model._meta``), for written-out statements.
- How a SQLite transaction begins (``SqliteTransactionWrapper.begin``): ``BEGIN IMMEDIATE``
  instead of ``BEGIN`` (``sqlite_writes_begin_at_once``), and how its context enters
  (``SqliteTransactionContext.__aenter__``): the connection's lock given back when beginning
  fails or is cancelled.

``tests/test_compat.py`` checks the version and runs ``probe``; ``tests/test_rows.py`` checks
that instances built this way equal the ones Tortoise builds, for every model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, Literal

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError
from tortoise.fields import Field
from tortoise.models import Model
from tortoise.queryset import QuerySet

PACKAGE = "tortoise-orm"
TESTED_WITH = "1.1.9"

ColumnKind = Literal["native", "default", "complex"]


def columns_by_kind(model: type[Model]) -> Iterator[tuple[ColumnKind, str, str, Field]]:
    """Every column of ``model`` as (how Tortoise converts it, column, attribute, field):
    ``native`` values are the driver's, ``default`` ones go through the field's Python type,
    ``complex`` ones through ``to_python_value``."""
    meta = model._meta
    kinds: tuple[tuple[ColumnKind, Any], ...] = (
        ("native", meta.db_native_fields),
        ("default", meta.db_default_fields),
        ("complex", meta.db_complex_fields),
    )
    for kind, fields in kinds:
        for column, attribute, field in fields:
            yield kind, column, attribute, field


def model_version(model: type[Model]) -> object:
    """Changes when Tortoise (re)initialises ``model``: a cache built from its metadata is
    stale when this is not the object it was built with."""
    return model._meta.db_complex_fields


def loaded_state(model: type[Model]) -> dict[str, Any]:
    """The bookkeeping attributes ``Model._init_from_db`` sets on an instance it loads."""
    meta = model._meta
    return {
        "_partial": False,
        "_saved_in_db": True,
        "_custom_generated_pk": meta.db_pk_column not in meta.generated_db_fields,
        "_await_when_save": {},
    }


def mark_stored(instance: Model) -> None:
    """``instance``, written by a hand-written statement, marked as loaded from the database
    (so that a later ``save`` updates its row instead of inserting it again)."""
    instance.__dict__.update(loaded_state(type(instance)))


def compiled(query: QuerySet[Any]) -> tuple[BaseDBAsyncClient, str, list[Any]]:
    """The connection ``query`` would run on, and its SQL and parameters."""
    query._choose_db_if_not_chosen()
    query._make_query()
    sql, values = query.query.get_parameterized_sql()
    return query._db, sql, list(values)


def connection_of(model: type[Model]) -> BaseDBAsyncClient:
    return model._meta.db


def table(model: type[Model]) -> str:
    return model._meta.db_table


def column(model: type[Model], field_name: str) -> str:
    return model._meta.fields_db_projection[field_name]


def columns(model: type[Model]) -> list[str]:
    """Every column of ``model``'s table."""
    return list(model._meta.db_fields)


def from_db(model: type[Model], field_name: str, value: Any) -> Any:
    """A column value as the ORM reads it into ``field_name``."""
    return model._meta.fields_map[field_name].to_python_value(value)


def to_db(model: type[Model], field_name: str, value: Any) -> Any:
    """``value`` as the ORM writes it to ``field_name``'s column."""
    return model._meta.fields_map[field_name].to_db_value(value, None)


def probe(model: type[Model]) -> None:
    """Touch each internal with an initialised ``model``; raise if one moved."""
    assert list(columns_by_kind(model)), "no columns by kind"
    assert model_version(model) is model._meta.db_complex_fields
    state = loaded_state(model)
    instance = model._init_from_db(**{c: None for _, c, _, _ in columns_by_kind(model)})
    missing = set(state) - set(vars(instance))
    assert not missing, f"_init_from_db no longer sets {sorted(missing)}"
    db, sql, _ = compiled(model.all().limit(1))
    assert isinstance(db, BaseDBAsyncClient) and "SELECT" in sql.upper()
    assert connection_of(model) is not None and table(model)
    pk = model._meta.pk_attr
    assert column(model, pk) and to_db(model, pk, 1) == 1 and from_db(model, pk, 1) == 1
    assert set(columns(model)) == {c for _, c, _, _ in columns_by_kind(model)}


async def _begin_immediate(self: SqliteTransactionWrapper) -> None:
    try:
        await self._connection.commit()
        await self._connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise TransactionManagementError(exc) from exc


def sqlite_writes_begin_at_once() -> None:
    """SQLite transactions take the write lock when they begin (``BEGIN IMMEDIATE``).

    Tortoise begins them deferred: a transaction that reads first takes the write lock at its
    first write, and if another process (the server, while ``seed-demo`` or the simulator
    runs) committed in between, SQLite refuses at once with "database is locked" instead of
    waiting its busy timeout, since the transaction's snapshot is stale. Begun immediate, a
    transaction waits for the other writer at its start (up to the busy timeout) and never
    fails half-way. One process serialises its transactions on one connection anyway."""
    SqliteTransactionWrapper.begin = _begin_immediate  # type: ignore[method-assign]
    SqliteTransactionContext.__aenter__ = _enter_releasing  # type: ignore[method-assign]


async def _enter_releasing(self: SqliteTransactionContext) -> TransactionalDBClient:
    """Tortoise's ``SqliteTransactionContext.__aenter__``, except that a failure once the
    connection's lock is taken gives the lock back. Tortoise's leaves it taken: a task
    cancelled while its ``BEGIN`` ran (a loop stopped at shutdown) never reaches
    ``__aexit__``, and every later statement of the process waited for the lock for ever."""
    await self._trxlock.acquire()
    token = None
    try:
        await self.ensure_connection()
        token = get_connections().set(self.connection_name, self.connection)
        await self.connection.begin()
    except BaseException:
        if token is not None:
            get_connections().reset(token)
        self._trxlock.release()
        raise
    self.token = token
    return self.connection
