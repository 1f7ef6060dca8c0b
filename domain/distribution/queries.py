"""Reading distribution: the caller's partnerships and their warehouses, the supplier's
third-party warehouses and distribution settings, and withdraw requests."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer, require_supplier_staff
from domain.distribution.models import (
    DistributionSettings,
    DistributionWarehouse,
    Partnership,
    ThirdPartyWarehouse,
    Withdrawal,
)
from domain.distribution.partnerships import distribution_settings, partnership_of
from domain.pages import keyset_page


async def list_partnerships(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[Partnership], bool]:
    """A page of the caller's partnerships (as supplier or as distributor), newest first."""
    return await keyset_page(
        visibility.partnerships(viewer), first=first, after=after, newest_first=True
    )


async def list_distribution_warehouses(
    *, viewer: Viewer, partnership_id: int, first: int, after: int | None = None
) -> tuple[list[DistributionWarehouse], bool]:
    """A page of one of the caller's partnerships' warehouses, in id order (a warehouse is
    visible with its partnership; an unknown partnership is NOT_FOUND)."""
    partnership = await partnership_of(viewer, partnership_id, accepted=False)
    return await keyset_page(
        DistributionWarehouse.filter(partnership_id=partnership.id), first=first, after=after
    )


async def list_connections(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[ThirdPartyWarehouse], bool]:
    """Supplier staff: a page of the supplier's third-party warehouses, in id order."""
    require_supplier_staff(viewer)
    return await keyset_page(visibility.third_party_warehouses(viewer), first=first, after=after)


async def settings_of(*, viewer: Viewer) -> DistributionSettings:
    """The calling supplier's distribution settings."""
    require_supplier_staff(viewer)
    return await distribution_settings(viewer.organisation_id)


async def list_withdrawals(
    *,
    viewer: Viewer,
    first: int,
    after: int | None = None,
    order_id: int | None = None,
    after_sales_id: int | None = None,
) -> tuple[list[Withdrawal], bool]:
    """A page of the withdraw requests the caller's side sees (optionally of one order or
    return), newest first."""
    query = visibility.withdrawals(viewer)
    if order_id is not None:
        query = query.filter(order_id=order_id)
    if after_sales_id is not None:
        query = query.filter(after_sales_id=after_sales_id)
    return await keyset_page(query, first=first, after=after, newest_first=True)
