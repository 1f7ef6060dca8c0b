"""Databases of a migration test's own: migrated step by step in subprocesses (as ``make run``
migrates), read with plain SQL, and dropped afterwards.

``databases_in(tmp_path)`` (the ``databases`` fixture) gives ``fresh()``, the URL of an empty
database (SQLite file, or a PostgreSQL database when ``DATABASE_URL`` names one), and
``copy(url)``, a copy of one (the file; ``CREATE DATABASE ... TEMPLATE``). ``step(url, action)``
runs ``seed`` (``bench.seed``), ``latest`` or a migration name as target, forwards or backwards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from tests.support.services import answers, postgres_url

ROOT = Path(__file__).resolve().parent.parent.parent

STEP = """
import asyncio, sys
from tortoise import Tortoise
from tortoise.migrations.api import migrate
from domain.db import tortoise_config
from domain.secrets import generate_key
from service.settings import Settings

async def main(url, action):
    try:
        if action == "seed":
            from bench.seed import seed
            settings = {"DATABASE_URL": url, "SECRETS_KEY": generate_key()}
            Settings.from_env(settings).configure_secrets()
            await Tortoise.init(config=tortoise_config(url))
            await seed(40)
        else:
            target = None if action == "latest" else "models." + action
            await migrate(config=tortoise_config(url), target=target)
    finally:
        await Tortoise.close_connections()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def step(url: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", STEP, url, action],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(url: str, action: str) -> None:
    result = step(url, action)
    assert result.returncode == 0, result.stderr[-4000:]


class Db:
    """Plain SQL on one database, without Tortoise."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = urlparse(url).scheme != "sqlite"

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self.postgres:
            import asyncpg

            conn = await asyncpg.connect(_asyncpg(self.url))
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            finally:
                await conn.close()
        conn = sqlite3.connect(urlparse(self.url).path)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            rows = [dict(r) for r in conn.execute(sql.replace("$", "?"), args)]
            conn.commit()
            return rows
        finally:
            conn.close()

    async def tables(self) -> list[str]:
        if self.postgres:
            found = await self.rows(
                "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
            )
        else:
            found = await self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        return sorted(r["name"] for r in found if r["name"] != "tortoise_migrations")

    async def snapshot(
        self, renamed: dict[tuple[str, str], str] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, by column name (``renamed`` columns under their new name)."""
        renamed = renamed or {}
        return {
            table: [
                {renamed.get((table, k), k): v for k, v in row.items()}
                for row in await self.rows(f'SELECT * FROM "{table}" ORDER BY 1')
            ]
            for table in await self.tables()
        }

    async def indexes(self) -> set[str]:
        if self.postgres:
            found = await self.rows(
                "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'"
            )
        else:
            found = await self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        return {r["name"] for r in found}

    async def applied(self) -> list[str]:
        return [r["name"] for r in await self.rows("SELECT name FROM tortoise_migrations")]


def _asyncpg(url: str) -> str:
    return urlunparse(urlparse(url)._replace(scheme="postgresql"))


def _named(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(scheme="postgres", path=f"/{name}"))


async def _admin(source: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg(source))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def databases_in(tmp_path: Path) -> AsyncIterator[Any]:
    """``fresh()`` -> URL of an empty database; ``copy(url)`` -> URL of a copy of it."""
    pg = postgres_url()
    made: list[str] = []
    if pg is not None and not answers(pg, 5432):
        pytest.skip(f"PostgreSQL at {pg} does not answer")

    async def fresh() -> str:
        if pg is None:
            return f"sqlite://{tmp_path / f'{uuid.uuid4().hex[:8]}.sqlite3'}"
        name = f"supplygraph_fk_{uuid.uuid4().hex[:8]}"
        await _admin(pg, f'CREATE DATABASE "{name}"')
        made.append(name)
        return _named(pg, name)

    async def copy(url: str) -> str:
        if pg is None:
            target = tmp_path / f"{uuid.uuid4().hex[:8]}.sqlite3"
            shutil.copyfile(urlparse(url).path, target)
            return f"sqlite://{target}"
        name = f"supplygraph_fk_{uuid.uuid4().hex[:8]}"
        source = urlparse(url).path.lstrip("/")
        await _admin(pg, f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        made.append(name)
        return _named(pg, name)

    class Made:
        pass

    made_ = Made()
    made_.fresh, made_.copy = fresh, copy  # type: ignore[attr-defined]
    yield made_
    for name in made:
        await _admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


async def named_objects(db: Db) -> set[str]:
    """PostgreSQL: the names of constraints and sequences, which carry their table's name;
    SQLite names neither."""
    if not db.postgres:
        return set()
    found = await db.rows(
        "SELECT conname AS name FROM pg_constraint "
        "WHERE connamespace = current_schema()::regnamespace "
        "UNION SELECT relname FROM pg_class "
        "WHERE relkind = 'S' AND relnamespace = current_schema()::regnamespace"
    )
    return {r["name"] for r in found}
