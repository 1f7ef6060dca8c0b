"""Reading after-sales (return stock-in) orders: the filtered list and one return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Subquery

from domain import visibility
from domain.access import Viewer
from domain.after_sales.models import AfterSalesOrder, AfterSalesStatus
from domain.errors import DomainError, ErrorCode
from domain.orders.models import Order
from domain.organisations.models import Organisation
from domain.stores.models import Store, StorePlatform

MAX_PAGE = 100


@dataclass(frozen=True)
class ReturnFilter:
    statuses: list[AfterSalesStatus] | None = None
    platform: StorePlatform | None = None
    distributor_name: str | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None


_visible = visibility.after_sales_orders


async def list_returns(
    *, viewer: Viewer, filters: ReturnFilter, first: int, after: int | None
) -> tuple[list[AfterSalesOrder], bool]:
    """The "return stock-in — third-party warehouse" list, newest first (keyset on the id)."""
    if not 0 < first <= MAX_PAGE:
        raise DomainError(ErrorCode.INVALID, f"first must be 1 to {MAX_PAGE}.", field="first")
    query = _visible(viewer)
    if filters.statuses:
        query = query.filter(status__in=filters.statuses)
    if filters.platform is not None:
        stores = Store.filter(platform=filters.platform).values("id")
        orders = Order.filter(store_id__in=Subquery(stores)).values("id")
        query = query.filter(order_id__in=Subquery(orders))
    if filters.distributor_name:
        named = Organisation.filter(name__icontains=filters.distributor_name.strip()[:100])
        query = query.filter(distributor_id__in=Subquery(named.values("id")))
    if filters.updated_from is not None:
        query = query.filter(updated_at__gte=filters.updated_from)
    if filters.updated_to is not None:
        query = query.filter(updated_at__lt=filters.updated_to)
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(first + 1)
    return rows[:first], len(rows) > first


async def get_return(*, viewer: Viewer, after_sales_id: int) -> AfterSalesOrder | None:
    return await _visible(viewer).get_or_none(id=after_sales_id)
