"""DataLoaders: one query per kind of related object per request, whatever the page size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from domain.access import Viewer
from domain.distribution.models import WarehouseAttempt, WarehouseOrder, Withdrawal
from domain.models import (
    Depute,
    FreightRule,
    LogisticsMethod,
    OrderLine,
    OrderTransition,
    PriceTier,
    Product,
    ProductLink,
    Sku,
    Store,
    StoreVariant,
)
from domain.orders import queries as order_queries
from domain.orders.models import Order
from domain.orders.queries import LineWithSku, visible_orders
from domain.organisations.models import Organisation
from domain.payments import charges
from domain.payments.charges import PriceEstimate
from domain.persistence.rows import fetch_query
from domain.stores.models import ProductLinkStatus

M = TypeVar("M", bound=Model)


def _by_id(model: type[M]) -> DataLoader[int, M | None]:
    async def load(ids: Sequence[int]) -> list[M | None]:
        rows = {row.pk: row for row in await fetch_query(model.filter(id__in=list(ids)))}
        return [rows.get(i) for i in ids]

    return DataLoader(load_fn=load)


def _by_column(model: type[M], column: str) -> DataLoader[int, M | None]:
    async def load(keys: Sequence[int]) -> list[M | None]:
        rows = {getattr(r, column): r for r in await model.filter(**{f"{column}__in": list(keys)})}
        return [rows.get(k) for k in keys]

    return DataLoader(load_fn=load)


def _grouped(
    model: type[M], column: str, order: str = "id", **where: Any
) -> DataLoader[int, list[M]]:
    async def load(keys: Sequence[int]) -> list[list[M]]:
        groups: dict[int, list[M]] = defaultdict(list)
        rows = await fetch_query(
            model.filter(**{f"{column}__in": list(keys)}, **where).order_by(order)
        )
        for row in rows:
            groups[getattr(row, column)].append(row)
        return [groups.get(k, []) for k in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """Created per HTTP request (and per event on a subscription), so nothing goes stale."""

    def __init__(self, viewer: Viewer | None) -> None:
        self.products = _by_id(Product)

        async def load_skus(ids: Sequence[int]) -> list[Sku | None]:
            # one query for SKUs and their products; the products loader is primed with them
            rows = {s.id: s for s in await Sku.filter(id__in=list(ids)).select_related("product")}
            for sku in rows.values():
                self.products.prime(sku.product_id, sku.product)
            return [rows.get(i) for i in ids]

        self.skus: DataLoader[int, Sku | None] = DataLoader(load_fn=load_skus)

        async def load_stores(ids: Sequence[int]) -> list[Store | None]:
            # never the sealed credentials: nothing here needs them decrypted
            rows = {
                s.id: s
                for s in await Store.filter(id__in=list(ids)).only(
                    "id", "buyer_id", "name", "platform", "api_url", "last_synced_at", "created_at"
                )
            }
            return [rows.get(i) for i in ids]

        self.stores: DataLoader[int, Store | None] = DataLoader(load_fn=load_stores)
        self.methods = _by_id(LogisticsMethod)
        self.organisations = _by_id(Organisation)
        self.warehouse_orders = _by_column(WarehouseOrder, "order_id")
        self.withdrawals_by_order = _grouped(Withdrawal, "order_id")
        self.withdrawals_by_return = _grouped(Withdrawal, "after_sales_id")
        self.attempts_by_order = _grouped(WarehouseAttempt, "order_id")
        self.attempts_by_return = _grouped(WarehouseAttempt, "after_sales_id")
        self.lines_by_order = _grouped(OrderLine, "order_id")
        self.transitions_by_order = _grouped(OrderTransition, "order_id")

        async def load_latest(keys: Sequence[int]) -> list[OrderTransition | None]:
            # only the newest entry of each order, not every transition of the page's orders
            rows = {t.order_id: t for t in await order_queries.latest_transitions(keys)}
            return [rows.get(k) for k in keys]

        self.latest_transition: DataLoader[int, OrderTransition | None] = DataLoader(
            load_fn=load_latest
        )
        self.deputes_by_order = _grouped(Depute, "order_id")

        async def lines_with_skus(order_ids: Sequence[int]) -> list[list[LineWithSku]]:
            """Lines of these orders with SKU and product (one statement), priming the line,
            SKU and product loaders with what it read."""
            groups: dict[int, list[LineWithSku]] = defaultdict(list)
            for line, sku, product in await order_queries.lines_with_skus(order_ids):
                groups[line.order_id].append((line, sku, product))
                if sku is not None:
                    self.skus.prime(sku.id, sku)
                    if product is not None:
                        self.products.prime(product.id, product)
            for order_id in order_ids:
                self.lines_by_order.prime(order_id, [ln for ln, _, _ in groups.get(order_id, [])])
            return [groups.get(k, []) for k in order_ids]

        self.lines_with_skus = lines_with_skus

        async def load_estimates(orders: Sequence[Order]) -> list[PriceEstimate | None]:
            """Unpaid orders' prices as payment would charge them now, for every order asked
            for in one turn of the loop at once (``domain.payments.charges``)."""
            found = await charges.estimate_prices(orders)
            return [found.get(order.id) for order in orders]

        self.price_estimates: DataLoader[Order, PriceEstimate | None] = DataLoader(
            load_fn=load_estimates, cache_key_fn=lambda order: order.id
        )
        self.skus_by_product = _grouped(Sku, "product_id")
        self.tiers_by_sku = _grouped(PriceTier, "sku_id", order="min_quantity")
        self.rules_by_method = _grouped(FreightRule, "method_id")
        self.variants_by_store_product = _grouped(StoreVariant, "product_id")
        self.links_by_store_product = _grouped(
            ProductLink,
            "store_product_id",
            order="-id",
            status__in=[ProductLinkStatus.ACTIVE, ProductLinkStatus.STALE],
        )

        async def load_orders(ids: Sequence[int]) -> list[Any]:
            if viewer is None:
                return [None for _ in ids]
            rows = {o.id: o for o in await visible_orders(viewer).filter(id__in=list(ids))}
            return [rows.get(i) for i in ids]

        self.orders: DataLoader[int, Any] = DataLoader(load_fn=load_orders)
