"""Store webhook bodies inserted in batches: one statement per batch, redeliveries skipped by
the unique (store, event id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from compat import tortoise as orm
from domain.orders.models import InboxState, WebhookReceipt
from domain.persistence.dialects import DialectSwitch

Receipt = tuple[int, str, str]  # store id, event id, body
Key = tuple[int, str]

_COLUMNS = '("store_id","event_id","payload","received_at","due_at","state","attempts")'
_ON_CONFLICT = ' ON CONFLICT ("store_id","event_id") DO NOTHING RETURNING "store_id","event_id"'

insert_receipts: DialectSwitch[set[Key]] = DialectSwitch("inbox.insert_receipts")


@insert_receipts.postgres
async def _insert_postgres(receipts: Sequence[Receipt], now: datetime) -> set[Key]:
    """Unique ``receipts`` as PENDING rows; the keys that were new. One statement text whatever
    the batch size, so the driver's prepared statement is reused; wrapped in WITH because the
    driver returns no rows for a statement that starts with INSERT."""
    head = f'INSERT INTO "{orm.table(WebhookReceipt)}" {_COLUMNS}'
    sql = f"WITH added AS ({head} SELECT s, e, p, $4, $4, $5, 0 FROM "
    sql += f"unnest($1::int[], $2::text[], $3::text[]) AS t(s, e, p){_ON_CONFLICT}) "
    sql += "SELECT * FROM added"
    values: list[object] = [
        [store for store, _, _ in receipts],
        [event for _, event, _ in receipts],
        [body for _, _, body in receipts],
        now,
        InboxState.PENDING.value,
    ]
    _, rows = await orm.connection_of(WebhookReceipt).execute_query(sql, values)
    return {(row["store_id"], row["event_id"]) for row in rows}


@insert_receipts.other
async def _insert_other(receipts: Sequence[Receipt], now: datetime) -> set[Key]:
    head = f'INSERT INTO "{orm.table(WebhookReceipt)}" {_COLUMNS}'
    sql = head + " VALUES " + ",".join(["(?,?,?,?,?,?,0)"] * len(receipts)) + _ON_CONFLICT
    pending = InboxState.PENDING.value
    values = [v for store, event, body in receipts for v in (store, event, body, now, now, pending)]
    _, rows = await orm.connection_of(WebhookReceipt).execute_query(sql, values)
    return {(row["store_id"], row["event_id"]) for row in rows}
