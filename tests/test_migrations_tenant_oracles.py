"""``0014_tenant_oracles`` both ways on a filled database, on the run's engine: forward, an
e-mail may be used once per organisation; back to 0013 (refused, changing nothing, while an
e-mail is in two organisations) the schema is exactly 0013's, names included, with every row
kept (SQLite rebuilt ``user``: no API token deleted, no ``actor_user_id`` nulled); forward again
everything is as it was.

The database is migrated to the latest, filled by ``bench.seed.seed`` (organisations, users
and tokens, orders and their events) and taken back to 0014.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.migration_dbs import Db, databases_in, named_objects, ok, step

BEFORE = "0013_sla"
AFTER = "0014_tenant_oracles"


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[Any]:
    async for made in databases_in(tmp_path):
        yield made


async def _schema(db: Db) -> list[tuple[Any, ...]]:
    """Every table, index and constraint with its definition (names included)."""
    if db.postgres:
        constraints = await db.rows(
            "SELECT t.relname AS tbl, c.conname AS name, pg_get_constraintdef(c.oid) AS def "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE c.connamespace = current_schema()::regnamespace"
        )
        indexes = await db.rows(
            "SELECT tablename AS tbl, indexname AS name, indexdef AS def FROM pg_indexes "
            "WHERE schemaname = current_schema()"
        )
        return sorted(
            [("constraint", r["tbl"], r["name"], r["def"]) for r in constraints]
            + [("index", r["tbl"], r["name"], r["def"]) for r in indexes]
        )
    found = await db.rows(
        "SELECT type, tbl_name, name, sql FROM sqlite_master WHERE name != 'tortoise_migrations' "
        "AND tbl_name != 'tortoise_migrations'"
    )
    return sorted((r["type"], r["tbl_name"], r["name"], r["sql"] or "") for r in found)


async def _sequence(db: Db) -> Any:
    """The next id ``user`` hands out (SQLite's AUTOINCREMENT counter, PostgreSQL's sequence)."""
    if db.postgres:
        [row] = await db.rows("SELECT last_value FROM user_id_seq")
        return row["last_value"]
    [row] = await db.rows("SELECT seq FROM sqlite_sequence WHERE name = 'user'")
    return row["seq"]


async def _user(db: Db, organisation_id: int, email: str) -> None:
    now = datetime.now(UTC) if db.postgres else datetime.now(UTC).replace(tzinfo=None)
    await db.rows(
        'INSERT INTO "user" (organisation_id, email, name, role, is_active, created_at) '
        "VALUES ($1, $2, 'N', 'STAFF', $3, $4)",
        organisation_id,
        email,
        True,
        now,
    )


async def _refused(db: Db, organisation_id: int, email: str) -> None:
    with pytest.raises(Exception) as refused:
        await _user(db, organisation_id, email)
    assert "unique" in str(refused.value).lower(), refused.value


async def test_emails_are_unique_per_organisation_both_ways_keeping_every_row(
    databases: Any,
) -> None:
    reference = Db(await databases.fresh())  # migrated straight to 0013: its schema
    await asyncio.to_thread(ok, reference.url, BEFORE)
    old_schema = await _schema(reference)

    db = Db(await databases.fresh())
    # seeded by today's models at the latest migration, then back to 0014
    await asyncio.to_thread(ok, db.url, "latest")
    await asyncio.to_thread(ok, db.url, "seed")
    await asyncio.to_thread(ok, db.url, AFTER)
    assert (await db.applied())[-1] == AFTER
    [supplier] = await db.rows("SELECT id FROM organisation WHERE name = 'Bench supplier'")
    [buyer] = await db.rows("SELECT id FROM organisation WHERE name = 'Bench buyer'")
    supplier, buyer = supplier["id"], buyer["id"]
    [owner] = await db.rows(
        'SELECT email FROM "user" WHERE organisation_id = $1 ORDER BY id LIMIT 1', supplier
    )
    # at 0014: the supplier's owner's address is free in another organisation, not twice in one
    await _user(db, buyer, owner["email"])
    await _refused(db, supplier, owner["email"])
    rows, schema, named = await db.snapshot(), await _schema(db), await named_objects(db)
    sequence = await _sequence(db)
    assert rows["api_token"] and any(e["actor_user_id"] for e in rows["event"])
    assert any(i[2].startswith("uid_user_email_") for i in schema)
    assert any(i[2].startswith("idx_supply_orde_supplie_") and "buyer_id" in i[3] for i in schema)

    # back: refused while the address is in two organisations, and nothing changes
    failed = await asyncio.to_thread(step, db.url, BEFORE)
    assert failed.returncode != 0
    assert f"{owner['email']} (2 organisations)" in failed.stderr, failed.stderr[-2000:]
    assert (await db.applied())[-1] == AFTER
    assert (await db.snapshot(), await _schema(db)) == (rows, schema)

    # without the second one, back to 0013's schema, every other row kept
    await db.rows(
        'DELETE FROM "user" WHERE organisation_id = $1 AND email = $2', buyer, owner["email"]
    )
    rows = await db.snapshot()
    await asyncio.to_thread(ok, db.url, BEFORE)
    assert (await db.applied())[-1] == BEFORE
    assert await _schema(db) == old_schema
    assert await db.snapshot() == rows
    assert await _sequence(db) == sequence
    if not db.postgres:
        assert await db.rows("PRAGMA foreign_key_check") == []
    await _refused(db, buyer, owner["email"])  # 0013: unique platform-wide

    # forward again: as it was
    await asyncio.to_thread(ok, db.url, AFTER)
    await _user(db, buyer, owner["email"])
    assert await _schema(db) == schema
    assert await named_objects(db) == named
    after = await db.snapshot()
    [again] = [u for u in after["user"] if u["id"] not in {r["id"] for r in rows["user"]}]
    assert (again["organisation_id"], again["email"]) == (buyer, owner["email"])
    after["user"].remove(again)
    assert after == rows
