"""The store webhook inbox's statements: bodies inserted in batches (one statement per batch,
redeliveries skipped by the unique (store, event id)), due rows leased and rows marked done by
the batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from tortoise.expressions import F

from compat import tortoise as orm
from domain.leases import lease_free
from domain.orders.models import InboxState, WebhookReceipt
from domain.persistence.dialects import DialectSwitch
from domain.persistence.rows import fetch

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


Done = tuple[int, str | None, int]  # row id, lease owner, order id

finish_done: DialectSwitch[int] = DialectSwitch("inbox.finish_done")


@finish_done.postgres
async def _finish_done_postgres(done: Sequence[Done], now: datetime) -> int:
    """Mark these rows DONE with their orders, each only while it is PENDING under the lease it
    was claimed with (one statement); how many were marked."""
    sql = f'UPDATE "{orm.table(WebhookReceipt)}" AS r SET "state" = $1, "order_id" = d.order_id, '
    sql += '"processed_at" = $2, "lease_owner" = NULL, "lease_until" = NULL, "last_error" = NULL '
    sql += "FROM unnest($3::bigint[], $4::text[], $5::bigint[]) AS d(id, owner, order_id) "
    sql += "WHERE r.id = d.id AND r.state = $6 AND r.lease_owner IS NOT DISTINCT FROM d.owner"
    values: list[object] = [
        InboxState.DONE.value,
        now,
        [row for row, _, _ in done],
        [owner for _, owner, _ in done],
        [order for _, _, order in done],
        InboxState.PENDING.value,
    ]
    marked, _ = await orm.connection_of(WebhookReceipt).execute_query(sql, values)
    return marked


@finish_done.other
async def _finish_done_other(done: Sequence[Done], now: datetime) -> int:
    """As on PostgreSQL, a statement a row (SQLite runs them in the caller's transaction)."""
    sql = f'UPDATE "{orm.table(WebhookReceipt)}" SET "state" = ?, "order_id" = ?, '
    sql += '"processed_at" = ?, "lease_owner" = NULL, "lease_until" = NULL, "last_error" = NULL '
    sql += 'WHERE "id" = ? AND "state" = ? AND "lease_owner" IS ?'
    db = orm.connection_of(WebhookReceipt)
    marked = 0
    for row, owner, order in done:
        values = [InboxState.DONE.value, order, now, row, InboxState.PENDING.value, owner]
        count, _ = await db.execute_query(sql, values)
        marked += count
    return marked


claim_receipts: DialectSwitch[list[WebhookReceipt]] = DialectSwitch("inbox.claim")
_CLAIM_SQL: str | None = None


@claim_receipts.postgres
async def _claim_postgres(
    *, owner: str, lease_seconds: float, limit: int, now: datetime
) -> list[WebhookReceipt]:
    """Lease up to ``limit`` due PENDING rows nobody holds, oldest first: one statement. Rows
    another instance is leasing at this moment are skipped (``SKIP LOCKED``), not waited for."""
    global _CLAIM_SQL
    if _CLAIM_SQL is None:
        table = orm.table(WebhookReceipt)
        _CLAIM_SQL = f"""WITH due AS (
    SELECT "id" FROM "{table}"
    WHERE "state" = $1 AND "due_at" <= $2 AND ("lease_until" IS NULL OR "lease_until" < $2)
    ORDER BY "id" LIMIT $3
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE "{table}" AS r SET "lease_owner" = $4, "lease_until" = $5, "attempts" = r."attempts" + 1
    FROM due WHERE r."id" = due."id"
    RETURNING r.*
)
SELECT * FROM leased ORDER BY id"""
    until = now + timedelta(seconds=lease_seconds)
    values = [InboxState.PENDING.value, now, limit, owner, until]
    return await fetch(WebhookReceipt, _CLAIM_SQL, values)


@claim_receipts.other
async def _claim_other(
    *, owner: str, lease_seconds: float, limit: int, now: datetime
) -> list[WebhookReceipt]:
    """As on PostgreSQL, in three statements: the ids due, the conditional lease (a row another
    instance leased meanwhile no longer matches), the rows this one holds."""
    ids = (
        await WebhookReceipt.filter(lease_free(now), state=InboxState.PENDING, due_at__lte=now)
        .order_by("id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    if not ids:
        return []
    await WebhookReceipt.filter(lease_free(now), id__in=list(ids), state=InboxState.PENDING).update(
        lease_owner=owner,
        lease_until=now + timedelta(seconds=lease_seconds),
        attempts=F("attempts") + 1,
    )
    return (
        await WebhookReceipt.filter(id__in=list(ids), state=InboxState.PENDING, lease_owner=owner)
        .order_by("id")
        .all()
    )
