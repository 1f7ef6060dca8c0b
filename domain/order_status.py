"""The order state machine: the one place where an order's status changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.db import notify_after_commit
from domain.errors import DomainError, ErrorCode
from domain.events import EventType, NewEvent, noted, record, recording_sql
from domain.models.orders import Order, OrderStatus, OrderTransition
from domain.rows import placeholder
from domain.stock_ledger import settle_reservations

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


def _cas_sql(dialect: str, columns: tuple[str, ...]) -> str:
    """``UPDATE`` of ``columns`` and ``version`` if the version is still the one read; its
    parameters are the values, the order's id and that version."""
    sql = _CAS_SQL.get((dialect, columns))
    if sql is None:
        sets = [f'"{column}" = {placeholder(dialect, i)}' for i, column in enumerate(columns, 1)]
        n = len(columns)
        sql = _CAS_SQL[dialect, columns] = (
            f'UPDATE "{Order._meta.db_table}" SET {", ".join(sets)}, "version" = "version" + 1 '
            f'WHERE "id" = {placeholder(dialect, n + 1)} '
            f'AND "version" = {placeholder(dialect, n + 2)}'
        )
    return sql


_CHANGE_SQL: dict[tuple[str, ...], str] = {}


def _change_sql(columns: tuple[str, ...]) -> str:
    """PostgreSQL: the compare-and-set, the timeline entry and the event in one statement; the
    entry and the event are inserted only if the update matched. Returns ``updated``."""
    sql = _CHANGE_SQL.get(columns)
    if sql is None:
        n = len(columns) + 2
        p = [f"${i}" for i in range(n + 1, n + 6)]
        sql = _CHANGE_SQL[columns] = f"""WITH changed AS (
    {_cas_sql("postgres", columns)}
    RETURNING "id"
), timeline AS (
    INSERT INTO "{OrderTransition._meta.db_table}"
        ("order_id", "from_status", "to_status", "actor_user_id", "reason", "created_at")
    SELECT changed.id, {p[0]}::text, {p[1]}::text, {p[2]}::integer, {p[3]}::text,
           {p[4]}::timestamptz
    FROM changed
), {recording_sql(n + 6, only_if="changed")}
SELECT count(*) AS updated FROM changed"""
    return sql


async def _change_and_record(
    order: Order,
    values: dict[str, Any],
    *,
    timeline: OrderTransition,
    event: NewEvent,
) -> bool:
    """Set ``values`` on the order if its ``version`` is still the one ``order`` was read with
    (and bump it), then add the ``timeline`` entry and record the ``event``. False when the
    order changed meanwhile, and then nothing is written.

    Written out, with the columns and conversions the ORM uses: every status change runs it. On
    PostgreSQL it is one statement; elsewhere three."""
    meta = Order._meta
    db = meta.db
    dialect = db.capabilities.dialect
    columns = tuple(meta.fields_db_projection[name] for name in values)
    params = [meta.fields_map[name].to_db_value(value, None) for name, value in values.items()]
    params += [order.id, order.version]
    if dialect != "postgres":
        updated, _ = await db.execute_query(_cas_sql(dialect, columns), params)
        if updated != 1:
            return False
        await timeline.save()
        await record(event)
        return True
    fields = OrderTransition._meta.fields_map
    params += [
        fields["from_status"].to_db_value(timeline.from_status, None),
        fields["to_status"].to_db_value(timeline.to_status, None),
        timeline.actor_user_id,
        timeline.reason,
        datetime.now(UTC),
        *event.parameters(),
    ]
    _, rows = await db.execute_query(_change_sql(columns), params)
    if rows[0]["updated"] != 1:
        return False
    noted(event)
    notify_after_commit()
    return True


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
    previous = order.status
    timeline = OrderTransition(
        order_id=order.id,
        from_status=previous,
        to_status=target,
        actor_user_id=actor_user_id,
        reason=reason[:500],
    )
    event = NewEvent(
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
    if not await _change_and_record(order, values, timeline=timeline, event=event):
        raise DomainError(
            ErrorCode.CONFLICT,
            f"Order {order.number} changed meanwhile; reload and retry.",
            field=field,
        )
    for key, value in values.items():
        setattr(order, key, value)
    order.version += 1
    if target in _SETTLES_STOCK and order.cloud_warehouse_id is not None:
        await settle_reservations(order, shipped=target is S.SHIPPED, actor_user_id=actor_user_id)
    return order
