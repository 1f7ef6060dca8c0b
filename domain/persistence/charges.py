"""What pricing a payment reads, written out: the buyer's orders, the prices of their SKUs, the
shipping method with its freight rules, and the buyer's wallet (the ORM's query and instance
building cost several times the statements, and a payment runs them on every request).
The rules that use these rows are in ``domain.payments.charges``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from compat import tortoise as orm
from domain.catalogue.models import FreightRule, LogisticsMethod, PriceTier
from domain.orders.models import Order
from domain.payments.models import Wallet
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
