"""The internals of other libraries that ``compat/`` relies on are still where it expects.

Each compat module names the version it was checked against; an installed version that differs
fails here first, with what to re-check, before anything subtler breaks elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from importlib.metadata import version
from types import ModuleType
from typing import Any

import pytest
from graphql import parse
from tortoise import Tortoise
from tortoise.backends.sqlite.client import SqliteTransactionWrapper

from compat import broadcaster, graphql_core, httpx, strawberry, tortoise, uvicorn
from compat import tortoise as orm
from domain.db import transaction
from domain.orders.models import Order
from schema.build import create_schema
from schema.execution import FastExecutionContext
from tests.support.server import RunningServer

MODULES = [broadcaster, graphql_core, httpx, strawberry, tortoise, uvicorn]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_each_compat_module_was_checked_against_the_installed_version(module: ModuleType) -> None:
    installed = version(module.PACKAGE)
    assert installed == module.TESTED_WITH, (
        f"{module.PACKAGE} {installed} is installed; {module.__name__} was checked against "
        f"{module.TESTED_WITH}. Re-check the internals its docstring lists (its probe below "
        f"helps), then set TESTED_WITH = {installed!r}."
    )


async def test_broadcaster_internals() -> None:
    await broadcaster.probe()


def test_httpx_internals() -> None:
    httpx.probe()


async def test_uvicorn_internals() -> None:
    await uvicorn.probe()


def test_strawberry_and_graphql_core_internals() -> None:
    schema = create_schema()
    strawberry.probe(schema)
    core = strawberry.core_schema(schema)
    executor = FastExecutionContext.build(core, parse("{ __typename }"))
    assert isinstance(executor, FastExecutionContext)
    graphql_core.probe(executor)


async def test_tortoise_internals(server: RunningServer) -> None:
    models = list(Tortoise.apps["models"].values())
    assert models
    for model in models:
        tortoise.probe(model)


async def test_a_sqlite_transaction_that_reads_first_survives_another_process_writing(
    server: RunningServer,
) -> None:
    """``compat.tortoise.sqlite_writes_begin_at_once``: begun deferred, a transaction that read
    before another connection committed was refused at its first write ("database is
    locked", as ``seed-demo`` was beside a running server); begun immediate, the other writer
    waits for it instead, and both writes land."""
    if not server.settings.is_sqlite:
        pytest.skip("SQLite's locking")
    connection = orm.connection_of(Order)
    await connection.execute_script("CREATE TABLE IF NOT EXISTS compat_probe (n INTEGER)")

    def other_process_writes() -> None:
        with contextlib.closing(sqlite3.connect(connection.filename, timeout=10)) as other:
            other.execute("INSERT INTO compat_probe (n) VALUES (2)")
            other.commit()

    async with transaction():
        inside = orm.connection_of(Order)  # the transaction's
        await inside.execute_query("SELECT count(*) FROM compat_probe")
        writing = asyncio.create_task(asyncio.to_thread(other_process_writes))
        await asyncio.sleep(0.3)
        assert not writing.done()  # it waits for this transaction
        await inside.execute_query("INSERT INTO compat_probe (n) VALUES (1)")
    await writing
    _, rows = await connection.execute_query("SELECT n FROM compat_probe ORDER BY n")
    assert [row["n"] for row in rows] == [1, 2]


async def test_a_sqlite_transaction_cancelled_as_it_begins_gives_the_connection_back(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compat.tortoise``'s ``SqliteTransactionContext.__aenter__``: a loop stopped while its
    transaction's BEGIN ran left Tortoise's connection lock taken, and the next statement of
    the process (a lease given back at shutdown) waited for it for ever."""
    if not server.settings.is_sqlite:
        pytest.skip("SQLite's one connection")
    beginning = asyncio.Event()

    async def slow_begin(self: Any) -> None:
        beginning.set()
        await asyncio.sleep(30)

    monkeypatch.setattr(SqliteTransactionWrapper, "begin", slow_begin)

    async def write() -> None:
        async with transaction():
            pass

    writing = asyncio.create_task(write())
    await beginning.wait()
    writing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writing
    monkeypatch.undo()
    async with asyncio.timeout(5):  # not for ever
        assert await Order.all().count() >= 0
        async with transaction():
            await Order.all().count()
