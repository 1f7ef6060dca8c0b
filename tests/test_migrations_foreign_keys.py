"""``0011_foreign_keys`` on a copy of a database with data: every row is kept, the constraints
hold, and rows that point nowhere stop the migration (or are nulled, for SET NULL columns).

A database is migrated to the latest, filled by ``bench.seed.seed`` (the app's own flows:
organisations, catalogue, stores, manual and store orders, product links) and migrated back to
``0010_outbox_claim`` (so 0011's way back runs too), plus a few distribution rows written in SQL
(the 0010 schema: ``withdrawal.requested_by``). It is then copied (``tests.support.migration_dbs``)
and the copy migrated to 0011. Every step that touches Tortoise runs in its own process, as
``make run`` migrates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.migration_dbs import Db, databases_in, ok, step

BEFORE = "0010_outbox_claim"
AFTER = "0011_foreign_keys"
RENAMED = {("withdrawal", "requested_by"): "requested_by_user_id"}


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[Any]:
    async for made in databases_in(tmp_path):
        yield made


async def _filled(databases: Any) -> str:
    """A database at 0010 with the app's data and distribution rows."""
    url = await databases.fresh()
    await asyncio.to_thread(ok, url, "latest")
    await asyncio.to_thread(ok, url, "seed")
    await asyncio.to_thread(ok, url, BEFORE)
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
    before = await copy.snapshot(RENAMED)
    indexes = await copy.indexes()
    assert sum(map(len, before.values())) > 300 and len(before["supply_order"]) >= 40
    assert before["withdrawal"] and before["partnership"]

    await asyncio.to_thread(ok, copy.url, AFTER)

    assert (await copy.applied())[-1] == AFTER
    after = await copy.snapshot(RENAMED)
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
    before = await copy.snapshot(RENAMED)

    failed = step(copy.url, AFTER)

    assert failed.returncode != 0
    assert "order_line.sku_id: 1 row(s) reference sku.id" in failed.stderr
    assert "1999999999" in failed.stderr
    assert "order_transition" not in failed.stderr  # SET NULL columns do not stop it
    assert (await copy.applied())[-1] == BEFORE
    assert await copy.snapshot(RENAMED) == before  # nothing changed
    # repaired, it goes through; the unknown actors are set to NULL
    await copy.rows("UPDATE order_line SET sku_id = NULL WHERE id = $1", line["id"])
    await asyncio.to_thread(ok, copy.url, AFTER)
    assert (await copy.applied())[-1] == AFTER
    actors = await copy.rows("SELECT DISTINCT actor_user_id FROM order_transition")
    assert actors == [{"actor_user_id": None}]
