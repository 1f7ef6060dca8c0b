"""Reading orders: the caller's orders with filters and keyset pages, and status counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pypika_tortoise import Table
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.models import Model
from tortoise.queryset import QuerySet

from domain import visibility
from domain.access import Viewer
from domain.errors import DomainError, ErrorCode
from domain.models.catalogue import Product, Sku
from domain.models.distribution import (
    Partnership,
    PartnershipStatus,
    PushStatus,
    WarehouseOrder,
    WithdrawalStatus,
)
from domain.models.orders import Order, OrderKind, OrderLine, OrderStatus, OrderTransition
from domain.models.organisations import Organisation, OrganisationKind
from domain.models.stores import Store, StorePlatform
from domain.rows import RowBuilder, builder, fetch, fetch_query

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


LineWithSku = tuple[OrderLine, Sku | None, Product | None]
_LINE_PARTS: tuple[tuple[type[Model], str], ...] = ((OrderLine, "l"), (Sku, "s"), (Product, "p"))
_lines_select: dict[type, str] = {}  # per query dialect: the statement up to its WHERE


def _lines_with_skus_head(query_class: type) -> str:
    """``SELECT <every column, prefixed> FROM order_line LEFT JOIN sku LEFT JOIN product``,
    built once per dialect (building it costs more than running it)."""
    head = _lines_select.get(query_class)
    if head is None:
        line, sku, product = (Table(model._meta.db_table) for model, _ in _LINE_PARTS)
        query = (
            query_class.from_(line)
            .left_join(sku)
            .on(line.sku_id == sku.id)
            .left_join(product)
            .on(sku.product_id == product.id)
        )
        for (model, prefix), table in zip(_LINE_PARTS, (line, sku, product), strict=True):
            query = query.select(
                *(table.field(c).as_(f"{prefix}_{c}") for c in model._meta.db_fields)
            )
        head = _lines_select[query_class] = str(query)
    return head


async def lines_with_skus(order_ids: Sequence[int]) -> list[LineWithSku]:
    """Every line of these orders (by id) with its SKU and the SKU's product, in one statement.

    SKU references are plain columns rather than foreign keys, so the join is written here.
    """
    if not order_ids:
        return []
    db = OrderLine._meta.db
    table = OrderLine._meta.db_table
    ids = ",".join(str(int(i)) for i in order_ids)  # integers only: nothing to escape
    sql = f'{_lines_with_skus_head(db.query_class)} WHERE "{table}"."order_id" IN ({ids}) '
    sql += f'ORDER BY "{table}"."id"'
    built: dict[tuple[str, int], Any] = {}  # each SKU and product made once, however many lines
    skus, products = builder(Sku), builder(Product)

    def instance(model_rows: RowBuilder[Any], prefix: str, row: Any) -> Any:
        pk = row[f"{prefix}id"]
        if pk is None:
            return None
        key = (prefix, pk)
        if key not in built:
            built[key] = model_rows.build(row, prefix)
        return built[key]

    _, rows = await db.execute_query(sql)
    lines = builder(OrderLine)
    return [
        (lines.build(row, "l_"), instance(skus, "s_", row), instance(products, "p_", row))
        for row in rows
    ]


async def latest_transitions(order_ids: Sequence[int]) -> list[OrderTransition]:
    """The newest transition of each of these orders, in one statement."""
    if not order_ids:
        return []
    table = OrderTransition._meta.db_table
    ids = ",".join(str(int(i)) for i in order_ids)  # integers only: nothing to escape
    return await fetch(
        OrderTransition,
        f'SELECT * FROM "{table}" WHERE "id" IN '
        f'(SELECT MAX("id") FROM "{table}" WHERE "order_id" IN ({ids}) GROUP BY "order_id")',
    )


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
