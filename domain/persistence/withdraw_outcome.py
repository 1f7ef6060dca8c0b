"""Withdrawn orders' outcomes written out: what they act on read in one statement, and on
PostgreSQL everything they change written in one more, for any number of them together.

Why: the worker applies this outcome once per withdrawal, as fast as distributors withdraw.
Through the ORM it was some twenty statements in two transactions (the attempt record, then
the outcome). Written one withdrawal at a time it is still one lock of the wallet and one
commit per withdrawal, and every refund of a distributor credits the same wallet row: its
withdrawals queue on that lock, each holding it through its commit. Written together, a batch
takes the lock and commits once.

How the write stays all or nothing without a transaction (as ``domain.persistence.payments``):
it first locks, table by table in the order the statement-by-statement path takes them and
within a table by id, the tasks (still PENDING under the lease they were claimed with), the
withdrawals (still WITHDRAWING), the orders' warehouse records, the wallets (LOCK_ORDER: before
the orders) and the orders at the versions they were read with; every change after that is
conditional on all of them having matched, and a locked row cannot change under the statement,
so everything is written or nothing is. When nothing is, the caller applies each outcome again
on its own, or statement by statement, which decides from fresh reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from compat import tortoise as orm
from domain.distribution.models import (
    TaskKind,
    TaskState,
    WarehouseAttempt,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalStatus,
)
from domain.orders.models import Order, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence.events import Recordable, many_event_parameters, recording_many_sql
from domain.persistence.rows import builder
from domain.persistence.sql import id_in


@dataclass(frozen=True)
class WithdrawalScene:
    """A withdrawal with its order (None for a return's) and the wallet the order's payment
    came from, which a refund goes back to (None if the buyer has none with the supplier)."""

    withdrawal: Withdrawal
    order: Order | None
    wallet: Wallet | None


_PARTS: tuple[tuple[type, str, str], ...] = (
    (Withdrawal, "w", "w_"),
    (Order, "o", "o_"),
    (Wallet, "a", "a_"),
)
_SCENE_HEAD: str | None = None


def _scene_head() -> str:
    global _SCENE_HEAD
    if _SCENE_HEAD is None:
        selected = ", ".join(
            f'{alias}."{column}" AS "{prefix}{column}"'
            for model, alias, prefix in _PARTS
            for column in orm.columns(model)
        )
        _SCENE_HEAD = (
            f'SELECT {selected} FROM "{orm.table(Withdrawal)}" w '
            f'LEFT JOIN "{orm.table(Order)}" o ON o."id" = w."order_id" '
            f'LEFT JOIN "{orm.table(Wallet)}" a ON a."buyer_id" = o."buyer_id" '
            'AND a."supplier_id" = w."supplier_id" WHERE '
        )
    return _SCENE_HEAD


async def withdrawal_scenes(withdrawal_ids: Sequence[int]) -> dict[int, WithdrawalScene]:
    """These withdrawals (by id) with their orders and the orders' wallets, in one statement
    (no lock: the write checks what it relies on)."""
    if not withdrawal_ids:
        return {}
    db = orm.connection_of(Withdrawal)
    among, values = id_in(db.capabilities.dialect, 'w."id"', 1, withdrawal_ids)
    _, rows = await db.execute_query(_scene_head() + among, values)
    withdrawals, orders, wallets = builder(Withdrawal), builder(Order), builder(Wallet)
    scenes = {}
    for row in rows:
        withdrawal = withdrawals.build(row, "w_")
        scenes[withdrawal.id] = WithdrawalScene(
            withdrawal=withdrawal,
            order=orders.build(row, "o_") if row["o_id"] is not None else None,
            wallet=wallets.build(row, "a_") if row["a_id"] is not None else None,
        )
    return scenes


@dataclass(frozen=True)
class WithdrawnOrder:
    """One withdrawn order's outcome, as read: what the write checks and what it writes."""

    task_id: int
    lease_owner: str | None  # the lease its task was claimed with
    attempt_outcome: str  # the call's outcome, recorded as the task's attempt
    withdrawal_id: int
    order_id: int
    order_version: int  # the version the order was read with
    order_from: OrderStatus
    order_reason: str  # of the timeline entry
    refunded_amount: Decimal  # the order's new refunded amount (all it was paid)
    wallet_id: int
    refund: Decimal  # credited to the wallet
    entry_note: str
    actor_user_id: int | None

    @property
    def refund_cents(self) -> int:
        return int((self.refund * 100).to_integral_exact())


@dataclass(frozen=True)
class WithdrawnWrite:
    """Withdrawn orders' outcomes written together (PostgreSQL, one statement). At most one
    outcome per order and per task."""

    orders: Sequence[WithdrawnOrder]
    attempts_kept: int  # of each order's attempts, the latest kept (the new one included)
    now: datetime
    events: Sequence[Recordable]  # recorded in this order


_WRITE_SQL: str | None = None


def _write_sql() -> str:
    task, attempt, withdrawal = (
        orm.table(WarehouseTask),
        orm.table(WarehouseAttempt),
        orm.table(Withdrawal),
    )
    record, wallet, entry = orm.table(WarehouseOrder), orm.table(Wallet), orm.table(WalletEntry)
    order, timeline = orm.table(Order), orm.table(OrderTransition)
    return f"""WITH item AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::integer[], $7::text[], $8::text[], $9::numeric[], $10::integer[],
                         $11::bigint[], $12::numeric[], $13::text[], $14::integer[])
        AS v(task_id, lease_owner, outcome, withdrawal_id, order_id, version, from_status,
             reason, refunded, wallet_id, cents, refund, note, actor)
), locked_tasks AS (
    SELECT t.id FROM "{task}" t JOIN item ON t.id = item.task_id
        AND t.lease_owner = item.lease_owner
    WHERE t.id = ANY($1::bigint[]) AND t.state = $15 ORDER BY t.id FOR UPDATE OF t
), locked_withdrawals AS (
    SELECT w.id FROM "{withdrawal}" w
    WHERE w.id = ANY($4::bigint[]) AND w.status = $16
        AND (SELECT count(*) FROM locked_tasks) = $17
    ORDER BY w.id FOR UPDATE
), locked_records AS (
    SELECT r.id FROM "{record}" r
    WHERE r.order_id = ANY($5::bigint[]) AND (SELECT count(*) FROM locked_withdrawals) = $17
    ORDER BY r.order_id FOR UPDATE
), locked_wallets AS (
    SELECT a.id FROM "{wallet}" a
    WHERE a.id = ANY($10::integer[]) AND (SELECT count(*) FROM locked_records) = $17
    ORDER BY a.id FOR UPDATE
), locked_orders AS (
    SELECT o.id FROM "{order}" o JOIN item ON o.id = item.order_id AND o.version = item.version
    WHERE o.id = ANY($5::bigint[])
        AND (SELECT count(*) FROM locked_wallets) = (SELECT count(DISTINCT wallet_id) FROM item)
    ORDER BY o.id FOR UPDATE OF o
), go AS (
    SELECT 1 WHERE (SELECT count(*) FROM locked_orders) = $17
), finished AS (
    UPDATE "{task}" t SET state = $18, finished_at = $19, lease_owner = NULL,
        lease_until = NULL, last_error = NULL
    FROM item WHERE t.id = ANY($1::bigint[]) AND t.id = item.task_id
        AND EXISTS (SELECT 1 FROM go)
), attempted AS (
    INSERT INTO "{attempt}" (task_id, kind, order_id, after_sales_id, ok, outcome, created_at)
    SELECT task_id, $20, order_id, NULL, true, outcome, $19 FROM item
    WHERE EXISTS (SELECT 1 FROM go)
), pruned AS (
    DELETE FROM "{attempt}" WHERE EXISTS (SELECT 1 FROM go) AND id IN (
        SELECT id FROM (
            SELECT id, row_number() OVER (PARTITION BY order_id ORDER BY id DESC) AS newer
            FROM "{attempt}" WHERE order_id = ANY($5::bigint[])
        ) AS kept WHERE kept.newer > $21
    )
), withdrawn AS (
    UPDATE "{withdrawal}" w SET status = $22, failure = NULL
    FROM item WHERE w.id = ANY($4::bigint[]) AND w.id = item.withdrawal_id
        AND EXISTS (SELECT 1 FROM go)
), shown AS (
    UPDATE "{record}" r SET withdrawal_status = $22
    FROM item WHERE r.order_id = ANY($5::bigint[]) AND r.order_id = item.order_id
        AND EXISTS (SELECT 1 FROM go)
), credited AS (
    UPDATE "{wallet}" a SET balance_cents = a.balance_cents + s.cents
    FROM (SELECT wallet_id, sum(cents)::bigint AS cents FROM item GROUP BY wallet_id) AS s
    WHERE a.id = ANY($10::integer[]) AND a.id = s.wallet_id AND EXISTS (SELECT 1 FROM go)
), entered AS (
    INSERT INTO "{entry}" (wallet_id, kind, amount, order_id, actor_user_id, note, created_at)
    SELECT wallet_id, $23, refund, order_id, actor, note, $19 FROM item
    WHERE EXISTS (SELECT 1 FROM go)
), changed AS (
    UPDATE "{order}" o SET status = $24, refunded_amount = item.refunded,
        version = o.version + 1
    FROM item WHERE o.id = ANY($5::bigint[]) AND o.id = item.order_id
        AND EXISTS (SELECT 1 FROM go)
), timeline AS (
    INSERT INTO "{timeline}" (order_id, from_status, to_status, actor_user_id, reason,
                              created_at)
    SELECT order_id, from_status, $24, actor, reason, $19 FROM item
    WHERE EXISTS (SELECT 1 FROM go)
), {recording_many_sql(25, only_if="go")}
SELECT EXISTS (SELECT 1 FROM go) AS written"""


async def withdrawn_in_one_statement(write: WithdrawnWrite) -> bool:
    """PostgreSQL only: for each order, finish its task, record its attempt, mark its
    withdrawal and warehouse record WITHDRAWN, refund its wallet with a ledger entry, cancel
    it (compare-and-set on its version, with its timeline entry); and record the events.
    False when a row was not as read (nothing is written then)."""
    global _WRITE_SQL
    if _WRITE_SQL is None:
        _WRITE_SQL = _write_sql()
    orders = write.orders
    params = [
        [o.task_id for o in orders],
        [o.lease_owner for o in orders],
        [o.attempt_outcome[:500] for o in orders],
        [o.withdrawal_id for o in orders],
        [o.order_id for o in orders],
        [o.order_version for o in orders],
        [o.order_from.value for o in orders],
        [o.order_reason[:500] for o in orders],
        [o.refunded_amount for o in orders],
        [o.wallet_id for o in orders],
        [o.refund_cents for o in orders],
        [o.refund for o in orders],
        [o.entry_note[:300] for o in orders],
        [o.actor_user_id for o in orders],
        TaskState.PENDING.value,
        WithdrawalStatus.WITHDRAWING.value,
        len(orders),
        TaskState.DONE.value,
        write.now,
        TaskKind.CANCEL_ORDER.value,
        max(0, write.attempts_kept - 1),  # the new attempt is the other one kept
        WithdrawalStatus.WITHDRAWN.value,
        EntryKind.REFUND.value,
        OrderStatus.CANCELLED.value,
        *many_event_parameters(write.events),
    ]
    _, rows = await orm.connection_of(Order).execute_query(_WRITE_SQL, params)
    return bool(rows[0]["written"])
