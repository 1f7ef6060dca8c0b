"""The order state machine: the one place where an order's status changes. What a change
brings with it is declared in ``domain/lifecycle.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.events import NewEvent, recorded
from domain.events.catalogue import OrderStatusChanged
from domain.lifecycle import status_changed
from domain.orders.models import Order, OrderStatus, OrderTransition
from domain.persistence.orders import change_order

S = OrderStatus
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.UNRECOGNIZED: frozenset({S.AWAITING_PAYMENT, S.CANCELLED}),
    S.AWAITING_PAYMENT: frozenset({S.AWAITING_SHIPPING, S.CANCELLED, S.ABNORMAL}),
    # CANCELLED from here on only through a completed withdraw (the payment is refunded)
    S.AWAITING_SHIPPING: frozenset({S.SHIPPED, S.ABNORMAL, S.REFUNDED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.FULFILLED, S.ABNORMAL, S.REFUNDED}),
    S.ABNORMAL: frozenset(
        {S.AWAITING_PAYMENT, S.AWAITING_SHIPPING, S.SHIPPED, S.REFUNDED, S.CANCELLED}
    ),
    S.FULFILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED[current]


def check_transition(order: Order, target: OrderStatus, *, field: str = "orderId") -> None:
    if not can_transition(order.status, target):
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Order {order.number} is {order.status.value} and cannot become {target.value}.",
            field=field,
        )


def require_status(order: Order, *allowed: OrderStatus, doing: str, field: str) -> None:
    """Commands that only make sense in some statuses (paying needs AWAITING_PAYMENT even
    though an ABNORMAL order may also move on to AWAITING_SHIPPING when resolved)."""
    if order.status not in allowed:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Order {order.number} is {order.status.value}: cannot {doing}.",
            field=field,
        )


@dataclass(frozen=True)
class StatusChange:
    """A checked status change about to be written: the order's new column values, its timeline
    entry and its event. ``transition`` writes one; a command that writes several orders in one
    statement (``domain.persistence.payments``) writes them itself, then calls ``transitioned``."""

    order: Order
    target: OrderStatus
    values: dict[str, Any]
    timeline: OrderTransition
    event: NewEvent


def plan_transition(
    order: Order,
    target: OrderStatus,
    *,
    actor_user_id: int | None,
    reason: str = "",
    changes: dict[str, Any] | None = None,
    field: str = "orderId",
) -> StatusChange:
    """The change of ``order`` to ``target`` (with ``changes`` to other columns), if the machine
    allows it; nothing is written."""
    check_transition(order, target, field=field)
    timeline = OrderTransition(
        order_id=order.id,
        from_status=order.status,
        to_status=target,
        actor_user_id=actor_user_id,
        reason=reason[:500],
    )
    event = OrderStatusChanged.of(
        order, order.status, target, reason=reason, actor_user_id=actor_user_id
    )
    values = {**(changes or {}), "status": target}
    return StatusChange(order, target, values, timeline, event)


async def transitioned(change: StatusChange, *, actor_user_id: int | None) -> Order:
    """After ``change`` was written (compare-and-set on the version it was planned with): the
    order in memory as stored, the event announced, the status's hooks run."""
    order = change.order
    recorded(change.event)
    for key, value in change.values.items():
        setattr(order, key, value)
    order.version += 1
    await status_changed(order, actor_user_id=actor_user_id)
    return order


async def transition(
    order: Order,
    target: OrderStatus,
    *,
    actor_user_id: int | None,
    reason: str = "",
    changes: dict[str, Any] | None = None,
    field: str = "orderId",
) -> Order:
    """Move ``order`` to ``target`` (with ``changes`` to other columns) if the machine allows
    it and nobody changed the order meanwhile; record the timeline entry and the event, then
    run the status's hooks (``domain/lifecycle.py``).

    Call inside the command's transaction. The update is compare-and-set on ``version``, so
    two concurrent commands on one order cannot both succeed (works on SQLite as on PostgreSQL).
    """
    change = plan_transition(
        order,
        target,
        actor_user_id=actor_user_id,
        reason=reason,
        changes=changes,
        field=field,
    )
    if not await change_order(order, change.values, timeline=change.timeline, event=change.event):
        raise conflict(order, field=field)
    return await transitioned(change, actor_user_id=actor_user_id)


def conflict(order: Order, *, field: str) -> DomainError:
    return DomainError(
        ErrorCode.CONFLICT,
        f"Order {order.number} changed meanwhile; reload and retry.",
        field=field,
    )
