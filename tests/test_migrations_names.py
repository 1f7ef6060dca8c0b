"""``0012_names`` both ways on a filled database: back to 0010 (through 0011's way back too)
every table, column, index, constraint and stored value has its old name, and forward again
everything is as it was (the payloads' keys compared as JSON: SQLite keeps a renamed key last).

The database is migrated to the latest and filled by ``bench.seed.seed`` (product links and
their events) plus a third-party warehouse with an order, a task and a callback receipt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.migration_dbs import Db, databases_in, named_objects, ok

BEFORE = "0010_outbox_claim"


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[Any]:
    async for made in databases_in(tmp_path):
        yield made


async def _filled(databases: Any) -> Db:
    db = Db(await databases.fresh())
    await asyncio.to_thread(ok, db.url, "latest")
    await asyncio.to_thread(ok, db.url, "seed")
    [supplier] = await db.rows("SELECT id FROM organisation WHERE name = 'Bench supplier'")
    [order] = await db.rows("SELECT id FROM supply_order ORDER BY id LIMIT 1")
    now = datetime.now(UTC) if db.postgres else datetime.now(UTC).replace(tzinfo=None)
    await db.rows(
        "INSERT INTO third_party_warehouse (supplier_id, provider, name, api_url, api_key, "
        "callback_secret, is_active, last_test_message, created_at) "
        "VALUES ($1, 'sim', 'WH', 'http://wh.test', 'k', 's', $2, '', $3)",
        supplier["id"],
        True,
        now,
    )
    [warehouse] = await db.rows("SELECT id FROM third_party_warehouse")
    await db.rows(
        "INSERT INTO warehouse_order (order_id, supplier_id, third_party_warehouse_id, "
        "reference, push_status, updated_at) VALUES ($1, $2, $3, 'R1', 'PUSHED', $4)",
        order["id"],
        supplier["id"],
        warehouse["id"],
        now,
    )
    await db.rows(
        "INSERT INTO warehouse_task (kind, order_id, third_party_warehouse_id, state, attempts, "
        "due_at, created_at) VALUES ('PUSH', $1, $2, 'DONE', 1, $3, $3)",
        order["id"],
        warehouse["id"],
        now,
    )
    await db.rows(
        "INSERT INTO warehouse_callback_receipt (third_party_warehouse_id, event_id, received_at) "
        "VALUES ($1, 'e1', $2)",
        warehouse["id"],
        now,
    )
    return db


async def _state(db: Db) -> tuple[dict[str, list[dict[str, Any]]], set[str], set[str]]:
    rows = await db.snapshot()
    for event in rows["event"]:
        event["payload"] = json.loads(event["payload"])
    return rows, await db.indexes(), await named_objects(db)


async def test_renames_go_back_and_forth_keeping_every_row(databases: Any) -> None:
    db = await _filled(databases)
    rows, indexes, named = await _state(db)
    links = [e for e in rows["event"] if e["type"] == "PRODUCT_LINK_UPDATED"]
    assert links and all("productLinkId" in e["payload"] for e in links)
    assert any(line["source"] == "PRODUCT_LINK" for line in rows["order_line"])
    assert rows["warehouse_callback_receipt"] and rows["variant_mapping"]

    await asyncio.to_thread(ok, db.url, BEFORE)

    old = await db.snapshot()
    assert "product_link" not in old and "third_party_warehouse" not in old
    assert len(old["product_connection"]) == len(rows["product_link"])
    assert len(old["warehouse_connection"]) == 1
    assert {"connection_id", "event_id"} <= set(old["warehouse_callback_receipt"][0])
    assert "connection_id" in old["variant_mapping"][0]
    assert "connection_id" in old["warehouse_order"][0]
    events = [e for e in old["event"] if e["type"] == "PRODUCT_CONNECTION_UPDATED"]
    assert len(events) == len(links)
    assert all(e["subject_type"] == "ProductConnection" for e in events)
    assert all("connectionId" in json.loads(e["payload"]) for e in events)
    assert not any(line["source"] == "PRODUCT_LINK" for line in old["order_line"])
    assert any(name.startswith("idx_product_con_") for name in await db.indexes())
    if db.postgres:
        assert {"product_connection_pkey", "product_connection_id_seq"} <= await named_objects(db)

    await asyncio.to_thread(ok, db.url, "latest")

    assert await _state(db) == (rows, indexes, named)
