"""The stock ledger: the one way a cloud-warehouse stock figure changes (``apply_change``: the
guarded update, its movement row and its events), and what an order's status change does to
stock (the lifecycle hooks at the end, listed in ``domain/lifecycle.py``): shipping or ending
an order paid from stock settles its reservations; shipping a stocking order puts its units in
transit.

Apart from ``domain/stock/commands.py`` so that the lifecycle hooks, which the state machine
(``domain/orders/status.py``) runs, import no stock service that itself moves orders through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.expressions import F

from domain.catalogue.models import Sku
from domain.errors import DomainError, ErrorCode
from domain.events import record_event
from domain.events.catalogue import InventoryChanged, StockLow
from domain.orders.models import Order, OrderKind, OrderLine, OrderStatus
from domain.stock.models import (
    MovementKind,
    ReservationState,
    StockItem,
    StockMovement,
    StockReservation,
)

# -- the one way a figure changes ----------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    on_hand: int = 0
    reserved: int = 0
    in_transit: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def fell_below(threshold: int | None, *, before: int, after: int) -> bool:
    """Whether a movement took the available units below the item's low-stock threshold (a
    STOCK_LOW event): only the movement that crosses it, not every one below it."""
    return threshold is not None and after < threshold <= before


async def stock_item(buyer_id: int, warehouse_id: int, sku_id: int) -> StockItem:
    item, _ = await StockItem.get_or_create(
        buyer_id=buyer_id, warehouse_id=warehouse_id, sku_id=sku_id
    )
    return item


async def apply_change(
    item_id: int,
    delta: Delta,
    *,
    kind: MovementKind,
    order_id: int | None,
    actor_user_id: int | None,
    reason: str = "",
    field: str = "orderIds",
) -> StockItem:
    """Change one stock item by ``delta`` unless a figure would go negative (then
    INSUFFICIENT_STOCK), write the ledger row and the events. Inside the caller's transaction."""
    guards: dict[str, int] = {}
    for column, change in (
        ("on_hand", delta.on_hand),
        ("reserved", delta.reserved),
        ("in_transit", delta.in_transit),
        ("available", delta.available),
    ):
        if change < 0:
            guards[f"{column}__gte"] = -change
    updated = await StockItem.filter(id=item_id, **guards).update(
        on_hand=F("on_hand") + delta.on_hand,
        reserved=F("reserved") + delta.reserved,
        available=F("available") + delta.available,
        in_transit=F("in_transit") + delta.in_transit,
    )
    item = await StockItem.get(id=item_id)
    if updated != 1:
        sku = await Sku.get(id=item.sku_id)
        raise DomainError(
            ErrorCode.INSUFFICIENT_STOCK,
            f"SKU {sku.code}: {item.available} available in the cloud warehouse.",
            field=field,
        )
    await StockMovement.create(
        stock_item_id=item.id,
        kind=kind,
        on_hand_delta=delta.on_hand,
        reserved_delta=delta.reserved,
        in_transit_delta=delta.in_transit,
        order_id=order_id,
        actor_user_id=actor_user_id,
        reason=reason[:300],
    )
    await record_event(
        InventoryChanged.of(item, movement=kind, order_id=order_id, actor_user_id=actor_user_id)
    )
    threshold = item.low_stock_threshold
    if fell_below(threshold, before=item.available - delta.available, after=item.available):
        assert threshold is not None
        await record_event(
            StockLow.of(
                item,
                movement=kind,
                order_id=order_id,
                threshold=threshold,
                actor_user_id=actor_user_id,
            )
        )
    return item


async def settle_reservations(order: Order, *, shipped: bool, actor_user_id: int | None) -> None:
    """The order shipped (its held units leave the warehouse) or ended unshipped (they are
    released)."""
    held = await StockReservation.filter(order_id=order.id, state=ReservationState.HELD).order_by(
        "stock_item_id"
    )
    for reservation in held:
        moved = await StockReservation.filter(
            id=reservation.id, state=ReservationState.HELD
        ).update(state=ReservationState.CONSUMED if shipped else ReservationState.RELEASED)
        if moved != 1:
            continue
        q = reservation.quantity
        why = "shipped" if shipped else order.status.value.lower()
        await apply_change(
            reservation.stock_item_id,
            Delta(on_hand=-q, reserved=-q) if shipped else Delta(reserved=-q),
            kind=MovementKind.SHIPPED if shipped else MovementKind.RELEASED,
            order_id=order.id,
            actor_user_id=actor_user_id,
            reason=f"order {order.number} {why}",
        )


async def record_in_transit(order: Order, *, actor_user_id: int | None) -> None:
    """A CLOUD_WAREHOUSE order shipped: its units are in transit to the buyer's stock."""
    assert order.cloud_warehouse_id is not None
    for line in await OrderLine.filter(order_id=order.id, sku_id__isnull=False).order_by("id"):
        item = await stock_item(order.buyer_id, order.cloud_warehouse_id, line.sku_id or 0)
        await apply_change(
            item.id,
            Delta(in_transit=line.quantity),
            kind=MovementKind.IN_TRANSIT,
            order_id=order.id,
            actor_user_id=actor_user_id,
            reason=f"stocking order {order.number} shipped",
        )


# -- lifecycle hooks (domain/lifecycle.py): ``order`` already has its new status -----------------


def paid_from_stock(order: Order) -> bool:
    """Whether ``order`` holds units of cloud-warehouse stock (``settle_paid_from_stock``)."""
    return order.cloud_warehouse_id is not None


def is_stocking(order: Order) -> bool:
    """Whether ``order`` brings units to the buyer's stock (``stocking_order_in_transit``)."""
    return order.kind is OrderKind.CLOUD_WAREHOUSE


async def settle_paid_from_stock(order: Order, *, actor_user_id: int | None) -> None:
    """On SHIPPED, CANCELLED and REFUNDED: an order paid from cloud-warehouse stock deducts
    (shipped) or releases (ended unshipped) the units it holds."""
    if paid_from_stock(order):
        await settle_reservations(
            order, shipped=order.status is OrderStatus.SHIPPED, actor_user_id=actor_user_id
        )


async def stocking_order_in_transit(order: Order, *, actor_user_id: int | None) -> None:
    """On SHIPPED: a stocking (CLOUD_WAREHOUSE) order's units are in transit to the stock."""
    if is_stocking(order):
        await record_in_transit(order, actor_user_id=actor_user_id)
