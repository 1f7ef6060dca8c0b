"""Orders as the API returns them, with the children the client selected loaded for the whole
page at once: lines (with SKU and product in the same query), store, logistics method and latest
transition. Each becomes one statement per page, and the page then resolves without an await per
order. Children not listed here resolve through the DataLoaders as before.

Unpaid orders' prices (``goodsAmount``, the lines' ``unitPrice``), when selected, are estimated
for the whole page at once as well: two statements, whatever the page size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from domain.orders import models as m
from resolvers.loaders import Loaders
from resolvers.selection import Tree
from schema.global_ids import key_of
from schema.types.catalogue import LogisticsMethod, Product, Sku
from schema.types.orders import Order, OrderLine, OrderTransition
from schema.types.stores import Store


async def build_orders(rows: Sequence[m.Order], *, loaders: Loaders, wanted: Tree) -> list[Order]:
    """``rows`` as API orders; ``wanted`` is the selection below an order (see ``selection``)."""
    orders = [Order.from_model(row) for row in rows]
    if not orders:
        return orders
    steps = []
    if "lines" in wanted:
        steps.append(_lines(orders, loaders, wanted["lines"]))
    if "store" in wanted:
        steps.append(_stores(orders, loaders))
    if "logisticsMethod" in wanted:
        steps.append(_methods(orders, loaders))
    if "latestTransition" in wanted:
        steps.append(_latest_transitions(orders, loaders))
    estimates = None
    if "goodsAmount" in wanted or "unitPrice" in wanted.get("lines", {}):
        # loaded with the other children, shown once the lines they price are built
        estimates = asyncio.ensure_future(loaders.price_estimates.load_many(rows))
        steps.append(estimates)
    await asyncio.gather(*steps)
    if estimates is not None:
        for order, estimate in zip(orders, estimates.result(), strict=True):
            order.show_estimate(estimate)
    return orders


async def _lines(orders: list[Order], loaders: Loaders, wanted: Tree) -> None:
    ids = [key_of(o.id) for o in orders]
    sku_wanted = wanted.get("sku")
    if sku_wanted is None:
        groups = await loaders.lines_by_order.load_many(ids)
        for order, rows in zip(orders, groups, strict=True):
            order.prefetched["lines"] = [OrderLine.from_model(ln) for ln in rows]
        return
    with_product = "product" in sku_wanted
    skus: dict[int, Sku] = {}
    for order, rows in zip(orders, await loaders.lines_with_skus(ids), strict=True):
        lines = []
        for row, sku_row, product_row in rows:
            line = OrderLine.from_model(row)
            sku = None
            if sku_row is not None:
                sku = skus.get(sku_row.id)
                if sku is None:
                    sku = skus[sku_row.id] = Sku.from_model(sku_row)
                    if with_product:
                        sku.prefetched["product"] = (
                            Product.from_model(product_row) if product_row else None
                        )
            line.prefetched["sku"] = sku
            lines.append(line)
        order.prefetched["lines"] = lines


async def _stores(orders: list[Order], loaders: Loaders) -> None:
    ids = sorted({key_of(o.store_id) for o in orders if o.store_id is not None})
    rows = dict(zip(ids, await loaders.stores.load_many(ids), strict=True))
    for order in orders:
        row = rows.get(key_of(order.store_id)) if order.store_id is not None else None
        order.prefetched["store"] = Store.from_model(row) if row else None


async def _methods(orders: list[Order], loaders: Loaders) -> None:
    ids = sorted({key_of(o.logistics_method_id) for o in orders if o.logistics_method_id})
    rows = dict(zip(ids, await loaders.methods.load_many(ids), strict=True))
    for order in orders:
        method_id = order.logistics_method_id
        row = rows.get(key_of(method_id)) if method_id is not None else None
        order.prefetched["logistics_method"] = LogisticsMethod.from_model(row) if row else None


async def _latest_transitions(orders: list[Order], loaders: Loaders) -> None:
    rows = await loaders.latest_transition.load_many([key_of(o.id) for o in orders])
    for order, row in zip(orders, rows, strict=True):
        order.prefetched["latest_transition"] = OrderTransition.from_model(row) if row else None
