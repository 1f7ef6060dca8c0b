"""The order a command acts on: found within the caller's side of it, or not found.

Most order commands open with this read, so it is one written-out statement with the rows built
by ``domain.rows`` (building it through the ORM cost more than running it). An order of
another organisation is refused exactly like one that does not exist.
"""

from __future__ import annotations

from domain.access import Viewer
from domain.errors import not_found
from domain.models.orders import Order
from domain.rows import fetch, placeholder

_SQL: dict[tuple[str, str], str] = {}


async def _order_where(column: str, order_id: int, organisation_id: int, field: str) -> Order:
    """The order ``order_id`` if its ``column`` (``buyer_id`` or ``supplier_id``) is
    ``organisation_id``; otherwise not found, on ``field``."""
    dialect = Order._meta.db.capabilities.dialect
    sql = _SQL.get((dialect, column))
    if sql is None:
        sql = _SQL[dialect, column] = (
            f'SELECT * FROM "{Order._meta.db_table}" '
            f'WHERE "id" = {placeholder(dialect, 1)} AND "{column}" = {placeholder(dialect, 2)} '
            "LIMIT 1"
        )
    found = await fetch(Order, sql, [order_id, organisation_id])
    if not found:
        raise not_found("Order", field=field)
    return found[0]


async def order_of_buyer(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    return await _order_where("buyer_id", order_id, viewer.organisation_id, field)


async def order_of_supplier(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    return await _order_where("supplier_id", order_id, viewer.organisation_id, field)
