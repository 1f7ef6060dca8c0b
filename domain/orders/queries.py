"""Reading orders: the caller's orders with filters and keyset pages, status counts, and the
caller's quotes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from domain import visibility
from domain.access import Viewer
from domain.distribution.models import (
    Partnership,
    PartnershipStatus,
    PushStatus,
    WarehouseOrder,
    WithdrawalStatus,
)
from domain.errors import DomainError, ErrorCode
from domain.orders.models import Order, OrderKind, OrderStatus, Quote
from domain.organisations.models import Organisation, OrganisationKind
from domain.pages import keyset_page
from domain.persistence.orders import LineWithSku as LineWithSku
from domain.persistence.orders import latest_transitions as latest_transitions
from domain.persistence.orders import lines_with_skus as lines_with_skus
from domain.persistence.rows import fetch_query
from domain.stores.models import Store, StorePlatform

MAX_PAGE = 100


@dataclass(frozen=True)
class OrderFilter:
    statuses: list[OrderStatus] | None = None
    kinds: list[OrderKind] | None = None
    store_id: int | None = None
    platform: StorePlatform | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    search: str | None = None
    distributor_name: str | None = None
    distribution_only: bool = False
    push_statuses: list[PushStatus] | None = None
    withdrawal_statuses: list[WithdrawalStatus] | None = None


visible_orders = visibility.orders


def _filtered(viewer: Viewer, f: OrderFilter) -> QuerySet[Order]:
    query = visible_orders(viewer)
    if f.statuses:
        query = query.filter(status__in=f.statuses)
    if f.kinds:
        query = query.filter(kind__in=f.kinds)
    if f.store_id is not None:
        query = query.filter(store_id=f.store_id)
    if f.platform is not None:
        query = query.filter(store_id__in=Subquery(Store.filter(platform=f.platform).values("id")))
    for column, bound, op in (
        ("created_at", f.created_from, "gte"),
        ("created_at", f.created_to, "lt"),
        ("updated_at", f.updated_from, "gte"),
        ("updated_at", f.updated_to, "lt"),
    ):
        if bound is not None:
            query = query.filter(**{f"{column}__{op}": bound})
    if f.distribution_only or f.distributor_name:
        partners = Partnership.filter(status=PartnershipStatus.ACCEPTED)
        partners = (
            partners.filter(supplier_id=viewer.organisation_id)
            if viewer.organisation_kind is OrganisationKind.SUPPLIER
            else partners.filter(distributor_id=viewer.organisation_id)
        )
        query = query.filter(buyer_id__in=Subquery(partners.values("distributor_id")))
    if f.distributor_name:
        named = Organisation.filter(name__icontains=f.distributor_name.strip()[:100])
        query = query.filter(buyer_id__in=Subquery(named.values("id")))
    if f.push_statuses:
        pushed = WarehouseOrder.filter(push_status__in=f.push_statuses)
        query = query.filter(id__in=Subquery(pushed.values("order_id")))
    if f.withdrawal_statuses:
        withdrawing = WarehouseOrder.filter(withdrawal_status__in=f.withdrawal_statuses)
        query = query.filter(id__in=Subquery(withdrawing.values("order_id")))
    if f.search:
        term = f.search.strip()[:100]
        query = query.filter(
            Q(number=term)
            | Q(store_order_number=term)
            | Q(tracking_number=term)
            | Q(store_order_number=f"#{term}")
        )
    return query


async def list_orders(
    *, viewer: Viewer, filters: OrderFilter, first: int, after: int | None
) -> tuple[list[Order], bool]:
    """Newest first, ``first`` orders after the cursor (an order id): keyset, no OFFSET."""
    if not 0 < first <= MAX_PAGE:
        raise DomainError(ErrorCode.INVALID, f"first must be 1 to {MAX_PAGE}.", field="first")
    query = _filtered(viewer, filters)
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await fetch_query(query.order_by("-id").limit(first + 1))
    return rows[:first], len(rows) > first


async def list_orders_before(
    *, viewer: Viewer, filters: OrderFilter, last: int, before: int | None
) -> tuple[list[Order], bool]:
    """Paging backwards: the ``last`` orders that come before the cursor ``before`` in the
    newest-first list (the newer ones; None: the oldest orders), newest first, and whether
    more come before them. Keyset too: one statement however far back."""
    if not 0 < last <= MAX_PAGE:
        raise DomainError(ErrorCode.INVALID, f"last must be 1 to {MAX_PAGE}.", field="last")
    query = _filtered(viewer, filters)
    if before is not None:
        query = query.filter(id__gt=before)
    rows = await fetch_query(query.order_by("id").limit(last + 1))
    return rows[:last][::-1], len(rows) > last


async def get_order(*, viewer: Viewer, order_id: int) -> Order | None:
    return await visible_orders(viewer).get_or_none(id=order_id)


async def order_counts(*, viewer: Viewer) -> dict[OrderStatus, int]:
    rows = (
        await visible_orders(viewer)
        .annotate(n=Count("id"))
        .group_by("status")
        .values_list("status", "n")
    )
    counts = {status: 0 for status in OrderStatus}
    for status, n in rows:
        counts[OrderStatus(status)] = n
    return counts


# -- quotes --------------------------------------------------------------------------------------


async def get_quote(*, viewer: Viewer, quote_id: int) -> Quote | None:
    return await visibility.quotes(viewer).get_or_none(id=quote_id)


async def list_quotes(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[Quote], bool]:
    """A page of the caller's side of its quotes, newest first."""
    return await keyset_page(visibility.quotes(viewer), first=first, after=after, newest_first=True)
