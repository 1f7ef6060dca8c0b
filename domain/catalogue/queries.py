"""Reads of the supplier catalogue: pages of products and of logistics methods."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer
from domain.catalogue.models import LogisticsMethod, Product
from domain.organisations.models import OrganisationKind
from domain.pages import keyset_page


async def list_products(
    *, viewer: Viewer, first: int, after: int | None = None, supplier_id: int | None = None
) -> tuple[list[Product], bool]:
    """A page of products in id order: suppliers see their own (``supplier_id`` is for
    buyers); buyers browse every supplier's active ones, or one supplier's."""
    query = visibility.products(viewer)
    if supplier_id is not None and viewer.organisation_kind is not OrganisationKind.SUPPLIER:
        query = query.filter(supplier_id=supplier_id)
    return await keyset_page(query, first=first, after=after)


async def list_logistics_methods(
    *, viewer: Viewer, first: int, after: int | None = None, supplier_id: int | None = None
) -> tuple[list[LogisticsMethod], bool]:
    """A page of active logistics methods in id order: a supplier's own; for buyers every
    supplier's, or one supplier's."""
    query = visibility.logistics_methods(viewer).filter(is_active=True)
    if supplier_id is not None and viewer.organisation_kind is not OrganisationKind.SUPPLIER:
        query = query.filter(supplier_id=supplier_id)
    return await keyset_page(query, first=first, after=after)
