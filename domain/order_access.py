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


async def find_order(*, order_id: int, column: str, organisation_id: int) -> Order | None:
    """The order ``order_id`` if its ``column`` (``buyer_id`` or ``supplier_id``) is
    ``organisation_id``."""
    db = Order._meta.db
    dialect = db.capabilities.dialect
    sql = _SQL.get((dialect, column))
    if sql is None:
        if column not in ("buyer_id", "supplier_id"):
            raise ValueError(f"orders are not found by {column}")
        sql = _SQL[dialect, column] = (
            f'SELECT * FROM "{Order._meta.db_table}" '
            f'WHERE "id" = {placeholder(dialect, 1)} AND "{column}" = {placeholder(dialect, 2)} '
            "LIMIT 1"
        )
    found = await fetch(Order, sql, [order_id, organisation_id])
    return found[0] if found else None


async def order_of_buyer(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    order = await find_order(
        order_id=order_id, column="buyer_id", organisation_id=viewer.organisation_id
    )
    if order is None:
        raise not_found("Order", field=field)
    return order


async def order_of_supplier(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    order = await find_order(
        order_id=order_id, column="supplier_id", organisation_id=viewer.organisation_id
    )
    if order is None:
        raise not_found("Order", field=field)
    return order
