"""Whether a supplier and a buyer trade (``domain.trading``), in one statement: two EXISTS, each
a seek on an index (``partnership``'s unique ``(supplier_id, distributor_id)``,
``supply_order``'s ``(supplier_id, buyer_id)``) that stops at the first row. Written out because
the ORM cannot put two EXISTS in one statement (two queries, or ``IN`` subqueries that
PostgreSQL may hash whole, reading every order of the pair)."""

from __future__ import annotations

from compat import tortoise as orm
from domain.distribution.models import Partnership, PartnershipStatus
from domain.orders.models import Order
from domain.persistence.sql import placeholder

_SQL: dict[str, str] = {}  # per SQL dialect


def _sql(dialect: str) -> str:
    sql = _SQL.get(dialect)
    if sql is None:
        partnership, order = orm.table(Partnership), orm.table(Order)
        p = [placeholder(dialect, i) for i in range(1, 6)]
        sql = _SQL[dialect] = (
            f'SELECT EXISTS (SELECT 1 FROM "{partnership}" WHERE "supplier_id" = {p[0]} '
            f'AND "distributor_id" = {p[1]} AND "status" = {p[2]}) '
            f'OR EXISTS (SELECT 1 FROM "{order}" WHERE "supplier_id" = {p[3]} '
            f'AND "buyer_id" = {p[4]}) AS "trades"'
        )
    return sql


async def partnered_or_ordered(*, supplier_id: int, buyer_id: int) -> bool:
    """An ACCEPTED partnership, or an order of any status, between the two."""
    db = orm.connection_of(Order)
    accepted = PartnershipStatus.ACCEPTED.value
    args = [supplier_id, buyer_id, accepted, supplier_id, buyer_id]
    _, rows = await db.execute_query(_sql(db.capabilities.dialect), args)
    return bool(rows[0]["trades"])
