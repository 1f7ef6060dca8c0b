"""Distribution orders at third-party warehouses: pushing them (NOT_PUSHED → PUSHING → PUSHED |
PUSH_FAILED), and applying what the warehouse reports (callbacks and reconciliation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain import limits
from domain.access import Viewer, require_supplier_staff
from domain.catalogue.models import Sku
from domain.db import transaction
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    ThirdPartyWarehouse,
    WarehouseOrder,
    WarehouseTask,
    WithdrawalStatus,
)
from domain.distribution.partnerships import (
    accepted_partnership,
    distribution_settings,
    fulfilling_connection,
)
from domain.distribution.tasks import enqueue, finish
from domain.errors import DomainError, ErrorCode
from domain.events import record_event
from domain.events.catalogue import WarehousePushChanged
from domain.orders.access import order_of_supplier
from domain.orders.models import Order, OrderLine, OrderStatus, TrackingSync
from domain.orders.status import transition
from domain.payments.commands import charge_orders

MAX_PUSH = 100
PUSHABLE = (PushStatus.NOT_PUSHED, PushStatus.PUSH_FAILED)


async def warehouse_order_for(order: Order) -> WarehouseOrder:
    """The order's warehouse record, created on first use."""
    record, _ = await WarehouseOrder.get_or_create(
        order_id=order.id, defaults={"supplier_id": order.supplier_id or 0}
    )
    return record


async def push_event(order: Order, record: WarehouseOrder, actor_user_id: int | None) -> None:
    await record_event(WarehousePushChanged.of(order, record, actor_user_id=actor_user_id))


async def push_orders(*, viewer: Viewer, order_ids: list[int]) -> list[Order]:
    """Supplier staff push distribution orders to the partnership's third-party warehouse.

    All or none: every order must be this supplier's, of an accepted distributor whose
    distribution warehouse is run by a third-party warehouse, paid (or, with the supplier's
    ``chargeOnPush`` setting, payable now from the distributor's wallet), not being withdrawn
    and not already at the warehouse. The calls are made by the background worker.
    """
    require_supplier_staff(viewer)
    if not order_ids:
        raise DomainError(ErrorCode.REQUIRED, "Name at least one order.", field="orderIds")
    if len(order_ids) > MAX_PUSH or len(set(order_ids)) != len(order_ids):
        raise DomainError(
            ErrorCode.INVALID, f"Up to {MAX_PUSH} different orders at once.", field="orderIds"
        )
    settings = await distribution_settings(viewer.organisation_id)
    async with transaction():
        orders: list[tuple[Order, ThirdPartyWarehouse]] = []
        to_charge: dict[int, list[int]] = {}
        third_party_warehouses: dict[int, ThirdPartyWarehouse | None] = {}
        for i, order_id in enumerate(order_ids):
            where = f"orderIds.{i}"
            order = await order_of_supplier(viewer, order_id, field=where)
            if (
                order.buyer_id not in third_party_warehouses
            ):  # one lookup per distributor, not per order
                partnership = await accepted_partnership(
                    supplier_id=viewer.organisation_id, distributor_id=order.buyer_id
                )
                if partnership is None:
                    raise DomainError(
                        ErrorCode.INVALID,
                        f"Order {order.number} is not from a partnered distributor.",
                        field=where,
                    )
                third_party_warehouses[order.buyer_id] = await fulfilling_connection(partnership)
            third_party_warehouse = third_party_warehouses[order.buyer_id]
            if third_party_warehouse is None:
                raise DomainError(
                    ErrorCode.NO_WAREHOUSE,
                    "No third-party warehouse fulfils this distributor; select one with "
                    "selectDistributionWarehouse.",
                    field=where,
                )
            record = await warehouse_order_for(order)
            if record.withdrawal_status in (
                WithdrawalStatus.WITHDRAWING,
                WithdrawalStatus.WITHDRAWN,
            ):
                raise DomainError(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"Order {order.number} is {record.withdrawal_status.value}.",
                    field=where,
                )
            if record.push_status not in PUSHABLE:
                raise DomainError(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"Order {order.number} is {record.push_status.value}.",
                    field=where,
                )
            await limits.ensure_room(
                WarehouseTask.filter(kind=TaskKind.PUSH_ORDER, order_id=order.id),
                limits.MAX_PUSHES,
                message=f"Order {order.number} was pushed {limits.MAX_PUSHES} times already.",
                field=where,
                lock=None,
            )
            if order.status is OrderStatus.AWAITING_PAYMENT and settings.charge_on_push:
                to_charge.setdefault(order.buyer_id, []).append(order.id)
            elif order.status is not OrderStatus.AWAITING_SHIPPING:
                raise DomainError(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"Order {order.number} is {order.status.value}; only paid orders waiting "
                    "for shipping are pushed.",
                    field=where,
                )
            orders.append((order, third_party_warehouse))
        for buyer_id, unpaid in to_charge.items():
            await charge_orders(
                buyer_id=buyer_id,
                order_ids=unpaid,
                logistics_method_id=None,
                actor_user_id=viewer.user_id,
            )
        for order, third_party_warehouse in orders:
            await order.refresh_from_db()
            updated = await WarehouseOrder.filter(
                order_id=order.id, push_status__in=PUSHABLE
            ).update(
                push_status=PushStatus.PUSHING,
                push_error=None,
                third_party_warehouse_id=third_party_warehouse.id,
                supplier_id=order.supplier_id,
                reference=str(order.id),
            )
            if updated != 1:
                raise DomainError(
                    ErrorCode.CONFLICT, f"Order {order.number} changed meanwhile.", field="orderIds"
                )
            record = await WarehouseOrder.get(order_id=order.id)
            await enqueue(
                kind=TaskKind.PUSH_ORDER,
                third_party_warehouse_id=third_party_warehouse.id,
                order_id=order.id,
                actor_user_id=viewer.user_id,
            )
            await push_event(order, record, viewer.user_id)
    return [order for order, _ in orders]


@dataclass(frozen=True)
class OutboundRequest:
    """What the worker sends to create the warehouse order."""

    reference: str
    shipping_address: dict[str, str]
    items: list[tuple[str, int, str]] = field(default_factory=list)  # (sku code, qty, title)


async def outbound_request(order_id: int) -> OutboundRequest:
    order = await Order.get(id=order_id)
    record = await WarehouseOrder.get(order_id=order_id)
    lines = await OrderLine.filter(order_id=order_id).order_by("id")
    skus = {s.id: s for s in await Sku.filter(id__in=[ln.sku_id for ln in lines if ln.sku_id])}
    address = {k: str(v or "") for k, v in (order.shipping_address or {}).items()}
    address.setdefault("name", order.customer_name)
    return OutboundRequest(
        reference=record.reference or str(order.id),
        shipping_address=address,
        items=[(skus[ln.sku_id].code, ln.quantity, ln.title) for ln in lines if ln.sku_id in skus],
    )


async def push_finished(
    task: WarehouseTask,
    *,
    ok: bool,
    warehouse_order_id: str | None = None,
    warehouse_status: str | None = None,
    error: str | None = None,
) -> bool:
    """Apply the outcome of a push task (once: False if the task was no longer ours)."""
    assert task.order_id is not None
    async with transaction():
        if not await finish(task, failed=not ok, error=error):
            return False
        order = await Order.get(id=task.order_id)
        now = datetime.now(UTC)
        changes: dict[str, object] = (
            {
                "push_status": PushStatus.PUSHED,
                "push_error": None,
                "warehouse_order_id": warehouse_order_id,
                "warehouse_status": warehouse_status,
                "pushed_at": now,
                "checked_at": now,
            }
            if ok
            else {"push_status": PushStatus.PUSH_FAILED, "push_error": (error or "")[:500]}
        )
        await WarehouseOrder.filter(order_id=order.id, push_status=PushStatus.PUSHING).update(
            **changes
        )
        record = await WarehouseOrder.get(order_id=order.id)
        await push_event(order, record, task.actor_user_id)
    return True


async def apply_outbound_status(
    *,
    third_party_warehouse_id: int,
    reference: str,
    status: str,
    carrier: str | None = None,
    tracking_number: str | None = None,
    reason: str | None = None,
) -> Order | None:
    """What the warehouse says about one of our orders (callback or reconciliation).

    SHIPPED ships the order (its tracking then goes to the distributor's store), EXCEPTION
    and a cancel by the warehouse that nobody asked for hold it as ABNORMAL with the reason;
    other statuses are recorded. Returns None for a reference this warehouse does not hold.
    """
    async with transaction():
        record = await WarehouseOrder.get_or_none(
            reference=reference, third_party_warehouse_id=third_party_warehouse_id
        )
        if record is None:
            return None
        order = await Order.get(id=record.order_id)
        now = datetime.now(UTC)
        record.warehouse_status = status[:32]
        record.checked_at = now
        await record.save(update_fields=["warehouse_status", "checked_at", "updated_at"])
        withdrawing = record.withdrawal_status is WithdrawalStatus.WITHDRAWING
        if status == "SHIPPED" and order.status in (
            OrderStatus.AWAITING_SHIPPING,
            OrderStatus.ABNORMAL,
        ):
            carrier = (carrier or "unknown")[:100]
            tracking = (tracking_number or "")[:100]
            await transition(
                order,
                OrderStatus.SHIPPED,
                actor_user_id=None,
                reason=f"shipped by the warehouse with {carrier} {tracking}".strip(),
                changes={
                    "carrier": carrier,
                    "tracking_number": tracking,
                    "shipped_at": now,
                    "tracking_sync": TrackingSync.PENDING
                    if order.store_id is not None
                    else TrackingSync.NOT_NEEDED,
                    "tracking_sync_error": None,
                    "tracking_sync_attempts": 0,
                    "status_before_abnormal": None,
                    "abnormal_reason": None,
                },
            )
        elif (
            status == "EXCEPTION" or (status == "CANCELLED" and not withdrawing)
        ) and order.status is OrderStatus.AWAITING_SHIPPING:
            why = reason or ("cancelled by the warehouse" if status == "CANCELLED" else "exception")
            why = f"warehouse: {why}"[:500]
            await transition(
                order,
                OrderStatus.ABNORMAL,
                actor_user_id=None,
                reason=why,
                changes={"status_before_abnormal": order.status, "abnormal_reason": why},
            )
        await push_event(order, record, None)
    return order


async def due_for_reconciliation(*, older_than: datetime, limit: int) -> list[WarehouseOrder]:
    """Pushed orders whose warehouse has not reported for a while (a callback may be lost)."""
    return (
        await WarehouseOrder.filter(push_status=PushStatus.PUSHED, checked_at__lt=older_than)
        .exclude(warehouse_status__in=["SHIPPED", "CANCELLED"])
        .order_by("checked_at")
        .limit(limit)
    )


async def mark_checked(order_ids: list[int]) -> None:
    """A reconciliation round takes these orders (whether or not their warehouse answers):
    they go to the back of the queue, so unreachable warehouses do not starve the others."""
    if order_ids:
        await WarehouseOrder.filter(order_id__in=order_ids).update(checked_at=datetime.now(UTC))
