"""What pricing a payment reads, written out: the buyer's orders, the prices of their SKUs, the
shipping method with its freight rules, and the buyer's wallet (the ORM's query and instance
building cost several times the statements, and a payment runs them on every request).
The rules that use these rows are in ``domain.payments.charges``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from compat import tortoise as orm
from domain.catalogue.models import FreightRule, LogisticsMethod, PriceTier, Product, Sku
from domain.orders.models import Order, OrderLine
from domain.payments.models import Wallet
from domain.persistence.dialects import DialectSwitch
from domain.persistence.orders import LineWithSku, lines_with_skus
from domain.persistence.rows import builder, fetch
from domain.persistence.sql import id_in, placeholder


def _dialect(model: type) -> str:
    return str(orm.connection_of(model).capabilities.dialect)


def _p(model: type, index: int) -> str:
    return placeholder(_dialect(model), index)


async def orders_of_buyer(buyer_id: int, order_ids: Sequence[int]) -> dict[int, Order]:
    """Those of ``order_ids`` the buyer owns, by id."""
    if not order_ids:
        return {}
    among, ids = id_in(_dialect(Order), '"id"', 2, order_ids)
    sql = f'SELECT * FROM "{orm.table(Order)}" WHERE "buyer_id" = {_p(Order, 1)} AND {among}'
    return {order.id: order for order in await fetch(Order, sql, [buyer_id, *ids])}


async def tiers_of(sku_ids: Sequence[int]) -> dict[int, list[PriceTier]]:
    """The quantity tiers of these SKUs, by SKU."""
    tiers: dict[int, list[PriceTier]] = defaultdict(list)
    if sku_ids:
        among, ids = id_in(_dialect(PriceTier), '"sku_id"', 1, sku_ids)
        sql = f'SELECT * FROM "{orm.table(PriceTier)}" WHERE {among}'
        for tier in await fetch(PriceTier, sql, ids):
            tiers[tier.sku_id].append(tier)
    return tiers


async def active_method_rules(method_id: int, supplier_id: int) -> list[FreightRule] | None:
    """The freight rules of the supplier's active shipping method, None when it has no such
    method (one statement: the method's row is only a condition)."""
    method, rule = orm.table(LogisticsMethod), orm.table(FreightRule)
    exists = (
        f'SELECT 1 FROM "{method}" WHERE "id" = {_p(FreightRule, 1)} '
        f'AND "supplier_id" = {_p(FreightRule, 2)} AND "is_active"'
    )
    sql = (
        f'SELECT r.*, EXISTS ({exists}) AS "method_found" FROM (SELECT 1) AS one '
        f'LEFT JOIN "{rule}" r ON r."method_id" = {_p(FreightRule, 3)}'
    )
    _, rows = await orm.connection_of(FreightRule).execute_query(
        sql, [method_id, supplier_id, method_id]
    )
    if not rows or not rows[0]["method_found"]:
        return None
    rules = builder(FreightRule)
    return [rules.build(row) for row in rows if row["id"] is not None]


async def wallet_of(buyer_id: int, supplier_id: int) -> Wallet | None:
    sql = f'SELECT * FROM "{orm.table(Wallet)}" WHERE "buyer_id" = {_p(Wallet, 1)} '
    sql += f'AND "supplier_id" = {_p(Wallet, 2)}'
    found = await fetch(Wallet, sql, [buyer_id, supplier_id])
    return found[0] if found else None


Pricing = tuple[dict[int, Order], list[LineWithSku], dict[int, list[PriceTier]]]
pricing_rows: DialectSwitch[Pricing] = DialectSwitch("charges.pricing_rows")
_PRICING_PARTS = ((Order, "o"), (OrderLine, "l"), (Sku, "s"), (Product, "p"))
_PRICING: str | None = None


@pricing_rows.postgres
async def _pricing_postgres(buyer_id: int, order_ids: Sequence[int]) -> Pricing:
    """The buyer's orders among ``order_ids``, their lines with SKU and product, and the SKUs'
    tiers: one statement (the tiers as a JSON array per line)."""
    global _PRICING
    if _PRICING is None:
        columns = ", ".join(
            f'{alias}."{column}" AS "{alias}_{column}"'
            for model, alias in _PRICING_PARTS
            for column in orm.columns(model)
        )
        tiers = (
            "SELECT json_agg(json_build_array(t.id, t.min_quantity, t.unit_price::text)) "
            f'FROM "{orm.table(PriceTier)}" t WHERE t.sku_id = s.id'
        )
        _PRICING = f"""SELECT {columns}, ({tiers}) AS tiers
FROM "{orm.table(Order)}" o
LEFT JOIN "{orm.table(OrderLine)}" l ON l.order_id = o.id
LEFT JOIN "{orm.table(Sku)}" s ON s.id = l.sku_id
LEFT JOIN "{orm.table(Product)}" p ON p.id = s.product_id
WHERE o.buyer_id = $1 AND o.id = ANY($2::bigint[])
ORDER BY l.id"""
    _, rows = await orm.connection_of(Order).execute_query(
        _PRICING, [buyer_id, [int(i) for i in order_ids]]
    )
    orders: dict[int, Order] = {}
    lines: list[LineWithSku] = []
    tiers: dict[int, list[PriceTier]] = defaultdict(list)
    skus: dict[int, Sku] = {}
    products: dict[int, Product] = {}
    for row in rows:
        if row["o_id"] not in orders:
            orders[row["o_id"]] = builder(Order).build(row, "o_")
        if row["l_id"] is None:
            continue
        sku = product = None
        if row["s_id"] is not None:
            if row["s_id"] not in skus:
                skus[row["s_id"]] = builder(Sku).build(row, "s_")
                found = row["tiers"] or "[]"
                for tier_id, least, price in json.loads(found) if isinstance(found, str) else found:
                    tiers[row["s_id"]].append(
                        PriceTier(
                            id=tier_id,
                            sku_id=row["s_id"],
                            min_quantity=least,
                            unit_price=Decimal(price),
                        )
                    )
            sku = skus[row["s_id"]]
        if row["p_id"] is not None:
            product = products.setdefault(row["p_id"], builder(Product).build(row, "p_"))
        lines.append((builder(OrderLine).build(row, "l_"), sku, product))
    return orders, lines, tiers


@pricing_rows.other
async def _pricing_other(buyer_id: int, order_ids: Sequence[int]) -> Pricing:
    orders = await orders_of_buyer(buyer_id, order_ids)
    lines = await lines_with_skus(list(orders))
    tiers = await tiers_of(list({sku.id for _, sku, _ in lines if sku is not None}))
    return orders, lines, tiers
