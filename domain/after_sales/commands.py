"""Commands on after-sales (return stock-in) orders: created by distributors for delivered
orders, pushed by the supplier (by hand or automatically) to the third-party warehouse, stocked
in by its callback, and the reconciliation's bookkeeping. Reads: ``domain.after_sales.queries``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from domain import limits
from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.after_sales.models import AfterSalesOrder, AfterSalesStatus
from domain.after_sales.status_events import return_event
from domain.catalogue.models import Sku
from domain.db import transaction
from domain.distribution.models import PushStatus, TaskKind, WarehouseTask
from domain.distribution.partnerships import (
    accepted_partnership,
    distribution_settings,
    fulfilling_connection,
)
from domain.distribution.tasks import enqueue, finish
from domain.distribution.withdrawals import failed_withdrawal_of_order, mark_converted
from domain.errors import DomainError, ErrorCode, ValidationErrors, not_found
from domain.orders.access import order_of_buyer
from domain.orders.models import Order, OrderLine, OrderStatus
from domain.validation import clean_text, positive_int

RETURNABLE = (OrderStatus.FULFILLED, OrderStatus.SHIPPED)
MAX_PUSH = 100


@dataclass(frozen=True)
class ReturnItem:
    line_id: int
    quantity: int
    reason: str = ""


def new_return_number() -> str:
    return "RT" + secrets.token_hex(5).upper()


async def _create(
    *,
    order: Order,
    items: list[ReturnItem],
    reason: str,
    actor_user_id: int,
) -> AfterSalesOrder:
    if not items:
        raise DomainError(ErrorCode.REQUIRED, "Name at least one item.", field="items")
    lines = {ln.id: ln for ln in await OrderLine.filter(order_id=order.id)}
    skus = {
        s.id: s for s in await Sku.filter(id__in=[ln.sku_id for ln in lines.values() if ln.sku_id])
    }
    problems: list[DomainError] = []
    wanted: dict[int, int] = {}
    for i, item in enumerate(items):
        line = lines.get(item.line_id)
        if line is None or line.sku_id not in skus:
            problems.append(not_found("Order line of this order", field=f"items.{i}.lineId"))
            continue
        try:
            quantity = positive_int(item.quantity, field=f"items.{i}.quantity")
        except DomainError as error:
            problems.append(error)
            continue
        wanted[line.id] = wanted.get(line.id, 0) + quantity
        if wanted[line.id] > line.quantity:
            problems.append(
                DomainError(
                    ErrorCode.INVALID,
                    f"At most {line.quantity} of this line can be returned.",
                    field=f"items.{i}.quantity",
                )
            )
    if problems:
        raise ValidationErrors(problems)
    partnership = await accepted_partnership(
        supplier_id=order.supplier_id or 0, distributor_id=order.buyer_id
    )
    if partnership is None:
        raise DomainError(
            ErrorCode.INVALID, "The order is not from a partnered distributor.", field="orderId"
        )
    await limits.ensure_room(
        AfterSalesOrder.filter(order_id=order.id),
        limits.MAX_RETURNS_PER_ORDER,
        message=f"At most {limits.MAX_RETURNS_PER_ORDER} after-sales orders per order.",
        field="orderId",
        lock=Order.filter(id=order.id),
    )
    payload = [
        {
            "lineId": str(item.line_id),
            "skuId": str(lines[item.line_id].sku_id),
            "sku": skus[lines[item.line_id].sku_id or 0].code,
            "title": lines[item.line_id].title,
            "quantity": item.quantity,
            "reason": clean_text(item.reason, field="reason", max_length=200, required=False),
            "receivedQuantity": None,
        }
        for item in items
    ]
    created = await AfterSalesOrder.create(
        number=new_return_number(),
        order_id=order.id,
        distributor_id=order.buyer_id,
        supplier_id=order.supplier_id,
        status=AfterSalesStatus.REQUESTED,
        reason=reason,
        items=payload,
    )
    await return_event(created, actor_user_id)
    settings = await distribution_settings(created.supplier_id)
    if settings.auto_push_returns and await fulfilling_connection(partnership) is not None:
        await _queue_push(created, actor_user_id=None)
    return created


async def create_after_sales_order(
    *, viewer: Viewer, order_id: int, items: list[ReturnItem], reason: str
) -> AfterSalesOrder:
    """A distributor returns items of a delivered (or shipped) order."""
    require_buyer(viewer)
    reason = clean_text(reason, field="reason", max_length=500)
    async with transaction():
        order = await order_of_buyer(viewer, order_id)
        if order.status not in RETURNABLE:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Order {order.number} is {order.status.value}: only a delivered or shipped "
                "order can be returned.",
                field="orderId",
            )
        return await _create(order=order, items=items, reason=reason, actor_user_id=viewer.user_id)


async def convert_withdrawal(*, viewer: Viewer, withdrawal_id: int, reason: str) -> AfterSalesOrder:
    """A failed withdraw (the warehouse had already picked or shipped) becomes a return of all
    of the order's items."""
    reason = clean_text(reason, field="reason", max_length=500)
    async with transaction():
        withdrawal = await failed_withdrawal_of_order(viewer=viewer, withdrawal_id=withdrawal_id)
        order = await Order.get(id=withdrawal.order_id)
        lines = await OrderLine.filter(order_id=order.id, sku_id__isnull=False).order_by("id")
        items = [ReturnItem(line_id=ln.id, quantity=ln.quantity) for ln in lines]
        created = await _create(
            order=order, items=items, reason=reason, actor_user_id=viewer.user_id
        )
        await mark_converted(
            withdrawal, f"after-sales order {created.number}", actor_user_id=viewer.user_id
        )
    return created


async def _queue_push(item: AfterSalesOrder, *, actor_user_id: int | None) -> None:
    partnership = await accepted_partnership(
        supplier_id=item.supplier_id, distributor_id=item.distributor_id
    )
    third_party_warehouse = await fulfilling_connection(partnership) if partnership else None
    if third_party_warehouse is None:
        raise DomainError(
            ErrorCode.NO_WAREHOUSE,
            "No third-party warehouse fulfils this distributor.",
            field="afterSalesIds",
        )
    await limits.ensure_room(
        WarehouseTask.filter(kind=TaskKind.PUSH_RETURN, after_sales_id=item.id),
        limits.MAX_PUSHES,
        message=f"{item.number} was pushed {limits.MAX_PUSHES} times already.",
        field="afterSalesIds",
        lock=None,
    )
    moved = await AfterSalesOrder.filter(
        id=item.id, push_status__in=[PushStatus.NOT_PUSHED, PushStatus.PUSH_FAILED]
    ).update(
        push_status=PushStatus.PUSHING,
        push_error=None,
        third_party_warehouse_id=third_party_warehouse.id,
        reference=f"R{item.id}",
    )
    if moved != 1:
        raise DomainError(
            ErrorCode.CONFLICT, f"{item.number} changed meanwhile.", field="afterSalesIds"
        )
    await item.refresh_from_db()
    await enqueue(
        kind=TaskKind.PUSH_RETURN,
        third_party_warehouse_id=third_party_warehouse.id,
        after_sales_id=item.id,
        actor_user_id=actor_user_id,
    )
    await return_event(item, actor_user_id)


async def push_returns(*, viewer: Viewer, after_sales_ids: list[int]) -> list[AfterSalesOrder]:
    """Supplier staff push REQUESTED after-sales orders to the warehouse (all or none)."""
    require_supplier_staff(viewer)
    if not after_sales_ids or len(after_sales_ids) > MAX_PUSH:
        raise DomainError(
            ErrorCode.INVALID, f"Name 1 to {MAX_PUSH} after-sales orders.", field="afterSalesIds"
        )
    async with transaction():
        items = []
        for i, item_id in enumerate(after_sales_ids):
            item = await AfterSalesOrder.get_or_none(id=item_id, supplier_id=viewer.organisation_id)
            if item is None:
                raise not_found("After-sales order", field=f"afterSalesIds.{i}")
            if item.status is not AfterSalesStatus.REQUESTED or item.withdrawal_status is not None:
                raise DomainError(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"{item.number} is {item.status.value}"
                    + (f", {item.withdrawal_status.value}" if item.withdrawal_status else "")
                    + ".",
                    field=f"afterSalesIds.{i}",
                )
            await _queue_push(item, actor_user_id=viewer.user_id)
            items.append(item)
    return items


async def return_push_finished(
    task: WarehouseTask,
    *,
    ok: bool,
    warehouse_return_id: str | None = None,
    error: str | None = None,
) -> bool:
    assert task.after_sales_id is not None
    async with transaction():
        if not await finish(task, failed=not ok, error=error):
            return False
        changes: dict[str, object] = (
            {
                "push_status": PushStatus.PUSHED,
                "push_error": None,
                "warehouse_return_id": warehouse_return_id,
                "status": AfterSalesStatus.AWAITING_STOCK_IN,
                "checked_at": datetime.now(UTC),
            }
            if ok
            else {"push_status": PushStatus.PUSH_FAILED, "push_error": (error or "")[:500]}
        )
        await AfterSalesOrder.filter(id=task.after_sales_id, push_status=PushStatus.PUSHING).update(
            **changes
        )
        item = await AfterSalesOrder.get(id=task.after_sales_id)
        await return_event(item, task.actor_user_id)
    return True


async def apply_return_status(
    *,
    third_party_warehouse_id: int,
    reference: str,
    status: str,
    received: dict[str, int] | None = None,
    reason: str | None = None,
) -> AfterSalesOrder | None:
    """The warehouse's word on a return: RECEIVED stocks it in (with received quantities)."""
    async with transaction():
        item = await AfterSalesOrder.get_or_none(
            reference=reference, third_party_warehouse_id=third_party_warehouse_id
        )
        if item is None:
            return None
        await AfterSalesOrder.filter(id=item.id).update(checked_at=datetime.now(UTC))
        if status == "RECEIVED" and item.status is AfterSalesStatus.AWAITING_STOCK_IN:
            items = [
                {**it, "receivedQuantity": (received or {}).get(it["sku"], it["quantity"])}
                for it in item.items
            ]
            await AfterSalesOrder.filter(
                id=item.id, status=AfterSalesStatus.AWAITING_STOCK_IN
            ).update(status=AfterSalesStatus.STOCKED_IN, items=items)
        elif status == "EXCEPTION":
            await AfterSalesOrder.filter(id=item.id).update(
                push_error=f"warehouse: {reason or 'exception'}"[:500]
            )
        await item.refresh_from_db()
        await return_event(item, None)
    return item


async def due_returns_for_reconciliation(
    *, older_than: datetime, limit: int
) -> list[AfterSalesOrder]:
    """Returns waiting for stock-in whose warehouse has not reported since ``older_than``."""
    return (
        await AfterSalesOrder.filter(
            status=AfterSalesStatus.AWAITING_STOCK_IN, checked_at__lt=older_than
        )
        .order_by("checked_at")
        .limit(limit)
    )


async def mark_returns_checked(after_sales_ids: list[int]) -> None:
    """A reconciliation round takes these returns (whether or not their warehouse answers):
    they go to the back of the queue, so unreachable warehouses do not starve the others."""
    if after_sales_ids:
        await AfterSalesOrder.filter(id__in=after_sales_ids).update(checked_at=datetime.now(UTC))


__all__ = [
    "ReturnItem",
    "apply_return_status",
    "convert_withdrawal",
    "create_after_sales_order",
    "push_returns",
    "return_push_finished",
]
