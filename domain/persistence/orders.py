"""Order reads every command or page runs, written out (the ORM's query building and instance
building cost more than the statements)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pypika_tortoise import Table
from tortoise.models import Model

from compat import tortoise as orm
from domain.catalogue.models import Product, Sku
from domain.orders.models import Order, OrderLine, OrderTransition
from domain.persistence.dialects import DialectSwitch
from domain.persistence.events import Recordable, event_parameters, insert_event, recording_sql
from domain.persistence.rows import RowBuilder, builder, fetch
from domain.persistence.sql import id_in, int_list, placeholder

_ORDER_WHERE: dict[tuple[str, str], str] = {}


async def order_where(order_id: int, *, column: str, organisation_id: int) -> Order | None:
    """The order ``order_id`` if its ``column`` (``buyer_id`` or ``supplier_id``) is
    ``organisation_id``, else None."""
    dialect = orm.connection_of(Order).capabilities.dialect
    sql = _ORDER_WHERE.get((dialect, column))
    if sql is None:
        column_name = orm.column(Order, column)
        sql = _ORDER_WHERE[dialect, column] = (
            f'SELECT * FROM "{orm.table(Order)}" WHERE "id" = {placeholder(dialect, 1)} '
            f'AND "{column_name}" = {placeholder(dialect, 2)} LIMIT 1'
        )
    found = await fetch(Order, sql, [order_id, organisation_id])
    return found[0] if found else None


LineWithSku = tuple[OrderLine, Sku | None, Product | None]
_LINE_PARTS: tuple[tuple[type[Model], str], ...] = ((OrderLine, "l"), (Sku, "s"), (Product, "p"))
_lines_select: dict[type, str] = {}  # per query dialect: the statement up to its WHERE


def _lines_with_skus_head(query_class: type) -> str:
    """``SELECT <every column, prefixed> FROM order_line LEFT JOIN sku LEFT JOIN product``,
    built once per dialect (building it costs more than running it)."""
    head = _lines_select.get(query_class)
    if head is None:
        line, sku, product = (Table(orm.table(model)) for model, _ in _LINE_PARTS)
        query = (
            query_class.from_(line)
            .left_join(sku)
            .on(line.sku_id == sku.id)
            .left_join(product)
            .on(sku.product_id == product.id)
        )
        for (model, prefix), table in zip(_LINE_PARTS, (line, sku, product), strict=True):
            query = query.select(*(table.field(c).as_(f"{prefix}_{c}") for c in orm.columns(model)))
        head = _lines_select[query_class] = str(query)
    return head


async def lines_with_skus(order_ids: Sequence[int]) -> list[LineWithSku]:
    """Every line of these orders (by id) with its SKU and the SKU's product, in one statement.

    SKU references are plain columns rather than foreign keys, so the join is written here.
    """
    if not order_ids:
        return []
    db = orm.connection_of(OrderLine)
    table = orm.table(OrderLine)
    among, params = id_in(db.capabilities.dialect, f'"{table}"."order_id"', 1, order_ids)
    sql = f'{_lines_with_skus_head(db.query_class)} WHERE {among} ORDER BY "{table}"."id"'
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

    _, rows = await db.execute_query(sql, params)
    lines = builder(OrderLine)
    return [
        (lines.build(row, "l_"), instance(skus, "s_", row), instance(products, "p_", row))
        for row in rows
    ]


async def latest_transitions(order_ids: Sequence[int]) -> list[OrderTransition]:
    """The newest transition of each of these orders, in one statement."""
    if not order_ids:
        return []
    table = orm.table(OrderTransition)
    ids = int_list(order_ids)
    return await fetch(
        OrderTransition,
        f'SELECT * FROM "{table}" WHERE "id" IN '
        f'(SELECT MAX("id") FROM "{table}" WHERE "order_id" IN ({ids}) GROUP BY "order_id")',
    )


# --------------------------------------------------------------------------- status changes

_CAS_SQL: dict[tuple[str, tuple[str, ...]], str] = {}


def _cas_sql(dialect: str, columns: tuple[str, ...]) -> str:
    """``UPDATE`` of ``columns`` and ``version`` if the version is still the one read; its
    parameters are the values, the order's id and that version."""
    sql = _CAS_SQL.get((dialect, columns))
    if sql is None:
        sets = [f'"{column}" = {placeholder(dialect, i)}' for i, column in enumerate(columns, 1)]
        n = len(columns)
        sql = _CAS_SQL[dialect, columns] = (
            f'UPDATE "{orm.table(Order)}" SET {", ".join(sets)}, "version" = "version" + 1 '
            f'WHERE "id" = {placeholder(dialect, n + 1)} '
            f'AND "version" = {placeholder(dialect, n + 2)}'
        )
    return sql


_CHANGE_SQL: dict[tuple[str, ...], str] = {}


def _change_sql(columns: tuple[str, ...]) -> str:
    """PostgreSQL: the compare-and-set, the timeline entry and the event in one statement; the
    entry and the event are inserted only if the update matched. Returns ``updated``."""
    sql = _CHANGE_SQL.get(columns)
    if sql is None:
        n = len(columns) + 2
        p = [f"${i}" for i in range(n + 1, n + 6)]
        sql = _CHANGE_SQL[columns] = f"""WITH changed AS (
    {_cas_sql("postgres", columns)}
    RETURNING "id"
), timeline AS (
    INSERT INTO "{orm.table(OrderTransition)}"
        ("order_id", "from_status", "to_status", "actor_user_id", "reason", "created_at")
    SELECT changed.id, {p[0]}::text, {p[1]}::text, {p[2]}::integer, {p[3]}::text,
           {p[4]}::timestamptz
    FROM changed
), {recording_sql(n + 6, only_if="changed")}
SELECT count(*) AS updated FROM changed"""
    return sql


def _set_values(order: Order, values: dict[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    columns = tuple(orm.column(Order, name) for name in values)
    params = [orm.to_db(Order, name, value) for name, value in values.items()]
    return columns, [*params, order.id, order.version]


change_order: DialectSwitch[bool] = DialectSwitch("orders.change_and_record")


@change_order.postgres
async def _change_postgres(
    order: Order, values: dict[str, Any], *, timeline: OrderTransition, event: Recordable
) -> bool:
    """Set ``values`` on the order if its ``version`` is still the one ``order`` was read with
    (and bump it), add the ``timeline`` entry and insert the ``event``: one statement. False
    when the order changed meanwhile, and then nothing is written."""
    columns, params = _set_values(order, values)
    params += [
        orm.to_db(OrderTransition, "from_status", timeline.from_status),
        orm.to_db(OrderTransition, "to_status", timeline.to_status),
        timeline.actor_user_id,
        timeline.reason,
        datetime.now(UTC),
        *event_parameters(event),
    ]
    _, rows = await orm.connection_of(Order).execute_query(_change_sql(columns), params)
    return bool(rows[0]["updated"] == 1)


@change_order.other
async def _change_other(
    order: Order, values: dict[str, Any], *, timeline: OrderTransition, event: Recordable
) -> bool:
    """As on PostgreSQL, in three statements."""
    db = orm.connection_of(Order)
    columns, params = _set_values(order, values)
    updated, _ = await db.execute_query(_cas_sql(db.capabilities.dialect, columns), params)
    if updated != 1:
        return False
    await timeline.save()
    await insert_event(event)
    return True
