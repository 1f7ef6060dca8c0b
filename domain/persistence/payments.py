"""A payment written in one statement on PostgreSQL: the wallet debited, the orders moved to
their new status (compare-and-set on their versions), their lines priced, the ledger entries,
the timeline entries and the events, all or nothing; paying from stock, the same statement
holds the units in the buyer's stock items (figures, movements, reservations, each line's
``stock_quantity``) and builds the stock's events from the figures it leaves.

Why one statement: every payment of a buyer debits the same wallet row, so payments of one
buyer queue on its lock. Written as separate statements in a transaction, the lock is held
from the debit until the commit, across several round trips and whatever else the process
runs between them; written as one statement outside a transaction, it is held only while
the database executes it.

How it stays all or nothing without a transaction: the statement first locks the wallet
(``FOR UPDATE``, checking the balance on the newest row), then the stock items that still have
the units, then the orders at the versions they were read with (``FOR UPDATE`` re-checks each
on the newest row). Every change after that is conditional on all of them having matched in
full, and a locked row cannot change under the statement, so either everything is written or
nothing is. The locks are taken in the order ``domain/payments/commands.py`` (LOCK_ORDER)
asks. A row is changed by one expression only (PostgreSQL applies one of two updates of a
row in one statement): the order's status and its warehouse together, a line's price and its
units from stock together.

Other engines write the same rows in several statements inside the command's transaction
(``domain.payments.commands``): SQLite has one writer, so there is no lock to hold briefly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from compat import tortoise as orm
from domain.events import EventType
from domain.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence.events import Recordable, many_event_parameters, recording_many_sql
from domain.stock.models import (
    MovementKind,
    ReservationState,
    StockItem,
    StockMovement,
    StockReservation,
)


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
class HeldLine:
    """Units of one line taken from the buyer's stock item rather than supplied."""

    line_id: int
    order_id: int
    stock_item_id: int
    quantity: int


@dataclass(frozen=True)
class StockHold:
    """The part of a payment shipped from the buyer's cloud-warehouse stock: ``lines`` in
    (stock item, line) order, the order their movements are recorded in."""

    warehouse_id: int
    lines: Sequence[HeldLine]


@dataclass(frozen=True)
class PaymentWrite:
    wallet_id: int
    total_cents: int
    currency: str
    paid_at: datetime
    actor_user_id: int | None
    orders: Sequence[PaidOrder]
    line_prices: dict[int, Decimal]  # line id -> unit price
    events: Sequence[Recordable]  # after the stock's events (which the statement builds)
    stock: StockHold | None = None


@dataclass(frozen=True)
class PaymentOutcome:
    written: bool
    wallet_found: bool
    balance_cents: int  # before the payment (when it was not written: what it holds)
    orders_current: int  # orders still at the version they were read with
    stock_held: bool  # every stock item still had the units (True without stock)
    stock_events: tuple[str, ...]  # the types of the stock events written, in order


_SQL: dict[bool, str] = {}


def _statement(with_stock: bool) -> str:
    """The payment's statement; ``with_stock``: the variant that also holds units from stock
    (parameters $25 … $35, ``_stock_parameters``). Without stock the statement is left without
    the stock's expressions: the database prepares every expression of a statement again when
    a locked row it updates changed after the statement began (another payment's debit), so
    each one costs on every contended payment."""
    order, line = orm.table(Order), orm.table(OrderLine)
    wallet, entry, timeline = orm.table(Wallet), orm.table(WalletEntry), orm.table(OrderTransition)
    item, movement = orm.table(StockItem), orm.table(StockMovement)
    reservation = orm.table(StockReservation)
    stock_locked = f"""wanted AS (
    SELECT * FROM unnest($25::bigint[], $26::bigint[], $27::bigint[], $28::integer[])
        WITH ORDINALITY AS a(line_id, order_id, item_id, quantity, n)
), per_item AS (
    SELECT item_id, sum(quantity)::integer AS quantity FROM wanted GROUP BY item_id
), locked_items AS (
    SELECT s.id FROM "{item}" s JOIN per_item p ON p.item_id = s.id
    WHERE s.available >= p.quantity AND EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY s.id FOR UPDATE OF s
), held AS (
    SELECT 1 WHERE (SELECT count(*) FROM locked_items) = (SELECT count(*) FROM per_item)
), """
    stock_written = f"""items_changed AS (
    UPDATE "{item}" s SET reserved = s.reserved + p.quantity,
                          available = s.available - p.quantity, updated_at = $11
    FROM per_item p WHERE s.id = p.item_id AND EXISTS (SELECT 1 FROM go)
    RETURNING s.*
), moved AS (
    INSERT INTO "{movement}" (stock_item_id, kind, on_hand_delta, reserved_delta,
                              in_transit_delta, order_id, actor_user_id, reason, created_at)
    SELECT item_id, $30, 0, quantity, 0, order_id, $16, $31, $11
    FROM wanted WHERE EXISTS (SELECT 1 FROM go)
), reserved AS (
    INSERT INTO "{reservation}" (stock_item_id, order_id, order_line_id, quantity, state,
                                 created_at)
    SELECT item_id, order_id, line_id, quantity, $32, $11
    FROM wanted WHERE EXISTS (SELECT 1 FROM go)
), {
        stock_events_sql(
            lines="wanted",
            group="1",
            order="n",
            actor="$16",
            movement="$30",
            inventory_changed="$33",
            stock_low="$34",
        )
    }, """
    if with_stock:
        placed = """,
        cloud_warehouse_id = CASE WHEN EXISTS (SELECT 1 FROM wanted WHERE order_id = o.id)
                                  THEN $29::bigint ELSE o.cloud_warehouse_id END"""
        lines = (
            """unnest($13::bigint[], $14::numeric[], $35::integer[]) AS v(id, price, quantity)"""
        )
        line_values = """unit_price = coalesce(v.price, l.unit_price),
        stock_quantity = coalesce(v.quantity, l.stock_quantity)"""
    else:
        placed = ""
        lines = "unnest($13::bigint[], $14::numeric[]) AS v(id, price)"
        line_values = "unit_price = v.price"
    return f"""WITH locked_wallet AS (
    SELECT id, balance_cents FROM "{wallet}" WHERE id = $1 FOR UPDATE
), paid AS (
    SELECT * FROM unnest($2::bigint[], $3::integer[], $4::numeric[], $5::numeric[],
                         $6::integer[], $7::text[], $8::text[])
        AS v(id, version, goods, freight, method, note, reason)
), {stock_locked if with_stock else ""}locked_orders AS (
    SELECT o.id FROM "{order}" o JOIN paid ON o.id = paid.id AND o.version = paid.version
    WHERE EXISTS (SELECT 1 FROM {"held" if with_stock else "locked_wallet"})
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
        paid_at = $11, currency = $12, logistics_method_id = paid.method{placed},
        version = o.version + 1
    FROM paid WHERE o.id = paid.id AND EXISTS (SELECT 1 FROM go)
    RETURNING o.id
), lines_changed AS (
    UPDATE "{line}" AS l SET {line_values}
    FROM {lines}
    WHERE l.id = v.id AND EXISTS (SELECT 1 FROM go)
), entries AS (
    INSERT INTO "{entry}" (wallet_id, kind, amount, order_id, actor_user_id, note, created_at)
    SELECT $1, $15, -(paid.goods + paid.freight), paid.id, $16, paid.note, $11
    FROM paid WHERE EXISTS (SELECT 1 FROM go)
), timeline AS (
    INSERT INTO "{timeline}" (order_id, from_status, to_status, actor_user_id, reason,
                              created_at)
    SELECT paid.id, $17, $10, $16, paid.reason, $11 FROM paid WHERE EXISTS (SELECT 1 FROM go)
), {stock_written if with_stock else ""}{
        recording_many_sql(18, only_if="go", first_events="stock_events" if with_stock else None)
    }
SELECT EXISTS (SELECT 1 FROM debited) AS written,
       EXISTS (SELECT 1 FROM locked_wallet) AS wallet_found,
       COALESCE((SELECT balance_cents FROM locked_wallet), 0) AS balance_cents,
       (SELECT count(*) FROM locked_orders) AS orders_current,
       {"EXISTS (SELECT 1 FROM held)" if with_stock else "true"} AS stock_held,
       {"ARRAY(SELECT type FROM stock_events ORDER BY n)" if with_stock else "'{}'::text[]"}
           AS stock_events"""


def stock_events_sql(
    *,
    lines: str,
    group: str,
    order: str,
    actor: str,
    movement: str,
    inventory_changed: str,
    stock_low: str,
) -> str:
    """Per line held (rows of the earlier expression ``lines``, in ``order``, each of the
    payment ``group``), INVENTORY_CHANGED with the item's figures after that line's movement
    (the items' final figures, ``items_changed``, less the lines after it), and STOCK_LOW
    after the movement that takes the item below its threshold
    (``domain.stock.ledger.fell_below``): the events ``domain.stock.ledger.apply_change``
    records one movement at a time elsewhere. The other arguments are the SQL of the actor,
    the movement's kind and the two event types."""
    figures = f"""jsonb_build_object(
        'stockItemId', s.id::text, 'skuId', s.sku_id::text, 'warehouseId', s.warehouse_id::text,
        'onHand', s.on_hand, 'reserved', s.reserved - w.later,
        'available', s.available + w.later, 'inTransit', s.in_transit,
        'movement', {movement}::text, 'orderId', w.order_id::text)"""
    return f"""movements AS (
    SELECT {group} AS g, w.n, w.quantity, {actor} AS actor, s.id, s.buyer_id,
           s.available + w.later AS after, s.low_stock_threshold AS threshold,
           {figures} AS figures
    FROM (SELECT *, coalesce(sum(quantity) OVER (PARTITION BY item_id ORDER BY {order}
                                                 ROWS BETWEEN 1 FOLLOWING
                                                 AND UNBOUNDED FOLLOWING), 0) AS later
          FROM {lines}) w
    JOIN items_changed s ON s.id = w.item_id
), stock_events AS (
    SELECT g, 2 * n AS n, {inventory_changed}::text AS type,
           'StockItem'::text AS subject_type, id::text AS subject_id, figures AS payload,
           actor::integer AS actor_user_id, buyer_id::integer AS organisation
    FROM movements
    UNION ALL
    SELECT g, 2 * n + 1, {stock_low}::text, 'StockItem', id::text,
           figures || jsonb_build_object('threshold', threshold), actor::integer,
           buyer_id::integer
    FROM movements
    WHERE threshold IS NOT NULL AND after < threshold AND threshold <= after + quantity
)"""
    return f"""movements AS (
    SELECT w.n, w.quantity, w.later, s.id, s.buyer_id, s.available + w.later AS after,
           s.low_stock_threshold AS threshold, {figures} AS figures
    FROM (SELECT *, coalesce(sum(quantity) OVER (PARTITION BY item_id ORDER BY n
                                                 ROWS BETWEEN 1 FOLLOWING
                                                 AND UNBOUNDED FOLLOWING), 0) AS later
          FROM wanted) w
    JOIN items_changed s ON s.id = w.item_id
), stock_events AS (
    SELECT 2 * n AS n, $33::text AS type, 'StockItem'::text AS subject_type,
           id::text AS subject_id, figures AS payload, $16::integer AS actor_user_id,
           buyer_id::integer AS organisation
    FROM movements
    UNION ALL
    SELECT 2 * n + 1, $34::text, 'StockItem', id::text,
           figures || jsonb_build_object('threshold', threshold), $16::integer,
           buyer_id::integer
    FROM movements
    WHERE threshold IS NOT NULL AND after < threshold AND threshold <= after + quantity
)"""


async def pay_in_one_statement(write: PaymentWrite) -> PaymentOutcome:
    """PostgreSQL only; outside a transaction it is one by itself (see the module's text)."""
    with_stock = write.stock is not None
    if with_stock not in _SQL:
        _SQL[with_stock] = _statement(with_stock)
    orders = write.orders
    line_ids, prices, held = _line_changes(write)
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
        line_ids,
        prices,
        EntryKind.PAYMENT.value,
        write.actor_user_id,
        OrderStatus.AWAITING_PAYMENT.value,
        *many_event_parameters(write.events),
    ]
    if write.stock is not None:
        params += _stock_parameters(write.stock, held)
    _, rows = await orm.connection_of(Order).execute_query(_SQL[with_stock], params)
    row = rows[0]
    return PaymentOutcome(
        written=bool(row["written"]),
        wallet_found=bool(row["wallet_found"]),
        balance_cents=int(row["balance_cents"]),
        orders_current=int(row["orders_current"]),
        stock_held=bool(row["stock_held"]),
        stock_events=tuple(row["stock_events"]),
    )


def _line_changes(
    write: PaymentWrite,
) -> tuple[list[int], list[Decimal | None], list[int | None]]:
    """Each line changed once (the statement may update a row only once): its id, its price
    (None: unchanged) and its units from stock (None: unchanged)."""
    held = {line.line_id: line.quantity for line in write.stock.lines} if write.stock else {}
    ids = [*write.line_prices, *(i for i in held if i not in write.line_prices)]
    return ids, [write.line_prices.get(i) for i in ids], [held.get(i) for i in ids]


def _stock_parameters(stock: StockHold, held: list[int | None]) -> list[Any]:
    """$25 … $35 of the variant with stock: the lines held, the stock's constants, and each
    changed line's units from stock (``_line_changes``)."""
    return [
        [line.line_id for line in stock.lines],
        [line.order_id for line in stock.lines],
        [line.stock_item_id for line in stock.lines],
        [line.quantity for line in stock.lines],
        stock.warehouse_id,
        MovementKind.RESERVED.value,
        "paid order",
        ReservationState.HELD.value,
        EventType.INVENTORY_CHANGED.value,
        EventType.STOCK_LOW.value,
        held,
    ]
