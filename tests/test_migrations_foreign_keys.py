"""``0011_foreign_keys`` on a copy of a database with data: every row is kept, the constraints
hold, and rows that point nowhere stop the migration (or are nulled, for SET NULL columns).

A database is migrated to ``0010_outbox_claim`` and filled by ``bench.seed.seed`` (the app's own
flows: organisations, catalogue, stores, manual and store orders, product connections), plus a
few distribution rows written in SQL (the 0010 schema: ``withdrawal.requested_by``). It is then
copied (SQLite: the file; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``, databases of this test's
own, dropped afterwards) and the copy migrated to the latest. Every step that touches Tortoise
runs in its own process, as ``make run`` migrates.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from tests.support.services import answers, postgres_url

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "0010_outbox_claim"
RENAMED = {("withdrawal", "requested_by"): "requested_by_user_id"}

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


def _step(url: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", STEP, url, action],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(url: str, action: str) -> None:
    result = _step(url, action)
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

    async def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, by column name (renamed columns under their new name)."""
        return {
            table: [
                {RENAMED.get((table, k), k): v for k, v in row.items()}
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


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[Any]:
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


async def _filled(databases: Any) -> str:
    """A database at 0010 with the app's data and distribution rows."""
    url = await databases.fresh()
    await asyncio.to_thread(_ok, url, BEFORE)
    await asyncio.to_thread(_ok, url, "seed")
    db = Db(url)
    [supplier] = await db.rows("SELECT id FROM organisation WHERE name = 'Bench supplier'")
    [buyer] = await db.rows("SELECT id FROM organisation WHERE name = 'Bench buyer'")
    [user] = await db.rows(
        'SELECT id FROM "user" WHERE organisation_id = $1 ORDER BY id LIMIT 1', buyer["id"]
    )
    [order] = await db.rows(
        "SELECT id FROM supply_order WHERE buyer_id = $1 ORDER BY id LIMIT 1", buyer["id"]
    )
    now = datetime.now(UTC).replace(tzinfo=None) if not db.postgres else datetime.now(UTC)
    await db.rows(
        "INSERT INTO partnership (supplier_id, distributor_id, status, message, decision_note, "
        "created_at, updated_at) VALUES ($1, $2, 'ACCEPTED', '', '', $3, $3)",
        supplier["id"],
        buyer["id"],
        now,
    )
    await db.rows(
        "INSERT INTO warehouse_order (order_id, supplier_id, push_status, withdrawal_status, "
        "updated_at) VALUES ($1, $2, 'NOT_PUSHED', 'WITHDRAWN', $3)",
        order["id"],
        supplier["id"],
        now,
    )
    await db.rows(
        "INSERT INTO withdrawal (order_id, distributor_id, supplier_id, status, reason, "
        "resolution_note, requested_by, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'WITHDRAWN', 'test', '', $4, $5, $5)",
        order["id"],
        buyer["id"],
        supplier["id"],
        user["id"],
        now,
    )
    return url


async def _refused(db: Db, sql: str, *args: Any) -> None:
    with pytest.raises(Exception) as refused:
        await db.rows(sql, *args)
    assert "foreign key" in str(refused.value).lower(), refused.value


async def test_every_row_is_kept_and_the_constraints_hold(databases: Any) -> None:
    source = await _filled(databases)
    copy = Db(await databases.copy(source))
    before = await copy.snapshot()
    indexes = await copy.indexes()
    assert sum(map(len, before.values())) > 300 and len(before["supply_order"]) >= 40
    assert before["withdrawal"] and before["partnership"]

    await asyncio.to_thread(_ok, copy.url, "latest")

    assert (await copy.applied())[-1] == "0011_foreign_keys"
    after = await copy.snapshot()
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
    assert after == before
    assert indexes <= await copy.indexes()  # SQLite rebuilt the tables: indexes re-created
    # a reference to nothing is refused, a referenced row cannot be deleted
    [order] = await copy.rows("SELECT id, buyer_id FROM supply_order ORDER BY id LIMIT 1")
    await _refused(
        copy,
        "UPDATE supply_order SET buyer_id = $1 WHERE id = $2",
        order["buyer_id"] + 10_000_000,
        order["id"],
    )
    await _refused(copy, "DELETE FROM organisation WHERE id = $1", order["buyer_id"])
    await _refused(copy, "UPDATE withdrawal SET requested_by_user_id = $1", 2_000_000_000)
    # SET NULL: who did it stays history when the user goes
    [user] = await copy.rows(
        'SELECT u.id FROM "user" u WHERE EXISTS (SELECT 1 FROM withdrawal w '
        "WHERE w.requested_by_user_id = u.id)"
    )
    await copy.rows("DELETE FROM api_token WHERE user_id = $1", user["id"])
    await copy.rows('DELETE FROM "user" WHERE id = $1', user["id"])
    assert [r["requested_by_user_id"] for r in await copy.rows("SELECT * FROM withdrawal")] == [
        None
    ]


async def test_rows_pointing_nowhere_stop_the_migration_and_change_nothing(
    databases: Any,
) -> None:
    source = await _filled(databases)
    copy = Db(await databases.copy(source))
    [line] = await copy.rows("SELECT id FROM order_line ORDER BY id LIMIT 1")
    await copy.rows("UPDATE order_line SET sku_id = 1999999999 WHERE id = $1", line["id"])
    await copy.rows("UPDATE order_transition SET actor_user_id = 1999999998")
    before = await copy.snapshot()

    failed = _step(copy.url, "latest")

    assert failed.returncode != 0
    assert "order_line.sku_id: 1 row(s) reference sku.id" in failed.stderr
    assert "1999999999" in failed.stderr
    assert "order_transition" not in failed.stderr  # SET NULL columns do not stop it
    assert (await copy.applied())[-1] == BEFORE
    assert await copy.snapshot() == before  # nothing changed
    # repaired, it goes through; the unknown actors are set to NULL
    await copy.rows("UPDATE order_line SET sku_id = NULL WHERE id = $1", line["id"])
    await asyncio.to_thread(_ok, copy.url, "latest")
    assert (await copy.applied())[-1] == "0011_foreign_keys"
    actors = await copy.rows("SELECT DISTINCT actor_user_id FROM order_transition")
    assert actors == [{"actor_user_id": None}]
