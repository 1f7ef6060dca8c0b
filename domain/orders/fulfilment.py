"""After payment: shipping with tracking, delivery, cancel, abnormal holds, deputes, refunds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.db import transaction, transaction_unless
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import DeputeUpdated, OrderTrackingSync
from domain.lifecycle import hooks_write
from domain.limits import MAX_ABNORMAL_HOLDS, MAX_DEPUTES_PER_ORDER
from domain.orders.access import order_of_buyer, order_of_supplier
from domain.orders.models import (
    Depute,
    DeputeOutcome,
    DeputeStatus,
    DeputeType,
    Order,
    OrderKind,
    OrderStatus,
    OrderTransition,
    TrackingSync,
)
from domain.orders.status import check_transition, require_status, transition
from domain.payments.commands import credit, wallet_for
from domain.payments.models import EntryKind
from domain.persistence.dialects import is_postgres
from domain.stock.commands import expected_arrival
from domain.validation import clean_text, money
from domain.work_due import tracking_push_due

DEPUTABLE = (OrderStatus.AWAITING_SHIPPING, OrderStatus.SHIPPED)


async def ship_order(*, viewer: Viewer, order_id: int, carrier: str, tracking_number: str) -> Order:
    """Supplier staff record the shipment; the tracking then goes to the buyer's store (and a
    stocking order's units are in transit: ``domain/lifecycle.py``)."""
    require_supplier_staff(viewer)
    carrier = clean_text(carrier, field="carrier", max_length=100)
    tracking_number = clean_text(tracking_number, field="trackingNumber", max_length=100)
    async with transaction():
        order = await order_of_supplier(viewer, order_id)
        sync = TrackingSync.PENDING if order.store_id is not None else TrackingSync.NOT_NEEDED
        now = datetime.now(UTC)
        stocking = order.kind is OrderKind.CLOUD_WAREHOUSE
        await transition(
            order,
            OrderStatus.SHIPPED,
            actor_user_id=viewer.user_id,
            reason=f"shipped with {carrier} {tracking_number}",
            changes={
                "carrier": carrier,
                "tracking_number": tracking_number,
                "shipped_at": now,
                "tracking_sync": sync,
                "tracking_sync_error": None,
                "tracking_sync_attempts": 0,
                "expected_arrival_at": await expected_arrival(order, now) if stocking else None,
            },
        )
    return order


async def mark_delivered(*, viewer: Viewer, order_id: int) -> Order:
    require_supplier_staff(viewer)
    async with transaction():
        order = await order_of_supplier(viewer, order_id)
        if order.kind is OrderKind.CLOUD_WAREHOUSE and order.stock_received_at is None:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Order {order.number} goes into stock: record its arrival with receiveStock.",
                field="orderId",
            )
        await transition(
            order,
            OrderStatus.FULFILLED,
            actor_user_id=viewer.user_id,
            reason="delivered to the customer",
        )
    return order


async def claim_tracking_push(
    *,
    order_id: int,
    owner: str,
    now: datetime,
    until: datetime,
    base_delay: float,
    max_attempts: int,
) -> bool:
    """Take the order's tracking push for ``owner`` until ``until``, if it is still due and
    nobody holds it (one conditional UPDATE, ``domain.leases``): whether this caller is to make
    it. The owner renews the lease while it pushes; its result (``record_tracking_sync``) frees
    it; a holder that died or hangs leaves it free once the lease runs out."""
    due = tracking_push_due(now, base_delay=base_delay, max_attempts=max_attempts)
    taken = await Order.filter(due, id=order_id).update(
        tracking_lease_owner=owner, tracking_lease_until=until
    )
    return taken == 1


async def record_tracking_sync(
    *, order_id: int, ok: bool, error: str | None = None, owner: str | None = None
) -> bool:
    """The store connector's result of pushing tracking to the buyer's store; the push's lease
    is released. With ``owner``, only while that owner still holds the push (it may have hung
    past its lease, and another instance made the push meanwhile): whether it was recorded."""
    async with transaction():
        held = Order.filter(id=order_id)
        if owner is not None:
            held = held.filter(tracking_lease_owner=owner)
        order = await held.select_for_update().first()
        if order is None:
            return False
        order.tracking_sync = TrackingSync.SYNCED if ok else TrackingSync.FAILED
        order.tracking_sync_error = None if ok else (error or "unknown error")[:500]
        order.tracking_sync_attempts += 1
        order.tracking_lease_owner = None
        order.tracking_lease_until = None
        await order.save(
            update_fields=[
                "tracking_sync",
                "tracking_sync_error",
                "tracking_sync_attempts",
                "tracking_lease_owner",
                "tracking_lease_until",
                "updated_at",
            ]
        )
        await record_event(OrderTrackingSync.of(order))
    return True


async def cancel_orders(*, viewer: Viewer, order_ids: list[int], reason: str = "") -> list[Order]:
    """The buyer cancels unpaid orders (UNRECOGNIZED or AWAITING_PAYMENT): all or none.

    One order on PostgreSQL whose hooks write nothing is cancelled without a transaction: its
    read needs none (the change is a compare-and-set on the version read) and its change is one
    statement, atomic by itself (two round trips fewer than BEGIN and COMMIT around them)."""
    require_buyer(viewer)
    reason = clean_text(reason, field="reason", max_length=500, required=False)
    if not order_ids:
        raise DomainError(ErrorCode.REQUIRED, "Name at least one order.", field="orderIds")
    reason = reason or "cancelled by the buyer"
    if len(order_ids) == 1:
        order = await _cancellable(viewer, order_ids[0], field="orderIds.0")
        one_statement = is_postgres() and not hooks_write(order, OrderStatus.CANCELLED)
        async with transaction_unless(one_statement):
            await _cancel(order, viewer, reason, field="orderIds.0")
        return [order]
    async with transaction():
        orders = []
        for i, order_id in enumerate(order_ids):
            order = await _cancellable(viewer, order_id, field=f"orderIds.{i}")
            await _cancel(order, viewer, reason, field=f"orderIds.{i}")
            orders.append(order)
    return orders


async def _cancellable(viewer: Viewer, order_id: int, *, field: str) -> Order:
    order = await order_of_buyer(viewer, order_id, field=field)
    require_status(
        order,
        OrderStatus.UNRECOGNIZED,
        OrderStatus.AWAITING_PAYMENT,
        doing="cancel it (a paid order is withdrawn instead)",
        field=field,
    )
    return order


async def _cancel(order: Order, viewer: Viewer, reason: str, *, field: str) -> None:
    await transition(
        order, OrderStatus.CANCELLED, actor_user_id=viewer.user_id, reason=reason, field=field
    )


async def _below_the_hold_cap(order: Order) -> None:
    """An order is held and resolved at most ``MAX_ABNORMAL_HOLDS`` times (a warehouse may
    still report an exception; after the last resolve the order can only be refunded or
    cancelled), which bounds its timeline."""
    holds = await OrderTransition.filter(order_id=order.id, to_status=OrderStatus.ABNORMAL).count()
    if holds >= MAX_ABNORMAL_HOLDS + (order.status is OrderStatus.ABNORMAL):
        raise DomainError(
            ErrorCode.TOO_MANY,
            f"Order {order.number} was held {MAX_ABNORMAL_HOLDS} times already: refund or "
            "cancel it instead.",
            field="orderId",
        )


async def hold_abnormal(*, viewer: Viewer, order_id: int, reason: str) -> Order:
    require_supplier_staff(viewer)
    reason = clean_text(reason, field="reason", max_length=500)
    async with transaction():
        order = await order_of_supplier(viewer, order_id)
        await _below_the_hold_cap(order)
        await transition(
            order,
            OrderStatus.ABNORMAL,
            actor_user_id=viewer.user_id,
            reason=reason,
            changes={"status_before_abnormal": order.status, "abnormal_reason": reason},
        )
    return order


async def resolve_abnormal(*, viewer: Viewer, order_id: int, note: str) -> Order:
    """Back to where the order was before the hold."""
    require_supplier_staff(viewer)
    note = clean_text(note, field="note", max_length=500)
    async with transaction():
        order = await order_of_supplier(viewer, order_id)
        if order.status is not OrderStatus.ABNORMAL or order.status_before_abnormal is None:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION, "The order is not held as abnormal.", field="orderId"
            )
        await _below_the_hold_cap(order)
        await transition(
            order,
            order.status_before_abnormal,
            actor_user_id=viewer.user_id,
            reason=f"resolved: {note}",
            changes={"status_before_abnormal": None, "abnormal_reason": None},
        )
    return order


@dataclass(frozen=True)
class DeputeRequest:
    type: DeputeType
    reason: str
    description: str
    evidence: list[str]
    expected_outcome: DeputeOutcome


async def open_depute(*, viewer: Viewer, order_id: int, request: DeputeRequest) -> Depute:
    require_buyer(viewer)
    reason = clean_text(request.reason, field="reason", max_length=300)
    description = clean_text(
        request.description, field="description", max_length=5000, required=False
    )
    if len(request.evidence) > 20:
        raise DomainError(ErrorCode.INVALID, "At most 20 evidence links.", field="evidence")
    evidence = [
        clean_text(e, field=f"evidence.{i}", max_length=1000)
        for i, e in enumerate(request.evidence)
    ]
    async with transaction():
        order = await order_of_buyer(viewer, order_id)
        if order.status not in DEPUTABLE:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"A depute can be opened on a paid order awaiting shipping or shipped; "
                f"order {order.number} is {order.status.value}.",
                field="orderId",
            )
        # the order row locked first, so two deputes opened at once cannot both pass the check
        await Order.filter(id=order.id).select_for_update().first()
        if await Depute.exists(order_id=order.id, status=DeputeStatus.OPEN):
            raise DomainError(
                ErrorCode.ALREADY_EXISTS, "A depute is already open on this order.", field="orderId"
            )
        if await Depute.filter(order_id=order.id).count() >= MAX_DEPUTES_PER_ORDER:
            raise DomainError(
                ErrorCode.TOO_MANY,
                f"At most {MAX_DEPUTES_PER_ORDER} deputes per order.",
                field="orderId",
            )
        depute = await Depute.create(
            order_id=order.id,
            type=request.type,
            reason=reason,
            description=description,
            evidence=evidence,
            expected_outcome=request.expected_outcome,
            opened_by_user_id=viewer.user_id,
        )
        await _depute_event(order, depute, viewer.user_id)
    return depute


async def _depute_event(order: Order, depute: Depute, actor_user_id: int) -> None:
    await record_event(DeputeUpdated.of(order, depute, actor_user_id=actor_user_id))


async def _open_depute_of_supplier(viewer: Viewer, depute_id: int) -> tuple[Depute, Order]:
    depute = await Depute.get_or_none(id=depute_id).select_related("order")
    if depute is None or depute.order.supplier_id != viewer.organisation_id:
        raise not_found("Depute", field="deputeId")
    if depute.status is not DeputeStatus.OPEN:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION, "The depute is already resolved.", field="deputeId"
        )
    return depute, depute.order


async def refund_depute(*, viewer: Viewer, depute_id: int, amount: Decimal, note: str) -> Depute:
    """Resolve with a refund (full or partial) credited to the buyer's wallet: order REFUNDED.
    Never more than was paid and not yet refunded."""
    require_supplier_staff(viewer)
    amount = money(amount, field="amount")
    note = clean_text(note, field="note", max_length=500)
    async with transaction():
        depute, order = await _open_depute_of_supplier(viewer, depute_id)
        refundable = order.paid_amount - order.refunded_amount
        if amount > refundable:
            raise DomainError(
                ErrorCode.INVALID,
                f"At most {refundable} {order.currency} can be refunded.",
                field="amount",
            )
        check_transition(order, OrderStatus.REFUNDED, field="deputeId")
        wallet = await wallet_for(buyer_id=order.buyer_id, supplier_id=viewer.organisation_id)
        await credit(
            wallet,
            amount,
            kind=EntryKind.REFUND,
            actor_user_id=viewer.user_id,
            note=f"refund of order {order.number}",
            order_id=order.id,
        )
        await transition(
            order,
            OrderStatus.REFUNDED,
            actor_user_id=viewer.user_id,
            reason=f"refunded {amount} {order.currency}: {note}",
            changes={"refunded_amount": order.refunded_amount + amount},
            field="deputeId",
        )
        await _resolve(depute, DeputeStatus.REFUNDED, viewer, note, refund_amount=amount)
        await _depute_event(order, depute, viewer.user_id)
    return depute


async def resolve_depute(*, viewer: Viewer, depute_id: int, reship: bool, note: str) -> Depute:
    """Resolve without money: a reship (goods sent again) or a rejection with a reason."""
    require_supplier_staff(viewer)
    note = clean_text(note, field="note", max_length=500)
    async with transaction():
        depute, order = await _open_depute_of_supplier(viewer, depute_id)
        await _resolve(
            depute, DeputeStatus.RESHIPPED if reship else DeputeStatus.REJECTED, viewer, note
        )
        await _depute_event(order, depute, viewer.user_id)
    return depute


async def _resolve(
    depute: Depute,
    status: DeputeStatus,
    viewer: Viewer,
    note: str,
    refund_amount: Decimal | None = None,
) -> None:
    depute.status = status
    depute.resolution_note = note
    depute.refund_amount = refund_amount
    depute.resolved_by_user_id = viewer.user_id
    depute.resolved_at = datetime.now(UTC)
    await depute.save(
        update_fields=[
            "status",
            "resolution_note",
            "refund_amount",
            "resolved_by_user_id",
            "resolved_at",
        ]
    )
