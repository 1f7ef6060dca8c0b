"""Payments of one wallet written together on PostgreSQL.

Every payment of a buyer locks the same wallet row, so concurrent payments of one buyer queue on
it: each holds the lock while the database runs its statement and flushes its commit to disk,
and the next one waits for that. ``WalletQueue`` lets the first payment of a wallet go ahead
alone; those that arrive while it is being written wait and are then written together, in one
statement and one commit (``pay_together``), the way a database groups commits. A buyer paying
one order at a time sees no difference; many at once take one lock and one flush per group.

The statement keeps each payment all or nothing, as ``domain.persistence.payments`` does for one:
the wallet is locked first, then every order at the version it was read with; a payment is
taken when all of its orders are current and the balance covers it together with the payments
taken before it in the group (in arrival order). A payment refused only for the balance is
written again alone (``pay_in_one_statement``), so it is refused or taken exactly as if it had
come alone after the others. A group never holds two payments of one order: such a payment
waits for the next group.

Used only outside a transaction (inside one, the payment's statement is part of the caller's
transaction and runs by itself).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from compat import tortoise as orm
from domain.db import inside_transaction, notify_after_commit
from domain.events.models import Event, EventAudience
from domain.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence.events import audience_of
from domain.persistence.payments import PaymentOutcome, PaymentWrite, pay_in_one_statement

MAX_TOGETHER = 64  # payments in one statement


@dataclass
class _Waiting:
    write: PaymentWrite
    outcome: asyncio.Future[PaymentOutcome]


@dataclass
class WalletQueue:
    """Per wallet: whether a payment is being written, and the payments waiting for it."""

    writing: set[int] = field(default_factory=set)
    waiting: dict[int, list[_Waiting]] = field(default_factory=dict)
    groups_written: int = 0  # statements that wrote more than one payment (for tests)

    async def pay(self, write: PaymentWrite) -> PaymentOutcome:
        wallet = write.wallet_id
        if wallet not in self.writing:
            self.writing.add(wallet)
            try:
                return await pay_in_one_statement(write)
            finally:
                self._next(wallet)
        waiting = _Waiting(write, asyncio.get_running_loop().create_future())
        self.waiting.setdefault(wallet, []).append(waiting)
        return await waiting.outcome

    def _next(self, wallet: int) -> None:
        """The wallet's statement ended: write what waits for it, or free the wallet."""
        queued = self.waiting.pop(wallet, None)
        if not queued:
            self.writing.discard(wallet)
            return
        group, later = _group(queued)
        if later:
            self.waiting[wallet] = later
        task = asyncio.create_task(self._write(wallet, group))
        task.add_done_callback(lambda _: None)  # outcomes go to the waiting payments

    async def _write(self, wallet: int, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                outcomes = [await pay_in_one_statement(group[0].write)]
            else:
                outcomes = await pay_together([w.write for w in group])
                self.groups_written += 1
                if any(o.written for o in outcomes):
                    notify_after_commit()  # whatever became of the requests that wait
            for waiting, outcome in zip(group, outcomes, strict=True):
                if outcome is _ALONE:
                    outcome = await pay_in_one_statement(waiting.write)
                if not waiting.outcome.done():
                    waiting.outcome.set_result(outcome)
        except Exception as error:  # each waiting payment gets it as its own
            for waiting in group:
                if not waiting.outcome.done():
                    waiting.outcome.set_exception(error)
        finally:
            self._next(wallet)


def _group(queued: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
    """The next group in arrival order (at most ``MAX_TOGETHER``, no order twice) and the rest."""
    group: list[_Waiting] = []
    later: list[_Waiting] = []
    orders: set[int] = set()
    for waiting in queued:
        ids = {o.order_id for o in waiting.write.orders}
        if len(group) >= MAX_TOGETHER or ids & orders:
            later.append(waiting)
            continue
        group.append(waiting)
        orders |= ids
    return group, later


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WalletQueue] = (
    weakref.WeakKeyDictionary()
)


async def pay(write: PaymentWrite) -> PaymentOutcome:
    """A payment's statement: through the wallet's queue outside a transaction (payments of a
    wallet arriving together are written together), by itself inside one or with stock."""
    if inside_transaction() or write.stock is not None:
        return await pay_in_one_statement(write)
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = WalletQueue()
    return await queue.pay(write)


def queue_of_this_loop() -> WalletQueue | None:
    return _queues.get(asyncio.get_running_loop())


# Marks a payment of the group refused for the balance only: written again alone.
_ALONE = PaymentOutcome(
    written=False,
    wallet_found=True,
    balance_cents=0,
    orders_current=0,
    stock_held=True,
    stock_events=(),
)

_SQL: str | None = None


def _statement() -> str:
    order, line = orm.table(Order), orm.table(OrderLine)
    wallet, entry, timeline = orm.table(Wallet), orm.table(WalletEntry), orm.table(OrderTransition)
    event, audience = orm.table(Event), orm.table(EventAudience)
    return f"""WITH locked_wallet AS (
    SELECT id, balance_cents FROM "{wallet}" WHERE id = $1 FOR UPDATE
), payments AS (
    SELECT * FROM unnest($2::integer[], $3::bigint[]) AS t(g, total_cents)
), paid AS (
    SELECT * FROM unnest($4::integer[], $5::bigint[], $6::integer[], $7::numeric[],
                         $8::numeric[], $9::integer[], $10::text[], $11::text[],
                         $12::integer[], $14::timestamptz[])
        AS v(g, id, version, goods, freight, method, note, reason, actor, paid_at)
), locked_orders AS (
    SELECT o.id, paid.g FROM "{order}" o JOIN paid ON o.id = paid.id AND o.version = paid.version
    WHERE EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY o.id FOR UPDATE OF o
), current AS (
    SELECT p.g, p.total_cents FROM payments p
    WHERE (SELECT count(*) FROM locked_orders l WHERE l.g = p.g)
        = (SELECT count(*) FROM paid WHERE paid.g = p.g)
), taken AS (
    SELECT g, total_cents FROM (
        SELECT g, total_cents, sum(total_cents) OVER (ORDER BY g) AS running FROM current
    ) c
    WHERE running <= (SELECT balance_cents FROM locked_wallet)
), debited AS (
    UPDATE "{wallet}" SET balance_cents = balance_cents - (SELECT sum(total_cents) FROM taken)
    WHERE id = $1 AND EXISTS (SELECT 1 FROM taken)
), paid_taken AS (
    SELECT paid.* FROM paid JOIN taken USING (g)
), changed AS (
    UPDATE "{order}" AS o SET status = $13, goods_amount = p.goods,
        freight_amount = p.freight, paid_amount = p.goods + p.freight,
        paid_at = p.paid_at, currency = $15, logistics_method_id = p.method,
        version = o.version + 1
    FROM paid_taken p WHERE o.id = p.id
), lines_changed AS (
    UPDATE "{line}" AS l SET unit_price = v.price
    FROM unnest($16::integer[], $17::bigint[], $18::numeric[]) AS v(g, id, price)
    JOIN taken USING (g)
    WHERE l.id = v.id
), entries AS (
    INSERT INTO "{entry}" (wallet_id, kind, amount, order_id, actor_user_id, note, created_at)
    SELECT $1, $19, -(p.goods + p.freight), p.id, p.actor, p.note, p.paid_at
    FROM paid_taken p
), timeline AS (
    INSERT INTO "{timeline}" (order_id, from_status, to_status, actor_user_id, reason,
                              created_at)
    SELECT p.id, $20, $13, p.actor, p.reason, p.paid_at FROM paid_taken p
), drawn AS (
    SELECT nextval(pg_get_serial_sequence('"{event}"', 'id')) AS id, e.*
    FROM (SELECT e.* FROM unnest($21::integer[], $22::text[], $23::text[], $24::text[],
                                 $25::text[], $26::integer[])
                 WITH ORDINALITY AS e(g, type, subject_type, subject_id, payload,
                                      actor_user_id, n)
          JOIN taken USING (g)
          ORDER BY e.n) AS e
), recorded AS (
    INSERT INTO "{event}" (id, type, subject_type, subject_id, payload, actor_user_id,
                           created_at)
    SELECT id, type, subject_type, subject_id, payload::jsonb, actor_user_id, now()
    FROM drawn
), recorded_audience AS (
    INSERT INTO "{audience}" (event_id, organisation_id)
    SELECT drawn.id, a.organisation
    FROM drawn JOIN unnest($27::integer[], $28::integer[]) AS a(n, organisation)
         ON drawn.n = a.n
)
SELECT p.g,
       EXISTS (SELECT 1 FROM taken t WHERE t.g = p.g) AS written,
       EXISTS (SELECT 1 FROM current c WHERE c.g = p.g) AS current,
       EXISTS (SELECT 1 FROM locked_wallet) AS wallet_found,
       COALESCE((SELECT balance_cents FROM locked_wallet), 0) AS balance_cents,
       (SELECT count(*) FROM locked_orders l WHERE l.g = p.g) AS orders_current
FROM payments p ORDER BY p.g"""


async def pay_together(writes: Sequence[PaymentWrite]) -> list[PaymentOutcome]:
    """Payments of one wallet (plain ones, no stock; no order twice) in one statement: each one's
    outcome, or ``_ALONE`` for one to write again alone (refused only for the balance)."""
    global _SQL
    if _SQL is None:
        _SQL = _statement()
    _, rows = await orm.connection_of(Order).execute_query(_SQL, _parameters(writes))
    outcomes: list[PaymentOutcome] = []
    for row in rows:
        if not row["written"] and row["current"] and row["wallet_found"]:
            outcomes.append(_ALONE)
            continue
        outcomes.append(
            PaymentOutcome(
                written=bool(row["written"]),
                wallet_found=bool(row["wallet_found"]),
                balance_cents=int(row["balance_cents"]),
                orders_current=int(row["orders_current"]),
                stock_held=True,
                stock_events=(),
            )
        )
    return outcomes


def _parameters(writes: Sequence[PaymentWrite]) -> list[Any]:
    first = writes[0]
    groups = range(1, len(writes) + 1)
    orders = [(g, w, o) for g, w in zip(groups, writes, strict=True) for o in w.orders]
    lines = [
        (g, i, p) for g, w in zip(groups, writes, strict=True) for i, p in w.line_prices.items()
    ]
    events = [(g, w, e) for g, w in zip(groups, writes, strict=True) for e in w.events]
    positions: list[int] = []
    organisations: list[int] = []
    for n, (_, _, event) in enumerate(events, 1):
        for organisation in audience_of(event):
            positions.append(n)
            organisations.append(organisation)
    return [
        first.wallet_id,
        list(groups),
        [w.total_cents for w in writes],
        [g for g, _, _ in orders],
        [o.order_id for _, _, o in orders],
        [o.version for _, _, o in orders],
        [o.goods for _, _, o in orders],
        [o.freight for _, _, o in orders],
        [o.logistics_method_id for _, _, o in orders],
        [o.entry_note for _, _, o in orders],
        [o.reason[:500] for _, _, o in orders],
        [w.actor_user_id for _, w, _ in orders],
        OrderStatus.AWAITING_SHIPPING.value,
        [w.paid_at for _, w, _ in orders],
        first.currency,
        [g for g, _, _ in lines],
        [i for _, i, _ in lines],
        [p for _, _, p in lines],
        EntryKind.PAYMENT.value,
        OrderStatus.AWAITING_PAYMENT.value,
        [g for g, _, _ in events],
        [e.type.value for _, _, e in events],
        [e.subject_type for _, _, e in events],
        [str(e.subject_id) for _, _, e in events],
        [orm.to_db(Event, "payload", e.payload.to_payload()) for _, _, e in events],
        [e.actor_user_id for _, _, e in events],
        positions,
        organisations,
    ]
