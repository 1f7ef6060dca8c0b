"""What pricing a payment reads, written out: the buyer's orders, the prices of their SKUs, the
shipping method with its freight rules, the buyer's wallet and the stock paid from (the ORM's
query and instance building cost several times the statements, and a payment runs them on
every request).
The rules that use these rows are in ``domain.payments.charges``."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from compat import tortoise as orm
from domain.catalogue.models import FreightRule, LogisticsMethod, PriceTier, Product, Sku
from domain.orders.models import Order, OrderLine
from domain.payments.models import Wallet
from domain.persistence.dialects import DialectSwitch
from domain.persistence.orders import LineWithSku, lines_with_skus
from domain.persistence.rows import builder, fetch
from domain.persistence.sql import id_in, placeholder
from domain.stock.models import CloudWarehouse, StockItem


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


@dataclass(frozen=True)
class Pricing:
    """What pricing a payment reads: the buyer's orders, their lines with SKU and product, the
    SKUs' tiers; where one statement brought them too, the freight rules of the shipping method
    by method id (only an active method of the orders' supplier) and the buyer's wallet with
    that supplier (None: not read, or none yet)."""

    orders: dict[int, Order]
    lines: list[LineWithSku]
    tiers: dict[int, list[PriceTier]]
    methods: dict[int, list[FreightRule]] = field(default_factory=dict)
    wallet: Wallet | None = None
    stock: StockRead | None = None  # paying from stock, where the statement read it too


@dataclass(frozen=True)
class StockRead:
    """The cloud warehouse paid from: whether it is active, and the buyer's stock items there
    of the SKUs of the lines, by SKU id."""

    warehouse_active: bool
    items: dict[int, StockItem]


pricing_rows: DialectSwitch[Pricing] = DialectSwitch("charges.pricing_rows")
_PRICING_PARTS = ((Order, "o"), (OrderLine, "l"), (Sku, "s"), (Product, "p"))
_PRICING: str | None = None


@pricing_rows.postgres
async def _pricing_postgres(
    buyer_id: int, order_ids: Sequence[int], method_id: int | None, stock_warehouse_id: int | None
) -> Pricing:
    """One statement: the tiers, the method's rules (``method_id``, else each order's own), the
    wallet and, paying from the stock in ``stock_warehouse_id``, the buyer's stock item of the
    line's SKU there come as JSON beside each line."""
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
        rules = (
            "SELECT json_agg(json_build_array(r.id, r.country_code, r.first_weight_grams, "
            "r.first_price::text, r.step_grams, r.step_price::text)) "
            f'FROM "{orm.table(FreightRule)}" r WHERE r.method_id = m.id'
        )
        method = (
            f"SELECT json_build_array(m.id, COALESCE(({rules}), '[]'::json)) "
            f'FROM "{orm.table(LogisticsMethod)}" m '
            "WHERE m.id = COALESCE($3, o.logistics_method_id) AND m.supplier_id = o.supplier_id "
            "AND m.is_active"
        )
        wallet = (
            f'SELECT row_to_json(w) FROM "{orm.table(Wallet)}" w '
            "WHERE w.buyer_id = o.buyer_id AND w.supplier_id = o.supplier_id"
        )
        item = (
            f'SELECT row_to_json(i) FROM "{orm.table(StockItem)}" i '
            "WHERE i.buyer_id = o.buyer_id AND i.warehouse_id = $4 AND i.sku_id = s.id"
        )
        warehouse = f'SELECT is_active FROM "{orm.table(CloudWarehouse)}" WHERE id = $4'
        _PRICING = f"""SELECT {columns}, ({tiers}) AS tiers, ({method}) AS method,
       ({wallet}) AS wallet, ({item}) AS stock_item,
       COALESCE(({warehouse}), false) AS warehouse_active
FROM "{orm.table(Order)}" o
LEFT JOIN "{orm.table(OrderLine)}" l ON l.order_id = o.id
LEFT JOIN "{orm.table(Sku)}" s ON s.id = l.sku_id
LEFT JOIN "{orm.table(Product)}" p ON p.id = s.product_id
WHERE o.buyer_id = $1 AND o.id = ANY($2::bigint[])
ORDER BY l.id"""
    _, rows = await orm.connection_of(Order).execute_query(
        _PRICING, [buyer_id, [int(i) for i in order_ids], method_id, stock_warehouse_id]
    )
    orders: dict[int, Order] = {}
    lines: list[LineWithSku] = []
    tiers: dict[int, list[PriceTier]] = defaultdict(list)
    skus: dict[int, Sku] = {}
    products: dict[int, Product] = {}
    methods: dict[int, list[FreightRule]] = {}
    wallet: Wallet | None = None
    stock_items: dict[int, StockItem] = {}
    warehouse_active = False
    for row in rows:
        warehouse_active = row["warehouse_active"]
        if row["o_id"] not in orders:
            orders[row["o_id"]] = builder(Order).build(row, "o_")
            if row["method"] is not None:
                found, rules = _json(row["method"])
                methods[found] = [_rule(found, rule) for rule in rules]
            if row["wallet"] is not None and wallet is None:
                wallet = Wallet(**_json(row["wallet"]))
        if row["l_id"] is None:
            continue
        sku = product = None
        if row["s_id"] is not None:
            if row["s_id"] not in skus:
                skus[row["s_id"]] = builder(Sku).build(row, "s_")
                for tier_id, least, price in _json(row["tiers"] or "[]"):
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
        if row["stock_item"] is not None:
            item = _json(row["stock_item"])
            stock_items[item["sku_id"]] = StockItem(**item)
        lines.append((builder(OrderLine).build(row, "l_"), sku, product))
    stock = None
    if stock_warehouse_id is not None:
        stock = StockRead(warehouse_active=bool(warehouse_active), items=stock_items)
    return Pricing(orders, lines, tiers, methods, wallet, stock)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rule(method_id: int, values: list[Any]) -> FreightRule:
    rule_id, country, first_grams, first_price, step_grams, step_price = values
    return FreightRule(
        id=rule_id,
        method_id=method_id,
        country_code=country,
        first_weight_grams=first_grams,
        first_price=Decimal(first_price),
        step_grams=step_grams,
        step_price=Decimal(step_price),
    )


@pricing_rows.other
async def _pricing_other(
    buyer_id: int, order_ids: Sequence[int], method_id: int | None, stock_warehouse_id: int | None
) -> Pricing:
    """Three statements; the method's rules, the wallet and the stock are read when needed."""
    orders = await orders_of_buyer(buyer_id, order_ids)
    lines = await lines_with_skus(list(orders))
    tiers = await tiers_of(list({sku.id for _, sku, _ in lines if sku is not None}))
    return Pricing(orders, lines, tiers)
