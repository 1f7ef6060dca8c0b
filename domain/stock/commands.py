"""Cloud-warehouse stock: stocking orders in transit and received, reservations by paid orders,
deductions on shipping, releases on cancel — every change one conditional UPDATE plus its
ledger row, so figures never go negative and always equal the sum of the ledger. (The reads
are in ``domain/stock/queries.py``.)

Overselling: a reservation is ``UPDATE stock_item SET reserved = reserved + n, available =
available - n WHERE id = ? AND available >= n``. Of two payments racing for the last units, one
update matches and the other finds no row and is refused. Items of one payment are updated in
ascending id order, so on PostgreSQL two payments lock rows in the same order and never deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from secrets import token_urlsafe

from domain import limits
from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.catalogue.models import LogisticsMethod, Sku
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, ValidationErrors, not_found
from domain.events import record_event
from domain.events.catalogue import (
    CloudWarehouseUpdated,
    StockThresholdChanged,
)
from domain.orders.intake import ManualLine, clean_address, create_manual_order
from domain.orders.models import Order, OrderKind, OrderLine, OrderStatus
from domain.orders.status import transition
from domain.organisations.models import Organisation
from domain.persistence.charges import StockRead
from domain.persistence.payments import HeldLine, StockHold
from domain.stock.ledger import Delta, apply_change, stock_item
from domain.stock.models import (
    CloudWarehouse,
    MovementKind,
    StockItem,
    StockReservation,
)
from domain.stock.queries import item_of_buyer
from domain.validation import clean_text

# -- warehouses ----------------------------------------------------------------------------------


async def create_cloud_warehouse(
    *, viewer: Viewer, name: str, address: dict[str, str]
) -> tuple[CloudWarehouse, str]:
    """A new cloud warehouse and the secret its receipt callbacks are signed with (shown once)."""
    require_supplier_staff(viewer)
    name = clean_text(name, field="name", max_length=200)
    cleaned = clean_address(address, field="address")
    secret = token_urlsafe(32)
    async with transaction():
        await limits.ensure_room(
            CloudWarehouse.filter(supplier_id=viewer.organisation_id),
            limits.MAX_CLOUD_WAREHOUSES_PER_SUPPLIER,
            message=f"At most {limits.MAX_CLOUD_WAREHOUSES_PER_SUPPLIER} cloud warehouses per "
            "supplier.",
            lock=Organisation.filter(id=viewer.organisation_id),
        )
        warehouse = await CloudWarehouse.create(
            supplier_id=viewer.organisation_id, name=name, address=cleaned, callback_secret=secret
        )
        await record_event(
            CloudWarehouseUpdated.of(warehouse, change="CREATED", actor_user_id=viewer.user_id)
        )
    return warehouse, secret


async def active_warehouse(warehouse_id: int, *, field: str = "warehouseId") -> CloudWarehouse:
    warehouse = await CloudWarehouse.get_or_none(id=warehouse_id, is_active=True)
    if warehouse is None:
        raise not_found("Cloud warehouse", field=field)
    return warehouse


async def create_stocking_order(
    *,
    viewer: Viewer,
    warehouse_id: int,
    lines: list[ManualLine],
    logistics_method_id: int | None,
) -> Order:
    """A buyer's CLOUD_WAREHOUSE order: SKUs bought at the quantity tiers, shipped into its
    stock in the chosen warehouse. Starts AWAITING_PAYMENT and is paid like any order."""
    require_buyer(viewer)
    warehouse = await active_warehouse(warehouse_id)
    return await create_manual_order(
        viewer=viewer,
        lines=lines,
        shipping_address={
            **warehouse.address,
            "name": warehouse.address.get("name") or warehouse.name,
        },
        logistics_method_id=logistics_method_id,
        kind=OrderKind.CLOUD_WAREHOUSE,
        cloud_warehouse_id=warehouse.id,
        cloud_warehouse_supplier_id=warehouse.supplier_id,
    )


# -- stocking orders -----------------------------------------------------------------------------


async def expected_arrival(order: Order, shipped_at: datetime) -> datetime | None:
    if order.logistics_method_id is None:
        return None
    method = await LogisticsMethod.get_or_none(id=order.logistics_method_id)
    return shipped_at + timedelta(days=method.max_days) if method else None


async def receive_stock(
    *, viewer: Viewer, order_id: int, received: dict[int, int] | None = None
) -> Order:
    """Supplier staff (or the warehouse) record what arrived of a shipped stocking order.

    ``received``: units per line id; lines not named arrived in full. Everything received goes
    on hand. All arrived → FULFILLED; a shortfall is recorded in the ledger and the order is
    held ABNORMAL with the difference.
    """
    require_supplier_staff(viewer)
    async with transaction():
        order = await Order.get_or_none(id=order_id, supplier_id=viewer.organisation_id)
        if order is None or order.kind is not OrderKind.CLOUD_WAREHOUSE:
            raise not_found("Cloud-warehouse order", field="orderId")
        return await _receive(order, received or {}, actor_user_id=viewer.user_id)


async def receive_from_warehouse(
    *, warehouse_id: int, order_id: int, received_by_sku: dict[str, int]
) -> Order:
    """The cloud warehouse's own receipt (its signed callback): ``order_id`` is the order its
    ``reference`` names, ``received_by_sku`` the units that arrived per SKU code (SKUs not
    named: none arrived)."""
    async with transaction():
        order = await Order.get_or_none(
            id=order_id, kind=OrderKind.CLOUD_WAREHOUSE, cloud_warehouse_id=warehouse_id
        )
        if order is None:
            raise not_found("Cloud-warehouse order of this warehouse", field="reference")
        lines = await OrderLine.filter(order_id=order.id).order_by("id")
        skus = {s.id: s.code for s in await Sku.filter(id__in=[ln.sku_id for ln in lines])}
        left = dict(received_by_sku)
        received: dict[int, int] = {}
        for line in lines:
            code = skus.get(line.sku_id or 0, "")
            received[line.id] = min(line.quantity, max(left.get(code, 0), 0))
            left[code] = left.get(code, 0) - received[line.id]
        return await _receive(order, received, actor_user_id=None)


async def _receive(order: Order, received: dict[int, int], *, actor_user_id: int | None) -> Order:
    """Put what arrived (units per line; lines not named: all) on hand, in the caller's
    transaction."""
    if order.status is not OrderStatus.SHIPPED or order.stock_received_at is not None:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Order {order.number} is {order.status.value}: only a shipped stocking order "
            "not yet received can be received.",
            field="orderId",
        )
    lines = {ln.id: ln for ln in await OrderLine.filter(order_id=order.id).order_by("id")}
    problems = [
        DomainError(ErrorCode.NOT_FOUND, "Not a line of this order.", field=f"lines.{i}.lineId")
        for i, line_id in enumerate(received)
        if line_id not in lines
    ] + [
        DomainError(
            ErrorCode.INVALID,
            f"0 to {lines[line_id].quantity} units.",
            field=f"lines.{i}.quantity",
        )
        for i, (line_id, got) in enumerate(received.items())
        if line_id in lines and not 0 <= got <= lines[line_id].quantity
    ]
    if problems:
        raise ValidationErrors(problems)
    short: list[str] = []
    skus = {s.id: s for s in await Sku.filter(id__in=[ln.sku_id for ln in lines.values()])}
    for line in lines.values():
        got = received.get(line.id, line.quantity)
        item = await stock_item(order.buyer_id, order.cloud_warehouse_id or 0, line.sku_id or 0)
        await apply_change(
            item.id,
            Delta(on_hand=got, in_transit=-got),
            kind=MovementKind.RECEIVED,
            order_id=order.id,
            actor_user_id=actor_user_id,
            reason=f"stocking order {order.number} received",
        )
        if got < line.quantity:
            missing = line.quantity - got
            code = skus[line.sku_id or 0].code
            short.append(f"{code}: {got} of {line.quantity} arrived ({missing} short)")
            await apply_change(
                item.id,
                Delta(in_transit=-missing),
                kind=MovementKind.SHORTFALL,
                order_id=order.id,
                actor_user_id=actor_user_id,
                reason=f"{missing} of stocking order {order.number} did not arrive",
            )
    now = datetime.now(UTC)
    if short:
        reason = ("partial receipt: " + "; ".join(short))[:500]
        await transition(
            order,
            OrderStatus.ABNORMAL,
            actor_user_id=actor_user_id,
            reason=reason,
            changes={
                "stock_received_at": now,
                "status_before_abnormal": order.status,
                "abnormal_reason": reason,
            },
        )
    else:
        await transition(
            order,
            OrderStatus.FULFILLED,
            actor_user_id=actor_user_id,
            reason="received in the cloud warehouse",
            changes={"stock_received_at": now},
        )
    return order


# -- orders paid from stock ----------------------------------------------------------------------


async def allocate(
    *,
    buyer_id: int,
    warehouse_id: int,
    order_ids: list[int],
    lines: list[OrderLine],
    split: bool,
    read: StockRead | None = None,
) -> tuple[dict[int, int], dict[int, int]]:
    """Units per line (of the orders being paid, in ``order_ids`` order) to ship from the
    buyer's stock in ``warehouse_id``, and the stock item of each SKU there. Short stock is
    refused (INSUFFICIENT_STOCK naming the SKU and the shortfall) unless ``split``: then what
    stock covers ships from it and the rest is supplied as usual. ``read``: the warehouse and
    the items, where the payment's pricing read them with the orders."""
    lines = [ln for ln in lines if ln.sku_id is not None]
    if read is None:
        await active_warehouse(warehouse_id, field="stockWarehouseId")
        items = {
            item.sku_id: item
            for item in await StockItem.filter(
                buyer_id=buyer_id,
                warehouse_id=warehouse_id,
                sku_id__in=[ln.sku_id for ln in lines],
            )
        }
    elif not read.warehouse_active:
        raise not_found("Cloud warehouse", field="stockWarehouseId")
    else:
        items = read.items
    left = {sku_id: item.available for sku_id, item in items.items()}
    allocation: dict[int, int] = {}
    wanted: dict[int, int] = defaultdict(int)
    for line in sorted(lines, key=lambda ln: (order_ids.index(ln.order_id), ln.id)):
        sku_id = line.sku_id or 0
        wanted[sku_id] += line.quantity
        take = min(line.quantity, max(left.get(sku_id, 0), 0))
        if take:
            allocation[line.id] = take
            left[sku_id] -= take
    shortages = {s: w - (items[s].available if s in items else 0) for s, w in wanted.items()}
    shortages = {s: n for s, n in shortages.items() if n > 0}
    if shortages and not split:
        codes = {s.id: s.code for s in await Sku.filter(id__in=list(shortages))}
        detail = "; ".join(f"{codes[s]} {n} short" for s, n in sorted(shortages.items()))
        raise DomainError(
            ErrorCode.INSUFFICIENT_STOCK,
            f"The cloud warehouse stock does not cover these orders ({detail}); pay with "
            "splitWhenShort to have the rest supplied.",
            field="stockWarehouseId",
        )
    if not allocation:
        raise DomainError(
            ErrorCode.INSUFFICIENT_STOCK,
            "None of these SKUs is in stock in this cloud warehouse.",
            field="stockWarehouseId",
        )
    return allocation, {sku_id: item.id for sku_id, item in items.items()}


async def reserve(
    *, buyer_id: int, warehouse_id: int, allocation: dict[int, int], actor_user_id: int | None
) -> None:
    """Hold the allocated units for the lines (in the payment's transaction). Items are
    updated in ascending id order; a concurrent payment that took the units first makes this
    raise INSUFFICIENT_STOCK, which rolls the whole payment back."""
    lines = {ln.id: ln for ln in await OrderLine.filter(id__in=list(allocation))}
    items = {
        item.sku_id: item
        for item in await StockItem.filter(
            buyer_id=buyer_id,
            warehouse_id=warehouse_id,
            sku_id__in=[ln.sku_id for ln in lines.values()],
        )
    }
    per_item: dict[int, list[tuple[OrderLine, int]]] = defaultdict(list)
    for line_id, quantity in allocation.items():
        per_item[items[lines[line_id].sku_id or 0].id].append((lines[line_id], quantity))
    for item_id in sorted(per_item):
        for line, quantity in per_item[item_id]:
            await apply_change(
                item_id,
                Delta(reserved=quantity),
                kind=MovementKind.RESERVED,
                order_id=line.order_id,
                actor_user_id=actor_user_id,
                reason="paid order",
                field="stockWarehouseId",
            )
            await StockReservation.create(
                stock_item_id=item_id,
                order_id=line.order_id,
                order_line_id=line.id,
                quantity=quantity,
            )
            await OrderLine.filter(id=line.id).update(stock_quantity=quantity)
    order_ids = {line.order_id for line in lines.values()}
    await Order.filter(id__in=list(order_ids)).update(cloud_warehouse_id=warehouse_id)


def hold_for_payment(
    *,
    warehouse_id: int,
    allocation: dict[int, int],
    lines: Sequence[OrderLine],
    items: dict[int, int],
) -> StockHold:
    """PostgreSQL: the allocated units (``allocation``: line id → units) as the payment's
    statement takes them (``domain.persistence.payments``, after locking the wallet), in the
    order ``reserve`` takes them elsewhere. ``lines``: the lines paid; ``items``: the buyer's
    stock item in the warehouse per SKU."""
    by_id = {line.id: line for line in lines}
    held = [
        HeldLine(line_id, by_id[line_id].order_id, items[by_id[line_id].sku_id or 0], n)
        for line_id, n in allocation.items()
    ]
    held.sort(key=lambda h: (h.stock_item_id, h.line_id))
    return StockHold(warehouse_id=warehouse_id, lines=held)


async def short_stock(held: Sequence[HeldLine]) -> DomainError:
    """INSUFFICIENT_STOCK for a hold that found an item without the units, naming it."""
    items = await StockItem.filter(id__in=[h.stock_item_id for h in held])
    needed: dict[int, int] = defaultdict(int)
    for h in held:
        needed[h.stock_item_id] += h.quantity
    item = next((i for i in items if i.available < needed[i.id]), items[0])
    sku = await Sku.get(id=item.sku_id)
    return DomainError(
        ErrorCode.INSUFFICIENT_STOCK,
        f"SKU {sku.code}: {item.available} available in the cloud warehouse.",
        field="stockWarehouseId",
    )


async def set_low_stock_threshold(
    *, viewer: Viewer, stock_item_id: int, threshold: int | None
) -> StockItem:
    require_buyer(viewer)
    if threshold is not None and not 0 <= threshold <= 1_000_000:
        raise DomainError(ErrorCode.INVALID, "0 to 1,000,000, or null.", field="threshold")
    async with transaction():
        item = await item_of_buyer(viewer, stock_item_id)
        item.low_stock_threshold = threshold
        await item.save(update_fields=["low_stock_threshold", "updated_at"])
        await record_event(StockThresholdChanged.of(item, actor_user_id=viewer.user_id))
    return item
