"""Reading cloud-warehouse stock: the warehouses buyers can stock in, the buyer's stock items
and each item's movement ledger."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer, require_buyer
from domain.errors import DomainError, ErrorCode, not_found
from domain.organisations.models import Role
from domain.pages import keyset_page
from domain.stock.models import CloudWarehouse, StockItem, StockMovement

MAX_PAGE = 100


async def list_cloud_warehouses(
    *, viewer: Viewer, first: int, after: int | None = None, supplier_id: int | None = None
) -> tuple[list[CloudWarehouse], bool]:
    """A page of the cloud warehouses buyers can stock in (optionally one supplier's), in id
    order."""
    query = visibility.cloud_warehouses(viewer)
    if supplier_id is not None:
        query = query.filter(supplier_id=supplier_id)
    return await keyset_page(query, first=first, after=after)


async def inventory(
    *,
    viewer: Viewer,
    first: int,
    after: int | None = None,
    warehouse_id: int | None = None,
    sku_id: int | None = None,
) -> tuple[list[StockItem], bool]:
    """A page of the buyer's stock items (optionally of one warehouse or SKU), in id order."""
    require_buyer(viewer, Role.VIEWER)
    query = visibility.stock_items(viewer)
    if warehouse_id is not None:
        query = query.filter(warehouse_id=warehouse_id)
    if sku_id is not None:
        query = query.filter(sku_id=sku_id)
    return await keyset_page(query, first=first, after=after)


async def item_of_buyer(viewer: Viewer, stock_item_id: int) -> StockItem:
    """The caller's own stock item, or not found (also what ``set_low_stock_threshold`` acts on)."""
    item = await StockItem.get_or_none(id=stock_item_id, buyer_id=viewer.organisation_id)
    if item is None:
        raise not_found("Stock item", field="stockItemId")
    return item


async def movements(
    *, viewer: Viewer, stock_item_id: int, first: int, after: int | None
) -> tuple[list[StockMovement], bool]:
    """The item's ledger, newest first (keyset on the id)."""
    if not 0 < first <= MAX_PAGE:
        raise DomainError(ErrorCode.INVALID, f"first must be 1 to {MAX_PAGE}.", field="first")
    item = await item_of_buyer(viewer, stock_item_id)
    query = StockMovement.filter(stock_item_id=item.id)
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(first + 1)
    return rows[:first], len(rows) > first
