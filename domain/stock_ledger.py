"""The stock ledger: the one way a cloud-warehouse stock figure changes (``apply_change``: the
guarded update, its movement row and its events), and the settling of an order's reservations
when it ships or ends unshipped, which the order state machine calls.

Apart from ``domain/stock.py`` so that the state machine (``domain/order_status.py``) can settle
stock without importing the stock services, which themselves move orders through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.expressions import F

from domain.errors import DomainError, ErrorCode
from domain.events import EventType, record_event
from domain.models.catalogue import Sku
from domain.models.orders import Order
from domain.models.stock import (
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
    payload = {
        "stockItemId": str(item.id),
        "skuId": str(item.sku_id),
        "warehouseId": str(item.warehouse_id),
        "onHand": item.on_hand,
        "reserved": item.reserved,
        "available": item.available,
        "inTransit": item.in_transit,
        "movement": kind.value,
        "orderId": str(order_id) if order_id else None,
    }
    await record_event(
        type=EventType.INVENTORY_CHANGED,
        subject_type="StockItem",
        subject_id=item.id,
        audience=[item.buyer_id],
        payload=payload,
        actor_user_id=actor_user_id,
    )
    threshold = item.low_stock_threshold
    before = item.available - delta.available
    if threshold is not None and item.available < threshold <= before:
        await record_event(
            type=EventType.STOCK_LOW,
            subject_type="StockItem",
            subject_id=item.id,
            audience=[item.buyer_id],
            payload={**payload, "threshold": threshold},
            actor_user_id=actor_user_id,
        )
    return item


async def settle_reservations(order: Order, *, shipped: bool, actor_user_id: int | None) -> None:
    """The order shipped (its held units leave the warehouse) or ended unshipped (they are
    released). Called by the order state machine on SHIPPED, CANCELLED and REFUNDED."""
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
