"""A payment written in one statement on PostgreSQL: the wallet debited, the orders moved to
their new status (compare-and-set on their versions), their lines priced, the ledger entries,
the timeline entries and the events, all or nothing.

Why one statement: every payment of a buyer debits the same wallet row, so payments of one
buyer queue on its lock. Written as separate statements in a transaction, the lock is held
from the debit until the commit, across several round trips and whatever else the process
runs between them; written as one statement outside a transaction, it is held only while
the database executes it.

How it stays all or nothing without a transaction: the statement first locks the wallet
(``FOR UPDATE``, checking the balance on the newest row) and then the orders at the versions
they were read with (``FOR UPDATE`` re-checks the version on the newest row). Every change
after that is conditional on both having matched in full, and a locked row cannot change
under the statement, so either everything is written or nothing is. The wallet is locked
before the orders, as ``domain/payments/commands.py`` (LOCK_ORDER) asks.

Other engines write the same rows in several statements inside the command's transaction
(``domain.payments.commands``): SQLite has one writer, so there is no lock to hold briefly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from compat import tortoise as orm
from domain.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence.events import Recordable, many_event_parameters, recording_many_sql


@dataclass(frozen=True)
class PaidOrder:
    """One order of the payment: read at ``version``; what it becomes."""

    order_id: int
    version: int
    goods: Decimal
    freight: Decimal
    logistics_method_id: int | None
    entry_note: str
    reason: str

    @property
    def total(self) -> Decimal:
        return self.goods + self.freight


@dataclass(frozen=True)
class PaymentWrite:
    wallet_id: int
    total_cents: int
    currency: str
    paid_at: datetime
    actor_user_id: int | None
    orders: Sequence[PaidOrder]
    line_prices: dict[int, Decimal]  # line id -> unit price
    events: Sequence[Recordable]


@dataclass(frozen=True)
class PaymentOutcome:
    written: bool
    wallet_found: bool
    balance_cents: int  # before the payment (when it was not written: what it holds)
    orders_current: int  # orders still at the version they were read with


_SQL: str | None = None


def _statement() -> str:
    order, line = orm.table(Order), orm.table(OrderLine)
    wallet, entry, timeline = orm.table(Wallet), orm.table(WalletEntry), orm.table(OrderTransition)
    return f"""WITH locked_wallet AS (
    SELECT id, balance_cents FROM "{wallet}" WHERE id = $1 FOR UPDATE
), paid AS (
    SELECT * FROM unnest($2::bigint[], $3::integer[], $4::numeric[], $5::numeric[],
                         $6::integer[], $7::text[], $8::text[])
        AS v(id, version, goods, freight, method, note, reason)
), locked_orders AS (
    SELECT o.id FROM "{order}" o JOIN paid ON o.id = paid.id AND o.version = paid.version
    WHERE EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY o.id FOR UPDATE OF o
), go AS (
    SELECT 1 WHERE (SELECT balance_cents FROM locked_wallet) >= $9
               AND (SELECT count(*) FROM locked_orders) = (SELECT count(*) FROM paid)
), debited AS (
    UPDATE "{wallet}" SET balance_cents = balance_cents - $9
    WHERE id = $1 AND EXISTS (SELECT 1 FROM go)
    RETURNING id
), changed AS (
    UPDATE "{order}" AS o SET status = $10, goods_amount = paid.goods,
        freight_amount = paid.freight, paid_amount = paid.goods + paid.freight,
        paid_at = $11, currency = $12, logistics_method_id = paid.method,
        version = o.version + 1
    FROM paid WHERE o.id = paid.id AND EXISTS (SELECT 1 FROM go)
    RETURNING o.id
), priced AS (
    UPDATE "{line}" AS l SET unit_price = v.price
    FROM unnest($13::bigint[], $14::numeric[]) AS v(id, price)
    WHERE l.id = v.id AND EXISTS (SELECT 1 FROM go)
), entries AS (
    INSERT INTO "{entry}" (wallet_id, kind, amount, order_id, actor_user_id, note, created_at)
    SELECT $1, $15, -(paid.goods + paid.freight), paid.id, $16, paid.note, $11
    FROM paid WHERE EXISTS (SELECT 1 FROM go)
), timeline AS (
    INSERT INTO "{timeline}" (order_id, from_status, to_status, actor_user_id, reason,
                              created_at)
    SELECT paid.id, $17, $10, $16, paid.reason, $11 FROM paid WHERE EXISTS (SELECT 1 FROM go)
), {recording_many_sql(18, only_if="go")}
SELECT EXISTS (SELECT 1 FROM debited) AS written,
       EXISTS (SELECT 1 FROM locked_wallet) AS wallet_found,
       COALESCE((SELECT balance_cents FROM locked_wallet), 0) AS balance_cents,
       (SELECT count(*) FROM locked_orders) AS orders_current"""


async def pay_in_one_statement(write: PaymentWrite) -> PaymentOutcome:
    """PostgreSQL only; outside a transaction it is one by itself (see the module's text)."""
    global _SQL
    if _SQL is None:
        _SQL = _statement()
    orders = write.orders
    params = [
        write.wallet_id,
        [o.order_id for o in orders],
        [o.version for o in orders],
        [o.goods for o in orders],
        [o.freight for o in orders],
        [o.logistics_method_id for o in orders],
        [o.entry_note for o in orders],
        [o.reason[:500] for o in orders],
        write.total_cents,
        OrderStatus.AWAITING_SHIPPING.value,
        write.paid_at,
        write.currency,
        list(write.line_prices),
        list(write.line_prices.values()),
        EntryKind.PAYMENT.value,
        write.actor_user_id,
        OrderStatus.AWAITING_PAYMENT.value,
        *many_event_parameters(write.events),
    ]
    _, rows = await orm.connection_of(Order).execute_query(_SQL, params)
    row = rows[0]
    return PaymentOutcome(
        written=bool(row["written"]),
        wallet_found=bool(row["wallet_found"]),
        balance_cents=int(row["balance_cents"]),
        orders_current=int(row["orders_current"]),
    )
