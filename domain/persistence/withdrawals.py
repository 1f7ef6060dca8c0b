"""A withdraw request written in one statement on PostgreSQL: the order's warehouse record
claimed (WITHDRAWING, only if no withdrawal is open), the withdrawal, the warehouse task that
cancels it and the event, all or nothing (``domain.distribution.withdrawals`` decides; this
module only writes). One read before it brings the order, its warehouse record and the
withdrawal's id, so that the event can be built before the write. Requests arriving while one
is written are written together, in one statement (``WithdrawQueue``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from compat import tortoise as orm
from domain.db import inside_transaction, notify_after_commit
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    TaskState,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalStatus,
)
from domain.events.models import Event
from domain.orders.models import Order, OrderStatus
from domain.persistence.events import (
    Recordable,
    many_event_parameters,
    writing_drawn_sql,
)
from domain.persistence.rows import builder
from domain.persistence.write_groups import PerLoop, WriteGroups


@dataclass(frozen=True)
class WithdrawTarget:
    order: Order
    push_status: PushStatus | None  # None: the order has no warehouse record yet
    withdrawal_status: WithdrawalStatus | None
    third_party_warehouse_id: int | None
    next_withdrawal_id: int  # drawn from the sequence; unused if the request is refused


_READ: str | None = None
_TOGETHER: str | None = None


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


@dataclass(frozen=True)
class WithdrawWrite:
    """A withdraw request to write: the withdrawal (its id drawn), the record's push status it
    was read with, what the order must still be, and the event."""

    withdrawal: Withdrawal
    push_status: PushStatus
    withdrawable: tuple[OrderStatus, ...]
    cap: int  # withdrawals of the order at most, this one included
    third_party_warehouse_id: int | None
    request_id: str | None
    now: datetime
    event: Recordable


async def request_in_one_statement(write: WithdrawWrite) -> bool:
    """Write the request if the record still shows ``push_status`` and no open withdrawal,
    the order is still withdrawable and below ``cap`` withdrawals; False (nothing written)
    otherwise. The group's statement with one request: the rules are written once. Outside a
    transaction it is atomic by itself."""
    [written] = await request_together([write])
    return written


def _together_sql() -> str:
    """The requests (of distinct orders) in one statement, each on its own: the record claimed
    (WITHDRAWING, only if no withdrawal is open and it still shows the push status read), the
    order still withdrawable and below the cap, then the withdrawal, its cancel task and its
    event; a request whose order or record changed is not written, the others are."""
    record, withdrawal = orm.table(WarehouseOrder), orm.table(Withdrawal)
    order, task, event = orm.table(Order), orm.table(WarehouseTask), orm.table(Event)
    return f"""WITH asked AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                         $6::text[], $7::integer[], $8::bigint[], $9::text[],
                         $10::timestamptz[])
        WITH ORDINALITY AS a(order_id, push_status, id, distributor_id, supplier_id, reason,
                             user_id, third_party_warehouse_id, request_id, at, n)
), claimed AS (
    UPDATE "{record}" w SET withdrawal_status = $11
    FROM asked a
    WHERE w.order_id = a.order_id AND w.withdrawal_status IS NULL
      AND w.push_status = a.push_status
      AND EXISTS (SELECT 1 FROM "{order}" o WHERE o.id = a.order_id
                  AND o.status = ANY($12::text[]) AND o.shipped_at IS NULL
                  AND o.supplier_id IS NOT NULL)
      AND (SELECT count(*) FROM "{withdrawal}" x WHERE x.order_id = a.order_id) < $13
    RETURNING a.n
), taken AS (
    SELECT a.* FROM asked a JOIN claimed USING (n)
), made AS (
    INSERT INTO "{withdrawal}" (id, order_id, distributor_id, supplier_id, status, reason,
                                resolution_note, requested_by_user_id, created_at, updated_at)
    SELECT id, order_id, distributor_id, supplier_id, $11, reason, '', user_id, at, at
    FROM taken
), queued AS (
    INSERT INTO "{task}" (kind, third_party_warehouse_id, order_id, withdrawal_id, state,
                          attempts, due_at, actor_user_id, request_id, created_at)
    SELECT $14, third_party_warehouse_id, order_id, id, $15, 0, at, user_id, request_id, at
    FROM taken
), drawn AS (
    SELECT nextval(pg_get_serial_sequence('"{event}"', 'id')) AS id, 1 AS part, e.n, e.type,
           e.subject_type, e.subject_id, e.payload::jsonb AS payload, e.actor_user_id,
           NULL::integer AS organisation
    FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::integer[])
         WITH ORDINALITY AS e(type, subject_type, subject_id, payload, actor_user_id, n)
    WHERE e.n IN (SELECT n FROM claimed)
    ORDER BY e.n
), {writing_drawn_sql("$21", "$22")}
SELECT n FROM claimed"""


async def request_together(writes: Sequence[WithdrawWrite]) -> list[bool]:
    """Requests of distinct orders in one statement: whether each was written (a request not
    written is refused exactly as it would have been alone: nothing ties it to the others)."""
    global _TOGETHER
    if _TOGETHER is None:
        _TOGETHER = _together_sql()
    first = writes[0]
    withdrawals = [w.withdrawal for w in writes]
    _, rows = await orm.connection_of(Withdrawal).execute_query(
        _TOGETHER,
        [
            [w.order_id for w in withdrawals],
            [w.push_status.value for w in writes],
            [w.id for w in withdrawals],
            [w.distributor_id for w in withdrawals],
            [w.supplier_id for w in withdrawals],
            [w.reason for w in withdrawals],
            [w.requested_by_user_id for w in withdrawals],
            [w.third_party_warehouse_id for w in writes],
            [w.request_id for w in writes],
            [w.now for w in writes],
            WithdrawalStatus.WITHDRAWING.value,
            [status.value for status in first.withdrawable],
            first.cap,
            TaskKind.CANCEL_ORDER.value,
            TaskState.PENDING.value,
            *many_event_parameters([w.event for w in writes]),
        ],
    )
    written = {int(row["n"]) for row in rows}
    for n, withdrawal in enumerate(withdrawals, 1):
        if n in written:
            orm.mark_stored(withdrawal)
    return [n in written for n in range(1, len(writes) + 1)]


class WithdrawQueue(WriteGroups[str, WithdrawWrite, bool]):
    """Withdraw requests arriving while one is written, written together (``write_groups``):
    one round trip and one commit for the group."""

    async def alone(self, write: WithdrawWrite) -> bool:
        return await request_in_one_statement(write)

    async def together(self, writes: list[WithdrawWrite]) -> list[bool | None]:
        return list(await request_together(writes))

    def orders(self, write: WithdrawWrite) -> Iterable[int]:
        return (write.withdrawal.order_id,)

    def after_group(self, outcomes: list[bool | None]) -> None:
        if any(outcomes):
            notify_after_commit()


_queues: PerLoop[WithdrawQueue] = PerLoop(WithdrawQueue)


async def request(write: WithdrawWrite) -> bool:
    """The request's statement: with the requests arriving together outside a transaction,
    by itself inside one."""
    if inside_transaction():
        return await request_in_one_statement(write)
    return await _queues.get().submit("withdrawals", write)


def queue_of_this_loop() -> WithdrawQueue | None:
    return _queues.existing()
