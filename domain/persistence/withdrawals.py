"""A withdraw request written in one statement on PostgreSQL: the order's warehouse record
claimed (WITHDRAWING, only if no withdrawal is open), the withdrawal, the warehouse task that
cancels it and the event, all or nothing (``domain.distribution.withdrawals`` decides; this
module only writes). One read before it brings the order, its warehouse record and the
withdrawal's id, so that the event can be built before the write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from compat import tortoise as orm
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    TaskState,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalStatus,
)
from domain.orders.models import Order, OrderStatus
from domain.persistence.events import Recordable, event_parameters, recording_sql
from domain.persistence.rows import builder


@dataclass(frozen=True)
class WithdrawTarget:
    order: Order
    push_status: PushStatus | None  # None: the order has no warehouse record yet
    withdrawal_status: WithdrawalStatus | None
    third_party_warehouse_id: int | None
    next_withdrawal_id: int  # drawn from the sequence; unused if the request is refused


_READ: str | None = None
_WRITE: str | None = None


async def withdraw_target(order_id: int, buyer_id: int) -> WithdrawTarget | None:
    """The buyer's order with its warehouse record, in one statement; None if not the buyer's."""
    global _READ
    if _READ is None:
        record, withdrawal = orm.table(WarehouseOrder), orm.table(Withdrawal)
        _READ = f"""SELECT o.*, w.push_status AS w_push_status,
       w.withdrawal_status AS w_withdrawal_status,
       w.third_party_warehouse_id AS w_third_party_warehouse_id,
       nextval(pg_get_serial_sequence('"{withdrawal}"', 'id')) AS w_next_withdrawal_id
FROM "{orm.table(Order)}" o LEFT JOIN "{record}" w ON w.order_id = o.id
WHERE o.id = $1 AND o.buyer_id = $2"""
    _, rows = await orm.connection_of(Order).execute_query(_READ, [order_id, buyer_id])
    if not rows:
        return None
    row = rows[0]
    push, shown = row["w_push_status"], row["w_withdrawal_status"]
    return WithdrawTarget(
        order=builder(Order).build(row),
        push_status=PushStatus(push) if push is not None else None,
        withdrawal_status=WithdrawalStatus(shown) if shown is not None else None,
        third_party_warehouse_id=row["w_third_party_warehouse_id"],
        next_withdrawal_id=int(row["w_next_withdrawal_id"]),
    )


def _write_sql() -> str:
    record, withdrawal = orm.table(WarehouseOrder), orm.table(Withdrawal)
    order, task = orm.table(Order), orm.table(WarehouseTask)
    return f"""WITH claimed AS (
    UPDATE "{record}" SET withdrawal_status = $1
    WHERE order_id = $2 AND withdrawal_status IS NULL AND push_status = $3
      AND EXISTS (SELECT 1 FROM "{order}" WHERE id = $2 AND status = ANY($4::text[])
                  AND shipped_at IS NULL AND supplier_id IS NOT NULL)
      AND (SELECT count(*) FROM "{withdrawal}" WHERE order_id = $2) < $5
    RETURNING order_id
), made AS (
    INSERT INTO "{withdrawal}" (id, order_id, distributor_id, supplier_id, status, reason,
                                resolution_note, requested_by_user_id, created_at, updated_at)
    SELECT $6, $2, $7, $8, $1, $9, '', $10, $11, $11 FROM claimed
    RETURNING id
), queued AS (
    INSERT INTO "{task}" (kind, third_party_warehouse_id, order_id, withdrawal_id, state,
                          attempts, due_at, actor_user_id, request_id, created_at)
    SELECT $12, $13, $2, made.id, $14, 0, $11, $10, $15, $11 FROM made
), {recording_sql(16, only_if="made")}
SELECT count(*) AS written FROM made"""


async def request_in_one_statement(
    withdrawal: Withdrawal,
    *,
    push_status: PushStatus,
    withdrawable: Sequence[OrderStatus],
    cap: int,
    third_party_warehouse_id: int | None,
    request_id: str | None,
    now: datetime,
    event: Recordable,
) -> bool:
    """Write the request if the record still shows ``push_status`` and no open withdrawal,
    the order is still withdrawable and below ``cap`` withdrawals; False (nothing written)
    otherwise. Outside a transaction it is atomic by itself."""
    global _WRITE
    if _WRITE is None:
        _WRITE = _write_sql()
    _, rows = await orm.connection_of(Withdrawal).execute_query(
        _WRITE,
        [
            WithdrawalStatus.WITHDRAWING.value,
            withdrawal.order_id,
            push_status.value,
            [status.value for status in withdrawable],
            cap,
            withdrawal.id,
            withdrawal.distributor_id,
            withdrawal.supplier_id,
            withdrawal.reason,
            withdrawal.requested_by_user_id,
            now,
            TaskKind.CANCEL_ORDER.value,
            third_party_warehouse_id,
            TaskState.PENDING.value,
            request_id,
            *event_parameters(event),
        ],
    )
    written = bool(rows[0]["written"] == 1)
    if written:
        orm.mark_stored(withdrawal)
    return written
