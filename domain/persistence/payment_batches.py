"""Payments of one wallet written together on PostgreSQL.

Every payment of a buyer locks the same wallet row, so concurrent payments of one buyer queue on
it: each holds the lock while the database runs its statement and flushes its commit to disk,
and the next one waits for that. ``WalletQueue`` lets the first payment of a wallet go ahead
alone; those that arrive while it is being written wait and are then written together, in one
statement and one commit (``pay_together``, through ``write_groups``), the way a database groups
commits. A buyer paying one order at a time sees no difference; many at once take one lock and
one flush per group.

The statement keeps each payment all or nothing, as ``domain.persistence.payments`` does for one,
and takes the locks in the same order: the wallet, the stock items, the orders at the versions
they were read with. The payments taken are those, in arrival order, up to the first one the
balance (or an item's units) cannot cover together with the payments before it; a payment with
a stale order is refused as a conflict. The ones after that first one, and any refused payment
from stock, are written again alone (``pay_in_one_statement``), so each is taken or refused
exactly as if it had come alone after the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from compat import tortoise as orm
from domain.db import inside_transaction, notify_after_commit
from domain.events import EventType
from domain.events.models import Event
from domain.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence.events import audience_of, stored_payload, writing_drawn_sql
from domain.persistence.payments import (
    PaymentOutcome,
    PaymentWrite,
    pay_in_one_statement,
    stock_events_sql,
)
from domain.persistence.write_groups import PerLoop, WriteGroups
from domain.stock.models import (
    MovementKind,
    ReservationState,
    StockItem,
    StockMovement,
    StockReservation,
)


class WalletQueue(WriteGroups[int, PaymentWrite, PaymentOutcome]):
    """Per wallet: whether a payment is being written, and the payments waiting for it."""

    async def pay(self, write: PaymentWrite) -> PaymentOutcome:
        return await self.submit(write.wallet_id, write)

    async def alone(self, write: PaymentWrite) -> PaymentOutcome:
        return await pay_in_one_statement(write)

    async def together(self, writes: list[PaymentWrite]) -> list[PaymentOutcome | None]:
        return [None if o is _ALONE else o for o in await pay_together(writes)]

    def orders(self, write: PaymentWrite) -> Iterable[int]:
        return (o.order_id for o in write.orders)

    def after_group(self, outcomes: list[PaymentOutcome | None]) -> None:
        if any(o is not None and o.written for o in outcomes):
            notify_after_commit()  # whatever became of the requests that wait


_queues: PerLoop[WalletQueue] = PerLoop(WalletQueue)


async def pay(write: PaymentWrite) -> PaymentOutcome:
    """A payment's statement: through the wallet's queue outside a transaction (payments of a
    wallet arriving together are written together), by itself inside one."""
    if inside_transaction():
        return await pay_in_one_statement(write)
    return await _queues.get().pay(write)


def queue_of_this_loop() -> WalletQueue | None:
    return _queues.existing()


# Marks a payment of the group refused for the balance only: written again alone.
_ALONE = PaymentOutcome(
    written=False,
    wallet_found=True,
    balance_cents=0,
    orders_current=0,
    stock_held=True,
    stock_events=(),
)

_SQL: dict[bool, str] = {}


def _statement(with_stock: bool) -> str:
    """The group's statement; ``with_stock``: the variant for a group where a payment holds
    units from stock (parameters $29 … $41), which it takes as ``domain.persistence.payments``
    does, each item's units counted over the payments taken before it in the group."""
    order, line = orm.table(Order), orm.table(OrderLine)
    wallet, entry, timeline = orm.table(Wallet), orm.table(WalletEntry), orm.table(OrderTransition)
    event = orm.table(Event)
    item, movement = orm.table(StockItem), orm.table(StockMovement)
    reservation = orm.table(StockReservation)
    if with_stock:
        stock_read = f"""wanted AS (
    SELECT * FROM unnest($30::integer[], $31::bigint[], $32::bigint[], $33::bigint[],
                         $34::integer[]) WITH ORDINALITY AS a(g, line_id, order_id, item_id,
                                                              quantity, n)
), locked_items AS (
    SELECT s.id, s.available FROM "{item}" s
    WHERE s.id IN (SELECT item_id FROM wanted) AND EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY s.id FOR UPDATE OF s
), """
        stock_short = """
    UNION ALL
    SELECT u.g FROM (
        SELECT w.g, w.item_id, sum(w.quantity) OVER (PARTITION BY w.item_id ORDER BY w.g)
            AS running
        FROM wanted w JOIN current USING (g)
    ) u LEFT JOIN locked_items i ON i.id = u.item_id
    WHERE i.id IS NULL OR u.running > i.available"""
        stock_written = f"""wanted_taken AS (
    SELECT w.*, p.actor FROM wanted w JOIN taken USING (g) JOIN payments p USING (g)
), items_changed AS (
    UPDATE "{item}" s SET reserved = s.reserved + t.quantity,
                          available = s.available - t.quantity, updated_at = now()
    FROM (SELECT item_id, sum(quantity)::integer AS quantity FROM wanted_taken
          GROUP BY item_id) t
    WHERE s.id = t.item_id
    RETURNING s.*
), moved AS (
    INSERT INTO "{movement}" (stock_item_id, kind, on_hand_delta, reserved_delta,
                              in_transit_delta, order_id, actor_user_id, reason, created_at)
    SELECT item_id, $35, 0, quantity, 0, order_id, actor, $36, now() FROM wanted_taken
), reserved AS (
    INSERT INTO "{reservation}" (stock_item_id, order_id, order_line_id, quantity, state,
                                 created_at)
    SELECT item_id, order_id, line_id, quantity, $37, now() FROM wanted_taken
), {
            stock_events_sql(
                lines="wanted_taken",
                group="w.g",
                order="g, n",
                actor="w.actor",
                movement="$35",
                inventory_changed="$38",
                stock_low="$39",
            )
        }, """
        built_events = """SELECT g, 0 AS part, n, type, subject_type, subject_id, payload,
                 actor_user_id, organisation
          FROM stock_events
          UNION ALL
          """
        placed = """,
        cloud_warehouse_id = CASE WHEN EXISTS (SELECT 1 FROM wanted WHERE order_id = o.id)
                                  THEN p.warehouse ELSE o.cloud_warehouse_id END"""
        lines = """unnest($16::integer[], $17::bigint[], $18::numeric[], $40::integer[])
        AS v(g, id, price, quantity)"""
        line_values = """unit_price = coalesce(v.price, l.unit_price),
        stock_quantity = coalesce(v.quantity, l.stock_quantity)"""
        group_events = "ARRAY(SELECT type FROM stock_events e WHERE e.g = p.g ORDER BY e.n)"
        payments = """unnest($2::integer[], $3::bigint[], $29::bigint[], $41::integer[])
        AS t(g, total_cents, warehouse, actor)"""
    else:
        stock_read = stock_short = stock_written = built_events = placed = ""
        lines = "unnest($16::integer[], $17::bigint[], $18::numeric[]) AS v(g, id, price)"
        line_values = "unit_price = v.price"
        group_events = "'{}'::text[]"
        payments = "unnest($2::integer[], $3::bigint[]) AS t(g, total_cents)"
    return f"""WITH locked_wallet AS (
    SELECT id, balance_cents FROM "{wallet}" WHERE id = $1 FOR UPDATE
), payments AS (
    SELECT * FROM {payments}
), paid AS (
    SELECT * FROM unnest($4::integer[], $5::bigint[], $6::integer[], $7::numeric[],
                         $8::numeric[], $9::integer[], $10::text[], $11::text[],
                         $12::integer[], $14::timestamptz[])
        AS v(g, id, version, goods, freight, method, note, reason, actor, paid_at)
), {stock_read}locked_orders AS (
    SELECT o.id, paid.g FROM "{order}" o JOIN paid ON o.id = paid.id AND o.version = paid.version
    WHERE EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY o.id FOR UPDATE OF o
), current AS (
    SELECT p.g, p.total_cents FROM payments p
    WHERE (SELECT count(*) FROM locked_orders l WHERE l.g = p.g)
        = (SELECT count(*) FROM paid WHERE paid.g = p.g)
), short AS (
    SELECT g FROM (
        SELECT g, sum(total_cents) OVER (ORDER BY g) AS running FROM current
    ) m
    WHERE running > (SELECT balance_cents FROM locked_wallet){stock_short}
), taken AS (
    SELECT g, total_cents FROM current
    WHERE g < coalesce((SELECT min(g) FROM short), 2147483647)
), debited AS (
    UPDATE "{wallet}" SET balance_cents = balance_cents - (SELECT sum(total_cents) FROM taken)
    WHERE id = $1 AND EXISTS (SELECT 1 FROM taken)
), paid_taken AS (
    SELECT paid.*{", payments.warehouse" if with_stock else ""}
    FROM paid JOIN taken USING (g){" JOIN payments USING (g)" if with_stock else ""}
), changed AS (
    UPDATE "{order}" AS o SET status = $13, goods_amount = p.goods,
        freight_amount = p.freight, paid_amount = p.goods + p.freight,
        paid_at = p.paid_at, currency = $15, logistics_method_id = p.method{placed},
        version = o.version + 1
    FROM paid_taken p WHERE o.id = p.id
), lines_changed AS (
    UPDATE "{line}" AS l SET {line_values}
    FROM {lines}
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
), {stock_written}drawn AS (
    SELECT nextval(pg_get_serial_sequence('"{event}"', 'id')) AS id, e.*
    FROM ({built_events}SELECT e.g, 1 AS part, e.n, e.type, e.subject_type, e.subject_id,
                 e.payload::jsonb, e.actor_user_id, NULL::integer AS organisation
          FROM unnest($21::integer[], $22::text[], $23::text[], $24::text[], $25::text[],
                      $26::integer[])
               WITH ORDINALITY AS e(g, type, subject_type, subject_id, payload,
                                    actor_user_id, n)
          WHERE e.g IN (SELECT g FROM taken)
          ORDER BY g, part, n) AS e
), {writing_drawn_sql("$27", "$28")}
SELECT p.g,
       EXISTS (SELECT 1 FROM taken t WHERE t.g = p.g) AS written,
       EXISTS (SELECT 1 FROM current c WHERE c.g = p.g) AS current,
       EXISTS (SELECT 1 FROM locked_wallet) AS wallet_found,
       COALESCE((SELECT balance_cents FROM locked_wallet), 0) AS balance_cents,
       (SELECT count(*) FROM locked_orders l WHERE l.g = p.g) AS orders_current,
       {group_events} AS stock_events
FROM payments p ORDER BY p.g"""


async def pay_together(writes: Sequence[PaymentWrite]) -> list[PaymentOutcome]:
    """Payments of one wallet (no order twice) in one statement: each one's outcome, or
    ``_ALONE`` for one to write again alone (refused for the balance or the stock, or any
    refused payment from stock, whose errors come in the order the single statement finds
    them)."""
    with_stock = any(w.stock is not None for w in writes)
    if with_stock not in _SQL:
        _SQL[with_stock] = _statement(with_stock)
    params = _parameters(writes)
    if with_stock:
        params += _stock_parameters(writes)
    _, rows = await orm.connection_of(Order).execute_query(_SQL[with_stock], params)
    outcomes: list[PaymentOutcome] = []
    for row, write in zip(rows, writes, strict=True):
        if not row["written"] and row["wallet_found"] and (row["current"] or write.stock):
            outcomes.append(_ALONE)  # its own error, in its own order of precedence
            continue
        outcomes.append(
            PaymentOutcome(
                written=bool(row["written"]),
                wallet_found=bool(row["wallet_found"]),
                balance_cents=int(row["balance_cents"]),
                orders_current=int(row["orders_current"]),
                stock_held=True,
                stock_events=tuple(row["stock_events"]),
            )
        )
    return outcomes


def _lines(writes: Sequence[PaymentWrite]) -> list[tuple[int, int, Decimal | None, int | None]]:
    """(group, line id, price, units from stock) of each line a payment changes, once."""
    out: list[tuple[int, int, Decimal | None, int | None]] = []
    for g, write in enumerate(writes, 1):
        held = {h.line_id: h.quantity for h in write.stock.lines} if write.stock else {}
        ids = [*write.line_prices, *(i for i in held if i not in write.line_prices)]
        out += [(g, i, write.line_prices.get(i), held.get(i)) for i in ids]
    return out


def _parameters(writes: Sequence[PaymentWrite]) -> list[Any]:
    first = writes[0]
    groups = range(1, len(writes) + 1)
    orders = [(g, w, o) for g, w in zip(groups, writes, strict=True) for o in w.orders]
    lines = _lines(writes)
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
        [g for g, _, _, _ in lines],
        [i for _, i, _, _ in lines],
        [p for _, _, p, _ in lines],
        EntryKind.PAYMENT.value,
        OrderStatus.AWAITING_PAYMENT.value,
        [g for g, _, _ in events],
        [e.type.value for _, _, e in events],
        [e.subject_type for _, _, e in events],
        [str(e.subject_id) for _, _, e in events],
        [orm.to_db(Event, "payload", stored_payload(e)) for _, _, e in events],
        [e.actor_user_id for _, _, e in events],
        positions,
        organisations,
    ]


def _stock_parameters(writes: Sequence[PaymentWrite]) -> list[Any]:
    """$29 … $41 of the variant with stock."""
    held = [(g, h) for g, w in enumerate(writes, 1) if w.stock is not None for h in w.stock.lines]
    return [
        [w.stock.warehouse_id if w.stock else None for w in writes],
        [g for g, _ in held],
        [h.line_id for _, h in held],
        [h.order_id for _, h in held],
        [h.stock_item_id for _, h in held],
        [h.quantity for _, h in held],
        MovementKind.RESERVED.value,
        "paid order",
        ReservationState.HELD.value,
        EventType.INVENTORY_CHANGED.value,
        EventType.STOCK_LOW.value,
        [q for _, _, _, q in _lines(writes)],
        [w.actor_user_id for w in writes],
    ]
