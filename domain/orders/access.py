"""The order a command acts on: found within the caller's side of it, or not found.

An order of another organisation is refused exactly like one that does not exist. Most order
commands open with this read, so it is a written-out statement
(``domain.persistence.orders.order_where``).
"""

from __future__ import annotations

from domain.access import Viewer
from domain.errors import not_found
from domain.orders.models import Order
from domain.persistence.orders import order_where


async def _order_where(column: str, order_id: int, organisation_id: int, field: str) -> Order:
    found = await order_where(order_id, column=column, organisation_id=organisation_id)
    if found is None:
        raise not_found("Order", field=field)
    return found


async def order_of_buyer(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    return await _order_where("buyer_id", order_id, viewer.organisation_id, field)


async def order_of_supplier(viewer: Viewer, order_id: int, *, field: str = "orderId") -> Order:
    return await _order_where("supplier_id", order_id, viewer.organisation_id, field)
