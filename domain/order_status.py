"""The order state machine: the one place where an order's status changes."""

from __future__ import annotations

from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.events import EventType, record_event
from domain.models.orders import Order, OrderStatus, OrderTransition
from domain.rows import placeholder

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


# orders paid from cloud-warehouse stock: shipping deducts the held units, ending releases them
_SETTLES_STOCK = frozenset({S.SHIPPED, S.CANCELLED, S.REFUNDED})


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


def audience(order: Order) -> list[int]:
    return [org for org in (order.buyer_id, order.supplier_id) if org is not None]


_CAS_SQL: dict[tuple[str, tuple[str, ...]], str] = {}


async def _compare_and_set(order: Order, values: dict[str, Any]) -> bool:
    """``UPDATE`` the order's ``values`` and bump its ``version`` if the version is still the
    one ``order`` was read with. Written out (every status change runs it; building it through
    the ORM cost more than running it), with the columns and conversions ``QuerySet.update``
    uses."""
    meta = Order._meta
    db = meta.db
    dialect = db.capabilities.dialect
    columns = tuple(meta.fields_db_projection[name] for name in values)
    sql = _CAS_SQL.get((dialect, columns))
    if sql is None:
        sets = [f'"{column}" = {placeholder(dialect, i)}' for i, column in enumerate(columns, 1)]
        n = len(columns)
        sql = _CAS_SQL[dialect, columns] = (
            f'UPDATE "{meta.db_table}" SET {", ".join(sets)}, "version" = "version" + 1 '
            f'WHERE "id" = {placeholder(dialect, n + 1)} '
            f'AND "version" = {placeholder(dialect, n + 2)}'
        )
    params = [meta.fields_map[name].to_db_value(value, None) for name, value in values.items()]
    updated, _ = await db.execute_query(sql, [*params, order.id, order.version])
    return updated == 1


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
    it and nobody changed the order meanwhile; record the timeline entry and the event.

    Call inside the command's transaction. The update is compare-and-set on ``version``, so
    two concurrent commands on one order cannot both succeed (works on SQLite as on PostgreSQL).
    """
    check_transition(order, target, field=field)
    values = {**(changes or {}), "status": target}
    if not await _compare_and_set(order, values):
        raise DomainError(
            ErrorCode.CONFLICT,
            f"Order {order.number} changed meanwhile; reload and retry.",
            field=field,
        )
    previous = order.status
    for key, value in values.items():
        setattr(order, key, value)
    order.version += 1
    await OrderTransition.create(
        order_id=order.id,
        from_status=previous,
        to_status=target,
        actor_user_id=actor_user_id,
        reason=reason[:500],
    )
    if target in _SETTLES_STOCK and order.cloud_warehouse_id is not None:
        from domain.stock import settle_reservations  # stock imports this module

        await settle_reservations(order, shipped=target is S.SHIPPED, actor_user_id=actor_user_id)
    await record_event(
        type=EventType.ORDER_STATUS_CHANGED,
        subject_type="Order",
        subject_id=order.id,
        audience=audience(order),
        payload={
            "orderId": str(order.id),
            "number": order.number,
            "from": previous.value,
            "to": target.value,
            "reason": reason,
        },
        actor_user_id=actor_user_id,
    )
    return order
