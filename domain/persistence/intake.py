"""Store orders taken in by the batch (``domain.orders.intake.ingest_store_orders``), written out.

The rules decide, per store order, the order and its lines as plain rows (the attributes they
set, ``domain.persistence.inserts``); these statements write a whole batch of them at a time:

- ``insert_orders``: every order in one statement, an order whose (store, store order id) is
  already taken in skipped by the unique key (``ON CONFLICT DO NOTHING``), so two instances
  racing on one store order make it once; the inserted rows come back whole, as loaded orders.
- ``insert_order_details``: the lines, timeline entries, events and their audiences of the orders
  inserted; one statement on PostgreSQL, a few per table on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from compat import tortoise as orm
from domain.orders.models import Order, OrderLine, OrderTransition
from domain.persistence.dialects import DialectSwitch
from domain.persistence.events import (
    Recordable,
    insert_event,
    many_event_parameters,
    recording_many_sql,
)
from domain.persistence.inserts import Row, layout
from domain.persistence.rows import builder

# --------------------------------------------------------------------------- orders

insert_orders: DialectSwitch[list[Order]] = DialectSwitch("intake.insert_orders")
_ORDER_KEY = '("store_id", "store_order_id")'
_ORDERS_SQL: str | None = None


@insert_orders.postgres
async def _insert_orders_postgres(orders: Sequence[Row]) -> list[Order]:
    """Insert these store orders but those whose (store, store order id) is taken; the orders
    inserted, loaded. Wrapped in WITH because the driver returns no rows for a statement that
    starts with INSERT."""
    global _ORDERS_SQL
    if not orders:
        return []
    orders_layout = layout(Order)
    if _ORDERS_SQL is None:
        _ORDERS_SQL = (
            f"WITH added AS ({orders_layout.unnest_insert(1)} ON CONFLICT {_ORDER_KEY} "
            "DO NOTHING RETURNING *) SELECT * FROM added"
        )
    values = orders_layout.arrays(orders, datetime.now(UTC))
    _, rows = await orm.connection_of(Order).execute_query(_ORDERS_SQL, values)
    return builder(Order).build_all(rows)


@insert_orders.other
async def _insert_orders_other(orders: Sequence[Row]) -> list[Order]:
    db = orm.connection_of(Order)
    inserted: list[Order] = []
    for sql, values in layout(Order).sqlite_inserts(orders, datetime.now(UTC)):
        sql += f" ON CONFLICT {_ORDER_KEY} DO NOTHING RETURNING *"
        _, rows = await db.execute_query(sql, values)
        inserted += builder(Order).build_all(rows)
    return inserted


# --------------------------------------------------------------------------- details

insert_order_details: DialectSwitch[None] = DialectSwitch("intake.insert_order_details")
_DETAILS_SQL: str | None = None


def _details_sql() -> str:
    global _DETAILS_SQL
    if _DETAILS_SQL is None:
        lines, timeline = layout(OrderLine), layout(OrderTransition)
        first_event = 1 + len(lines.columns) + len(timeline.columns)
        _DETAILS_SQL = f"""WITH lines AS (
    {lines.unnest_insert(1)}
), timeline AS (
    {timeline.unnest_insert(1 + len(lines.columns))}
    RETURNING "order_id"
), {recording_many_sql(first_event, only_if="timeline")}
SELECT count(*) AS events FROM drawn"""
    return _DETAILS_SQL


@insert_order_details.postgres
async def _insert_details_postgres(
    lines: Sequence[Row], transitions: Sequence[Row], events: Sequence[Recordable]
) -> None:
    """Insert order ``lines`` and timeline entries (``transitions``), their orders inserted,
    and ``events`` with their audiences (``domain.persistence.events.recording_many_sql``): one
    statement."""
    now = datetime.now(UTC)
    values = [
        *layout(OrderLine).arrays(lines, now),
        *layout(OrderTransition).arrays(transitions, now),
        *many_event_parameters(events),
    ]
    await orm.connection_of(Order).execute_query(_details_sql(), values)


@insert_order_details.other
async def _insert_details_other(
    lines: Sequence[Row], transitions: Sequence[Row], events: Sequence[Recordable]
) -> None:
    """As on PostgreSQL: lines and timeline entries many rows a statement, each event as
    ``domain.persistence.events`` writes one."""
    db = orm.connection_of(Order)
    now = datetime.now(UTC)
    for model, rows in ((OrderLine, lines), (OrderTransition, transitions)):
        for sql, values in layout(model).sqlite_inserts(rows, now):
            await db.execute_query(sql, values)
    for event in events:
        await insert_event(event)
