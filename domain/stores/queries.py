"""Reads of a buyer's connected stores: pages of stores and of one store's products, and the
store of a buyer by id."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer
from domain.errors import not_found
from domain.organisations.models import Role
from domain.pages import keyset_page
from domain.stores.models import Store, StoreProduct


async def list_stores(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[Store], bool]:
    """A page of the stores the caller's organisation connected, in id order."""
    return await keyset_page(visibility.own_stores(viewer), first=first, after=after)


async def list_store_products(
    *, viewer: Viewer, store_id: int, first: int, after: int | None = None
) -> tuple[list[StoreProduct], bool]:
    """A page of one of the caller's stores' products, in id order."""
    store = await store_of_buyer(viewer, store_id)
    return await keyset_page(StoreProduct.filter(store_id=store.id), first=first, after=after)


async def store_of_buyer(viewer: Viewer, store_id: int) -> Store:
    store = await visibility.own_stores(viewer).get_or_none(id=store_id)
    if store is None:
        raise not_found("Store", field="storeId")
    return store


def shows_backend(viewer: Viewer | None, *, buyer_id: int) -> bool:
    """Whether ``viewer`` may read a store's backend address (``apiUrl``): next to its
    credentials, so its buyer's ADMINs and OWNER only; never a supplier, nor a VIEWER or STAFF."""
    return viewer is not None and viewer.organisation_id == buyer_id and viewer.has_role(Role.ADMIN)
