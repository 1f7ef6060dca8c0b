"""Reserving a payment's units of cloud stock in one statement on PostgreSQL: the buyer's wallet
locked first (LOCK_ORDER of ``domain.payments.commands``), then the stock items in id order;
if every item still has the units, each item's figures change once, and each line gets its
movement row, its reservation, and its ``stock_quantity``; the orders are marked as shipping
from the warehouse. Returns the items as they are after it, from which
``domain.stock.commands`` builds the events (figures after each line's movement). Runs inside
the payment's transaction, before the payment's own statement.

Other engines use ``domain.stock.ledger.apply_change`` line by line, which writes the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from compat import tortoise as orm
from domain.orders.models import Order, OrderLine
from domain.payments.models import Wallet
from domain.persistence.rows import builder
from domain.stock.models import (
    MovementKind,
    ReservationState,
    StockItem,
    StockMovement,
    StockReservation,
)


@dataclass(frozen=True)
class LineReservation:
    line_id: int
    order_id: int
    stock_item_id: int
    quantity: int


_SQL: str | None = None


def _statement() -> str:
    item, movement = orm.table(StockItem), orm.table(StockMovement)
    reservation, line, order = orm.table(StockReservation), orm.table(OrderLine), orm.table(Order)
    return f"""WITH locked_wallet AS (
    SELECT id FROM "{orm.table(Wallet)}" WHERE id = $1 FOR UPDATE
), wanted AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::integer[])
        AS a(line_id, order_id, item_id, quantity)
), per_item AS (
    SELECT item_id, sum(quantity)::integer AS quantity FROM wanted GROUP BY item_id
), locked_items AS (
    SELECT s.id FROM "{item}" s JOIN per_item p ON p.item_id = s.id
    WHERE s.available >= p.quantity AND EXISTS (SELECT 1 FROM locked_wallet)
    ORDER BY s.id FOR UPDATE OF s
), go AS (
    SELECT 1 WHERE (SELECT count(*) FROM locked_items) = (SELECT count(*) FROM per_item)
), changed AS (
    UPDATE "{item}" s SET reserved = s.reserved + p.quantity,
                          available = s.available - p.quantity, updated_at = now()
    FROM per_item p WHERE s.id = p.item_id AND EXISTS (SELECT 1 FROM go)
    RETURNING s.*
), moved AS (
    INSERT INTO "{movement}" (stock_item_id, kind, on_hand_delta, reserved_delta,
                              in_transit_delta, order_id, actor_user_id, reason, created_at)
    SELECT item_id, $6, 0, quantity, 0, order_id, $7, $8, now()
    FROM wanted WHERE EXISTS (SELECT 1 FROM go)
), held AS (
    INSERT INTO "{reservation}" (stock_item_id, order_id, order_line_id, quantity, state,
                                 created_at)
    SELECT item_id, order_id, line_id, quantity, $9, now()
    FROM wanted WHERE EXISTS (SELECT 1 FROM go)
), counted AS (
    UPDATE "{line}" l SET stock_quantity = w.quantity
    FROM wanted w WHERE l.id = w.line_id AND EXISTS (SELECT 1 FROM go)
), placed AS (
    UPDATE "{order}" SET cloud_warehouse_id = $10
    WHERE id IN (SELECT order_id FROM wanted) AND EXISTS (SELECT 1 FROM go)
)
SELECT * FROM changed"""


async def reserve_in_one_statement(
    *,
    wallet_id: int,
    warehouse_id: int,
    lines: Sequence[LineReservation],
    actor_user_id: int | None,
    reason: str,
) -> list[StockItem] | None:
    """The items after the reservation, or None (nothing written) when one of them no longer
    has the units."""
    global _SQL
    if _SQL is None:
        _SQL = _statement()
    _, rows = await orm.connection_of(StockItem).execute_query(
        _SQL,
        [
            wallet_id,
            [line.line_id for line in lines],
            [line.order_id for line in lines],
            [line.stock_item_id for line in lines],
            [line.quantity for line in lines],
            MovementKind.RESERVED.value,
            actor_user_id,
            reason[:300],
            ReservationState.HELD.value,
            warehouse_id,
        ],
    )
    return builder(StockItem).build_all(rows) if rows else None
