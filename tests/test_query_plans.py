"""EXPLAIN checks on PostgreSQL: every list the API offers reads its big tables through an index
on the organisation-scoped access path, whatever filter the caller adds.

Each case calls the domain function a resolver calls (``list_orders`` with each field of
``OrderFilter``, the events, stock movements, inventory, returns, withdrawals, distribution,
quote, store, wallet, catalogue, user and token lists, and the loaders of the orders page),
captures the SELECT statements it sends (with their parameters, from the ``tortoise.db_client``
logger), and runs ``EXPLAIN (FORMAT JSON)`` on each one with ``enable_seqscan = off``: the
planner then takes an index whenever one can serve the statement, so a Seq Scan left in the
plan means that no index can. The checks on the plans:

- no Seq Scan on a big table (``BIG_TABLES``: the tables that grow with orders and events);
- the list's own table is sought through an index whose first column is the organisation
  column (or the parent the list is scoped by: the wallet, the stock item, the partnership),
  named in the scan's Index Cond. Walking the primary key backwards and filtering on the
  organisation fails it, and so does a condition on a later column of an index, which reads
  the whole index;
- for an unfiltered keyset page (``keyset``), planned once more with sorts priced out too: no
  Sort left, so an index returns the page in its order (``(organisation, id)``) instead of
  every row of the organisation being read and sorted for each page.

The seeded organisations hold about 1 % of each big table, one tenant among many (the others
are filler organisations of this module), so that their index is the cheap path; for an
organisation holding most of a table, walking the primary key is cheaper and PostgreSQL rightly
takes it.

Text filters: ``search`` is an exact match on the order number, the store order number or the
tracking number, so plain B-tree indexes serve it (a BitmapOr of three index scans, checked on
its own below); the organisation then filters the few rows found. ``distributorName`` (ILIKE
'%x%') applies to ``organisation.name``, one row per organisation, not to orders: the orders
(or returns) are read through the supplier's index and its accepted partnerships, and the
matching organisations are looked up beside them. No trigram index is added for it, so the
checks do not ask for one on ``organisation``.

Events: the list pages by ``event.seq`` (one global order) while the organisation is on
``event_audience``; PostgreSQL either reads the organisation's audience rows and sorts them, or
walks ``seq`` from the cursor and looks up each event's audience. Both go through indexes and
both are accepted here; neither is bounded by the page alone (that needs the organisation and
the sequence number in one index, on one table: a schema change, not an index).

Not checked: lists that are not scoped to the caller by design (a buyer browsing every
supplier's active products or every active cloud warehouse).

Runs against the session's migrated PostgreSQL database with data seeded in bulk here (SQL,
``generate_series``) under organisations of its own; skipped when DATABASE_URL is not
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from domain.access import Viewer
from domain.after_sales import queries as after_sales_queries
from domain.after_sales.models import AfterSalesStatus
from domain.catalogue import commands as catalogue
from domain.catalogue import queries as catalogue_queries
from domain.distribution import queries as distribution_queries
from domain.distribution.models import PushStatus, WithdrawalStatus
from domain.events import outbox
from domain.events import queries as event_queries
from domain.orders import queries as order_queries
from domain.orders.models import OrderKind, OrderStatus
from domain.organisations import commands as organisations
from domain.organisations import queries as organisation_queries
from domain.organisations import tokens
from domain.organisations.models import OrganisationKind, Role
from domain.payments import queries as payment_queries
from domain.secrets import seal
from domain.stock import queries as stock_queries
from domain.stores import queries as store_queries
from domain.stores.models import StorePlatform
from resolvers.loaders import Loaders
from service.settings import Settings
from tests.support.server import RunningServer, start_server
from tests.support.services import postgres_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        postgres_url() is None,
        reason="EXPLAIN checks need PostgreSQL: DATABASE_URL is not postgres://",
    ),
]

BIG_TABLES = frozenset(
    {
        "supply_order",
        "order_line",
        "order_transition",
        "event",
        "event_audience",
        "stock_movement",
        "wallet_entry",
        "warehouse_order",
        "after_sales_order",
        "withdrawal",
    }
)
ORDERS = 40_000
FILLER_BUYERS, FILLER_SUPPLIERS = 150, 50
MOVEMENTS_PER_ITEM = 60
ENTRIES_PER_WALLET = 60
QUOTES = 5_000
BUYER_NAMES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")
PAGE = 50


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Seeded:
    buyer: Viewer  # a distributor of ``supplier``: partnership accepted
    supplier: Viewer
    store_id: int
    order_ids: list[int]  # the buyer's first page
    deep_cursor: int  # an order id of the buyer's, 90 % of the way down its list
    order_number: str
    tracking_number: str
    store_order_number: str
    distributor_name: str
    stock_item_id: int
    movement_cursor: int
    warehouse_id: int
    sku_id: int
    wallet_id: int
    partnership_id: int
    return_cursor: int
    withdrawal_order_id: int
    withdrawal_return_id: int
    event_seq_mid: int
    entry_cursor: int  # a wallet entry of ``wallet_id``, part of the way down (newest first)
    withdrawal_cursor: int  # a withdrawal of the supplier's, part of the way down
    # index name -> (its table, its columns in order)
    indexes: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


def _array(values: list[Any]) -> str:
    """A PostgreSQL array literal of ints or of enum values (plain identifiers only)."""
    if all(isinstance(v, int) for v in values):
        return f"ARRAY[{','.join(str(v) for v in values)}]::int[]"
    assert all(re.fullmatch(r"[A-Za-z0-9_ ]+", str(v)) for v in values), values
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]::text[]"


async def _member(name: str, kind: OrganisationKind) -> tuple[Viewer, int]:
    email = f"{uuid.uuid4().hex[:12]}@plans.test"
    org, user = await organisations.create_organisation(
        name=name, kind=kind, owner_email=email, owner_name="Owner"
    )
    token, _ = await tokens.issue_token(user=user, name="plans")
    viewer = Viewer(
        user_id=user.id,
        organisation_id=org.id,
        organisation_kind=org.kind,
        role=Role.OWNER,
        token_id=token.id,
    )
    return viewer, user.id


async def _seed() -> Seeded:
    tag = uuid.uuid4().hex[:6]
    suppliers = [
        await _member(f"Plans supplier {i} {tag}", OrganisationKind.SUPPLIER) for i in range(2)
    ]
    buyers = [
        await _member(f"Plans distributor {name} {tag}", OrganisationKind.BUYER)
        for name in BUYER_NAMES
    ]
    supplier, buyer = suppliers[0][0], buyers[0][0]
    sup_ids = [v.organisation_id for v, _ in suppliers]
    buy_ids = [v.organisation_id for v, _ in buyers]
    product = await catalogue.create_product(
        viewer=supplier,
        title="Plans tee",
        skus=[
            catalogue.SkuSpec(
                code=f"PLANS-{size}",
                attributes={"size": size},
                weight_grams=200,
                unit_price=Decimal("5.00"),
            )
            for size in ("S", "M", "L")
        ],
    )
    methods = [
        await catalogue.create_logistics_method(
            viewer=viewer,
            name="Air",
            min_days=3,
            max_days=7,
            rules=[catalogue.FreightRuleSpec("*", 500, Decimal("3.00"), 500, Decimal("1.00"))],
        )
        for viewer, _ in suppliers
    ]
    db = connections.get("default")
    skus = [
        r["id"]
        for r in await db.execute_query_dict(
            "SELECT id FROM sku WHERE product_id = $1 ORDER BY id", [product.id]
        )
    ]
    sealed = seal("plans-secret")

    async def ids(sql: str, *values: Any) -> list[int]:
        return [r["id"] for r in await db.execute_query_dict(sql, list(values))]

    # the other tenants: the seeded members are about 1 % of every big table, as one
    # organisation among many is, so the planner has a reason to prefer their index
    filler_buyers = await ids(
        f"""INSERT INTO organisation (name, kind, currency, created_at, updated_at)
            SELECT 'Plans other buyer ' || g || ' {tag}', 'BUYER', 'USD', now(), now()
            FROM generate_series(1, {FILLER_BUYERS}) AS g RETURNING id"""
    )
    filler_suppliers = await ids(
        f"""INSERT INTO organisation (name, kind, currency, created_at, updated_at)
            SELECT 'Plans other supplier ' || g || ' {tag}', 'SUPPLIER', 'USD', now(), now()
            FROM generate_series(1, {FILLER_SUPPLIERS}) AS g RETURNING id"""
    )
    store_rows = await db.execute_query_dict(
        f"""INSERT INTO store (buyer_id, name, platform, api_url, access_token, webhook_secret,
                               created_at)
            SELECT b, 'Plans shop', p, 'http://127.0.0.1:9/shop', $1, $1, now()
            FROM unnest({_array(buy_ids + buy_ids)},
                        {_array([StorePlatform.SHOPIFY] * 6 + [StorePlatform.WOOCOMMERCE] * 6)})
                 AS t(b, p)
            RETURNING id, buyer_id, platform""",
        [sealed],
    )
    first_store = {r["buyer_id"]: r["id"] for r in store_rows if r["platform"] == "SHOPIFY"}
    second_store = {r["buyer_id"]: r["id"] for r in store_rows if r["platform"] != "SHOPIFY"}
    warehouses = await ids(
        f"""INSERT INTO cloud_warehouse (supplier_id, name, address, callback_secret, is_active,
                                         created_at)
            SELECT s, 'Plans warehouse', '{{}}'::jsonb, $1, true, now()
            FROM unnest({_array(sup_ids + filler_suppliers)}) AS t(s) RETURNING id""",
        sealed,
    )
    real_b, real_s = _array(buy_ids), _array(sup_ids)
    other_b, other_s = _array(filler_buyers), _array(filler_suppliers)
    all_b, all_s = _array(buy_ids + filler_buyers), _array(sup_ids + filler_suppliers)
    stores_a = _array([first_store[b] for b in buy_ids])
    stores_b = _array([second_store[b] for b in buy_ids])
    # order g: one of the six seeded buyers (from a seeded supplier) when g % 100 < 6, else
    # one of the other buyers and suppliers
    ours = "g % 100 < 6"
    buyer_of = (
        f"CASE WHEN {ours} THEN ({real_b})[1 + g % 100] "
        f"ELSE ({other_b})[1 + g % {FILLER_BUYERS}] END"
    )
    supplier_of = (
        f"CASE WHEN {ours} AND (g / 100) % 24 < 2 THEN ({real_s})[1 + (g / 100) % 24] "
        f"ELSE ({other_s})[1 + g % {FILLER_SUPPLIERS}] END"
    )
    orders_of = f"number LIKE 'QP{tag}-%'"
    async with in_transaction() as conn:
        await conn.execute_script(
            f"""
INSERT INTO supply_order (number, kind, status, buyer_id, supplier_id, store_id, store_order_id,
    store_order_number, currency, customer_name, shipping_address, logistics_method_id,
    goods_amount, freight_amount, paid_amount, refunded_amount, carrier, tracking_number,
    tracking_sync, tracking_sync_attempts, version, created_at, updated_at)
SELECT 'QP{tag}-' || g,
       ({_array(list(OrderKind))})[1 + g % 3],
       ({_array(list(OrderStatus))})[1 + (g / 7) % {len(OrderStatus)}],
       {buyer_of},
       {supplier_of},
       CASE WHEN NOT {ours} THEN NULL
            WHEN (g / 100) % 4 < 2 THEN ({stores_a})[1 + g % 100]
            ELSE ({stores_b})[1 + g % 100] END,
       'QP{tag}-' || g, '#QP{tag}-' || g, 'USD', 'Ada Lovelace', '{{"city": "London"}}'::jsonb,
       CASE WHEN {ours} AND (g / 100) % 24 < 2
            THEN ({_array([m.id for m in methods])})[1 + (g / 100) % 24] END,
       30, 4, 34, 0, 'UPS', 'TRK{tag}' || g, 'SYNCED', 0, 1,
       now() - make_interval(mins => {ORDERS} - g), now() - make_interval(secs => {ORDERS} - g)
FROM generate_series(1, {ORDERS}) AS g;

INSERT INTO order_line (order_id, title, quantity, sku_id, source, unit_price, stock_quantity)
SELECT o.id, 'Plans tee', k, ({_array(skus)})[k], 'PRODUCT_LINK', 5, 0
FROM supply_order o CROSS JOIN generate_series(1, 3) AS k WHERE o.{orders_of};

INSERT INTO order_transition (order_id, from_status, to_status, reason, created_at)
SELECT o.id, NULL, 'AWAITING_PAYMENT', 'created', o.created_at FROM supply_order o
WHERE o.{orders_of}
UNION ALL
SELECT o.id, 'AWAITING_PAYMENT', o.status, 'moved', o.updated_at FROM supply_order o
WHERE o.{orders_of};

INSERT INTO warehouse_order (order_id, supplier_id, push_status, withdrawal_status, updated_at)
SELECT o.id, o.supplier_id, ({_array(list(PushStatus))})[1 + o.id % 4],
       CASE WHEN o.id % 5 = 0 THEN ({_array(list(WithdrawalStatus))})[1 + o.id % 3] END, now()
FROM supply_order o WHERE o.{orders_of} AND hashint8(o.id) % 3 = 0;

INSERT INTO after_sales_order (number, order_id, distributor_id, supplier_id, status, reason,
    items, push_status, version, created_at, updated_at)
SELECT 'QR{tag}-' || o.id, o.id, o.buyer_id, o.supplier_id,
       ({_array(list(AfterSalesStatus))})[1 + o.id % 4], 'damaged', '[]'::jsonb, 'NOT_PUSHED',
       1, o.created_at, o.updated_at
FROM supply_order o WHERE o.{orders_of} AND hashint8(o.id) % 4 = 0;

INSERT INTO withdrawal (order_id, distributor_id, supplier_id, status, reason, resolution_note,
    created_at, updated_at)
SELECT o.id, o.buyer_id, o.supplier_id, ({_array(list(WithdrawalStatus))})[1 + o.id % 3], '',
       '', o.created_at, o.updated_at
FROM supply_order o WHERE o.{orders_of} AND hashint8(o.id) % 4 = 1;

INSERT INTO withdrawal (after_sales_id, distributor_id, supplier_id, status, reason,
    resolution_note, created_at, updated_at)
SELECT r.id, r.distributor_id, r.supplier_id, 'WITHDRAWN', '', '', r.created_at, r.updated_at
FROM after_sales_order r WHERE r.number LIKE 'QR{tag}-%' AND hashint8(r.id) % 2 = 0;

WITH ev AS (
    INSERT INTO event (type, subject_type, subject_id, payload, created_at, published_at)
    SELECT 'ORDER_STATUS_CHANGED', 'Order', g::text, '{{}}'::jsonb, now(), now()
    FROM generate_series(1, {ORDERS}) AS g
    RETURNING id, subject_id::int AS g
)
INSERT INTO event_audience (organisation_id, event_id)
SELECT a.org, ev.id FROM ev
CROSS JOIN LATERAL (VALUES ({buyer_of}), ({supplier_of})) AS a(org);

INSERT INTO partnership (supplier_id, distributor_id, status, message, decision_note,
    created_at, updated_at)
SELECT s, b, 'ACCEPTED', '', '', now(), now()
FROM unnest({real_s}) AS s CROSS JOIN unnest({real_b}) AS b
UNION ALL
SELECT ({other_s})[1 + g % {FILLER_SUPPLIERS}], ({other_b})[1 + g % {FILLER_BUYERS}], 'ACCEPTED',
       '', '', now(), now()
FROM generate_series(1, {FILLER_BUYERS}) AS g;

INSERT INTO distribution_warehouse (partnership_id, name, address, created_by_system, created_at)
SELECT p.id, 'Plans DC', '{{}}'::jsonb, true, now() FROM partnership p
WHERE p.supplier_id = ANY({all_s});

INSERT INTO stock_item (buyer_id, warehouse_id, sku_id, on_hand, reserved, available,
    in_transit, updated_at)
SELECT b, {warehouses[0]}, k, 100, 0, 100, 0, now()
FROM unnest({all_b}) AS b CROSS JOIN unnest({_array(skus)}) AS k;

INSERT INTO stock_movement (stock_item_id, kind, on_hand_delta, reserved_delta, in_transit_delta,
    reason, created_at)
SELECT i.id, 'RECEIVED', 1, 0, 0, 'seeded', now()
FROM generate_series(1, {MOVEMENTS_PER_ITEM}) AS g CROSS JOIN stock_item i
WHERE i.buyer_id = ANY({all_b});

INSERT INTO wallet (buyer_id, supplier_id, currency, balance_cents)
SELECT b, s, 'USD', 0 FROM unnest({real_b}) AS b CROSS JOIN unnest({real_s}) AS s
UNION ALL
SELECT ({other_b})[g], ({other_s})[1 + g % {FILLER_SUPPLIERS}], 'USD', 0
FROM generate_series(1, {FILLER_BUYERS}) AS g;

INSERT INTO wallet_entry (wallet_id, kind, amount, note, created_at)
SELECT w.id, 'TOP_UP', 10, '', now()
FROM generate_series(1, {ENTRIES_PER_WALLET}) AS g CROSS JOIN wallet w
WHERE w.buyer_id = ANY({all_b});

INSERT INTO store_product (external_id, title, store_id)
SELECT 'P' || g, 'Plans product', s.id
FROM store s CROSS JOIN generate_series(1, 50) AS g WHERE s.buyer_id = ANY({real_b});

INSERT INTO quote (buyer_id, supplier_id, store_product_id, note, links, status, sku_prices,
    message, requested_by_user_id, created_at, updated_at)
SELECT {buyer_of}, {supplier_of}, (SELECT min(id) FROM store_product), '', '[]'::jsonb,
       'REQUESTED', '[]'::jsonb, '', {buyers[0][1]}, now(), now()
FROM generate_series(1, {QUOTES}) AS g;

INSERT INTO "user" (email, name, role, is_active, created_at, organisation_id)
SELECT 'u' || g || '-' || o || '-{tag}@plans.test', 'Member', 'VIEWER', true, now(), o
FROM unnest({_array(buy_ids + sup_ids + filler_buyers + filler_suppliers)}) AS o
CROSS JOIN generate_series(1, 10) AS g;

INSERT INTO logistics_method (supplier_id, name, min_days, max_days, is_active)
SELECT s, 'Sea ' || g, 20, 40, true FROM unnest({all_s}) AS s CROSS JOIN generate_series(1, 3) AS g;
"""
        )
        await conn.execute_query(
            f"""INSERT INTO third_party_warehouse (supplier_id, provider, name, api_url, api_key,
                    callback_secret, is_active, last_test_message, created_at)
                SELECT s, 'plans', 'Plans 3PL', 'http://127.0.0.1:9/wms', $1, $1, true, '', now()
                FROM unnest({all_s}) AS s""",
            [sealed],
        )
    # numbered as the outbox numbers events (published already: the publisher leaves them)
    while await outbox.assign_sequence(limit=10_000):
        pass
    await db.execute_script(
        "ANALYZE supply_order, order_line, order_transition, warehouse_order, after_sales_order, "
        "withdrawal, event, event_audience, partnership, distribution_warehouse, stock_item, "
        'stock_movement, wallet, wallet_entry, store, store_product, quote, "user", '
        "organisation, logistics_method, cloud_warehouse, third_party_warehouse"
    )

    async def one(sql: str, *values: Any) -> Any:
        rows = await db.execute_query_dict(sql, list(values))
        return next(iter(rows[0].values()))

    b, s = buyer.organisation_id, supplier.organisation_id
    page = await ids(
        "SELECT id FROM supply_order WHERE buyer_id = $1 ORDER BY id DESC LIMIT $2", b, PAGE
    )
    number = await one(
        "SELECT number FROM supply_order WHERE buyer_id = $1 AND supplier_id = $2 "
        "ORDER BY id LIMIT 1 OFFSET 10",
        b,
        s,
    )
    item = await one("SELECT id FROM stock_item WHERE buyer_id = $1 ORDER BY id LIMIT 1", b)
    index_rows = await db.execute_query_dict(
        """SELECT i.relname AS name, t.relname AS tablename,
                  array_agg(a.attname::text ORDER BY k.n) AS columns
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace ns ON ns.oid = t.relnamespace AND ns.nspname = current_schema()
           CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
           GROUP BY i.relname, t.relname"""
    )
    return Seeded(
        buyer=buyer,
        supplier=supplier,
        store_id=first_store[b],
        order_ids=page,
        deep_cursor=await one(
            "SELECT id FROM supply_order WHERE buyer_id = $1 ORDER BY id DESC OFFSET "
            "(SELECT count(*) * 9 / 10 FROM supply_order WHERE buyer_id = $1) LIMIT 1",
            b,
        ),
        order_number=number,
        tracking_number=number.replace("QP", "TRK").replace("-", ""),
        store_order_number=f"#{number}",
        distributor_name=f"distributor {BUYER_NAMES[0]}".lower(),
        stock_item_id=item,
        movement_cursor=await one(
            "SELECT id FROM stock_movement WHERE stock_item_id = $1 ORDER BY id LIMIT 1 OFFSET 10",
            item,
        ),
        warehouse_id=warehouses[0],
        sku_id=skus[0],
        wallet_id=await one("SELECT id FROM wallet WHERE buyer_id = $1 AND supplier_id = $2", b, s),
        partnership_id=await one(
            "SELECT id FROM partnership WHERE supplier_id = $1 AND distributor_id = $2", s, b
        ),
        return_cursor=await one(
            "SELECT id FROM after_sales_order WHERE supplier_id = $1 ORDER BY id LIMIT 1 OFFSET 10",
            s,
        ),
        withdrawal_order_id=await one(
            "SELECT order_id FROM withdrawal WHERE distributor_id = $1 AND order_id IS NOT NULL "
            "ORDER BY id LIMIT 1",
            b,
        ),
        withdrawal_return_id=await one(
            "SELECT after_sales_id FROM withdrawal WHERE distributor_id = $1 "
            "AND after_sales_id IS NOT NULL ORDER BY id LIMIT 1",
            b,
        ),
        event_seq_mid=await one(
            "SELECT e.seq FROM event e JOIN event_audience a ON a.event_id = e.id "
            "WHERE a.organisation_id = $1 ORDER BY e.seq LIMIT 1 OFFSET 100",
            b,
        ),
        entry_cursor=await one(
            "SELECT e.id FROM wallet_entry e JOIN wallet w ON w.id = e.wallet_id "
            "WHERE w.buyer_id = $1 AND w.supplier_id = $2 ORDER BY e.id DESC LIMIT 1 OFFSET 10",
            b,
            s,
        ),
        withdrawal_cursor=await one(
            "SELECT id FROM withdrawal WHERE supplier_id = $1 ORDER BY id DESC LIMIT 1 OFFSET 10",
            s,
        ),
        indexes={r["name"]: (r["tablename"], tuple(r["columns"])) for r in index_rows},
    )


@pytest.fixture(scope="module")
async def plans_server(base_settings: Settings) -> AsyncIterator[RunningServer]:
    """One server for the module: its lifespan opens the ORM and configures the secrets key."""
    server = await start_server(base_settings)
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def seeded(plans_server: RunningServer) -> Seeded:
    return await _seed()


# --------------------------------------------------------------------------- capture and plans

_capturing: contextvars.ContextVar[bool] = contextvars.ContextVar("plans_capture", default=False)


class _Statements(logging.Handler):
    """SELECT statements (with parameters) logged from a context where ``_capturing`` is set;
    DataLoader batches run in tasks of their own, which inherit it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[tuple[str, list[Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not _capturing.get() or not isinstance(record.args, tuple) or len(record.args) != 2:
            return
        query, values = record.args
        if isinstance(query, str) and query.lstrip().upper().startswith("SELECT"):
            self.found.append((query, list(values or [])))


async def _captured(call: Callable[[], Awaitable[object]]) -> list[tuple[str, list[Any]]]:
    handler = _Statements()
    log = logging.getLogger("tortoise.db_client")
    previous = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)

    async def run() -> None:
        _capturing.set(True)  # this task's own context, and its child tasks'
        await call()

    try:
        await asyncio.create_task(run())
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)
    return handler.found


async def _explain(sql: str, values: list[Any], *, ordered: bool = False) -> dict[str, Any]:
    """The plan with sequential scans priced out; ``ordered``: sorts too, so that a Sort left
    in the plan means no index returns the rows in the statement's order."""
    settings = "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_custom_plan"
    if ordered:
        settings += "; SET LOCAL enable_sort = off"
    async with in_transaction() as conn:
        await conn.execute_script(settings)
        _, rows = await conn.execute_query(f"EXPLAIN (FORMAT JSON) {sql}", values)
    plan = rows[0]["QUERY PLAN"]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


@dataclass(frozen=True)
class Scan:
    node: str
    table: str
    index: str | None
    columns: tuple[str, ...]  # the index's, in order
    cond: str

    def leads_with(self, column: str) -> bool:
        """Whether the scan seeks its index on ``column``: the index's first column, named in
        the Index Cond (a condition on a later column alone walks the whole index)."""
        return (
            bool(self.columns)
            and self.columns[0] == column
            and re.search(rf"\b{column}\b", self.cond) is not None
        )

    def __str__(self) -> str:
        using = f" using {self.index} {self.columns}" if self.index else ""
        return f"{self.node} on {self.table}{using} [{self.cond}]"


def _scans(plan: dict[str, Any], indexes: dict[str, tuple[str, tuple[str, ...]]]) -> Iterator[Scan]:
    index = plan.get("Index Name")
    table, columns = indexes.get(index, ("", ())) if index else ("", ())
    table = plan.get("Relation Name") or table
    if table:
        yield Scan(plan["Node Type"], table, index, columns, plan.get("Index Cond", ""))
    for child in plan.get("Plans", []):
        yield from _scans(child, indexes)


def _node_types(plan: dict[str, Any]) -> Iterator[str]:
    yield plan["Node Type"]
    for child in plan.get("Plans", []):
        yield from _node_types(child)


async def _plan_scans(
    d: Seeded, call: Callable[[], Awaitable[object]], *, ordered: bool = False
) -> tuple[list[Scan], set[str], str]:
    """The scans and the node types of the plans of every SELECT ``call`` sends, and a report
    of them for failure messages."""
    statements = await _captured(call)
    assert statements, "no SELECT captured"
    scans: list[Scan] = []
    nodes: set[str] = set()
    for sql, values in statements:
        plan = await _explain(sql, values, ordered=ordered)
        scans += _scans(plan, d.indexes)
        nodes.update(_node_types(plan))
    report = (
        "\n".join(f"  {s}" for s in scans)
        + "\n"
        + "\n".join(f"  SQL: {sql} {values}" for sql, values in statements)
    )
    return scans, nodes, report


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """``index_on``: table -> columns; the plan seeks an index of the table on one of them.
    ``keyset``: a page of an unfiltered list, which an index can return in the page's order
    (rather than a Sort of everything the organisation has)."""

    name: str
    call: Callable[[Seeded], Awaitable[object]]
    index_on: dict[str, tuple[str, ...]]
    keyset: bool = False


def _orders(who: str, **filters: Any) -> Callable[[Seeded], Awaitable[object]]:
    after = filters.pop("after", None)

    def call(d: Seeded) -> Awaitable[object]:
        resolved = {k: (v(d) if callable(v) else v) for k, v in filters.items()}
        return order_queries.list_orders(
            viewer=d.buyer if who == "buyer" else d.supplier,
            filters=order_queries.OrderFilter(**resolved),
            first=PAGE,
            after=after(d) if after else None,
        )

    return call


def _returns(who: str, **filters: Any) -> Callable[[Seeded], Awaitable[object]]:
    after = filters.pop("after", None)

    def call(d: Seeded) -> Awaitable[object]:
        resolved = {k: (v(d) if callable(v) else v) for k, v in filters.items()}
        return after_sales_queries.list_returns(
            viewer=d.buyer if who == "buyer" else d.supplier,
            filters=after_sales_queries.ReturnFilter(**resolved),
            first=PAGE,
            after=after(d) if after else None,
        )

    return call


async def _page_children(d: Seeded) -> None:
    loaders = Loaders(d.buyer)
    await asyncio.gather(
        loaders.lines_by_order.load_many(d.order_ids),
        loaders.latest_transition.load_many(d.order_ids),
        loaders.transitions_by_order.load_many(d.order_ids),
        loaders.warehouse_orders.load_many(d.order_ids),
        loaders.withdrawals_by_order.load_many(d.order_ids),
    )


NOW = datetime.now(UTC)
BUYER_ORDERS = ("buyer_id",)
SUPPLIER_ORDERS = ("supplier_id",)
SEARCHED = ("number", "store_order_number", "tracking_number")
# the organisation's audience rows, or the global seq walked from the cursor with each event's
# audience looked up (see the module docstring)
EVENT_PAGE = {"event_audience": ("organisation_id", "event_id"), "event": ("seq", "id")}

CASES: list[Case] = [
    # orders, as a buyer: every field of OrderFilter, and a deep keyset page
    Case("orders buyer", _orders("buyer"), {"supply_order": BUYER_ORDERS}, keyset=True),
    Case(
        "orders buyer deep page",
        _orders("buyer", after=lambda d: d.deep_cursor),
        {"supply_order": BUYER_ORDERS},
        keyset=True,
    ),
    Case(
        "orders buyer statuses",
        _orders("buyer", statuses=[OrderStatus.AWAITING_SHIPPING, OrderStatus.SHIPPED]),
        {"supply_order": BUYER_ORDERS},
    ),
    Case(
        "orders buyer kinds",
        _orders("buyer", kinds=[OrderKind.STORE]),
        {"supply_order": BUYER_ORDERS},
    ),
    Case(
        "orders buyer storeId",
        _orders("buyer", store_id=lambda d: d.store_id),
        {"supply_order": ("buyer_id", "store_id")},
    ),
    Case(
        "orders buyer platform",
        _orders("buyer", platform=StorePlatform.WOOCOMMERCE),
        {"supply_order": ("buyer_id", "store_id")},
    ),
    Case(
        "orders buyer created range",
        _orders("buyer", created_from=NOW - timedelta(days=4), created_to=NOW - timedelta(days=2)),
        {"supply_order": BUYER_ORDERS},
    ),
    Case(
        "orders buyer updated range",
        _orders("buyer", updated_from=NOW - timedelta(hours=2), updated_to=NOW),
        {"supply_order": BUYER_ORDERS},
    ),
    Case(
        "orders buyer search number",
        _orders("buyer", search=lambda d: d.order_number),
        {"supply_order": SEARCHED},
    ),
    Case(
        "orders buyer search tracking number",
        _orders("buyer", search=lambda d: d.tracking_number),
        {"supply_order": SEARCHED},
    ),
    Case(
        "orders buyer search store order number",
        _orders("buyer", search=lambda d: d.store_order_number),
        {"supply_order": SEARCHED},
    ),
    # orders, as a supplier: the distribution filters too
    Case("orders supplier", _orders("supplier"), {"supply_order": SUPPLIER_ORDERS}, keyset=True),
    Case(
        "orders supplier deep page",
        _orders("supplier", after=lambda d: d.deep_cursor),
        {"supply_order": SUPPLIER_ORDERS},
        keyset=True,
    ),
    Case(
        "orders supplier statuses",
        _orders("supplier", statuses=[OrderStatus.AWAITING_SHIPPING]),
        {"supply_order": SUPPLIER_ORDERS},
    ),
    Case(
        "orders supplier distributorName",
        _orders("supplier", distributor_name=lambda d: d.distributor_name),
        {"supply_order": ("supplier_id", "buyer_id")},
    ),
    Case(
        "orders supplier distributionOnly",
        _orders("supplier", distribution_only=True),
        {"supply_order": ("supplier_id", "buyer_id")},
    ),
    Case(
        "orders supplier pushStatuses",
        _orders("supplier", push_statuses=[PushStatus.PUSH_FAILED]),
        {"supply_order": SUPPLIER_ORDERS},
    ),
    Case(
        "orders supplier withdrawalStatuses",
        _orders("supplier", withdrawal_statuses=[WithdrawalStatus.WITHDRAW_FAILED]),
        {"supply_order": SUPPLIER_ORDERS},
    ),
    Case(
        "orders supplier search",
        _orders("supplier", search=lambda d: d.tracking_number),
        {"supply_order": SEARCHED},
    ),
    Case(
        "orderCounts buyer",
        lambda d: order_queries.order_counts(viewer=d.buyer),
        {"supply_order": BUYER_ORDERS},
    ),
    Case(
        "orderCounts supplier",
        lambda d: order_queries.order_counts(viewer=d.supplier),
        {"supply_order": SUPPLIER_ORDERS},
    ),
    Case(
        "orders page children",
        _page_children,
        {
            "order_line": ("order_id",),
            "order_transition": ("order_id",),
            "warehouse_order": ("order_id",),
            "withdrawal": ("order_id",),
        },
    ),
    # events
    Case(
        "events",
        lambda d: event_queries.events_for_organisation(
            d.buyer.organisation_id, after_seq=0, limit=PAGE + 1, read_own_writes=True
        ),
        EVENT_PAGE,
    ),
    Case(
        "events deep page",
        lambda d: event_queries.events_for_organisation(
            d.buyer.organisation_id, after_seq=d.event_seq_mid, limit=PAGE + 1
        ),
        EVENT_PAGE,
    ),
    Case(
        "events types",
        lambda d: event_queries.events_for_organisation(
            d.buyer.organisation_id, after_seq=0, types=["ORDER_STATUS_CHANGED"], limit=PAGE + 1
        ),
        EVENT_PAGE,
    ),
    Case(
        "events catch-up with audiences",
        lambda d: outbox.events_after(d.event_seq_mid, limit=PAGE),
        {"event": ("seq",), "event_audience": ("event_id",)},
    ),
    # stock
    Case(
        "stockMovements",
        lambda d: stock_queries.movements(
            viewer=d.buyer, stock_item_id=d.stock_item_id, first=PAGE, after=None
        ),
        {"stock_movement": ("stock_item_id",)},
        keyset=True,
    ),
    Case(
        "stockMovements deep page",
        lambda d: stock_queries.movements(
            viewer=d.buyer, stock_item_id=d.stock_item_id, first=PAGE, after=d.movement_cursor
        ),
        {"stock_movement": ("stock_item_id",)},
        keyset=True,
    ),
    Case(
        "inventory",
        lambda d: stock_queries.inventory(viewer=d.buyer, first=PAGE, after=None),
        {"stock_item": ("buyer_id",)},
    ),
    Case(
        "inventory warehouse and sku",
        lambda d: stock_queries.inventory(
            viewer=d.buyer, warehouse_id=d.warehouse_id, sku_id=d.sku_id, first=PAGE, after=None
        ),
        {"stock_item": ("buyer_id",)},
    ),
    # returns (after-sales) and withdrawals
    Case(
        "returns supplier",
        _returns("supplier"),
        {"after_sales_order": SUPPLIER_ORDERS},
        keyset=True,
    ),
    Case(
        "returns supplier deep page",
        _returns("supplier", after=lambda d: d.return_cursor),
        {"after_sales_order": SUPPLIER_ORDERS},
        keyset=True,
    ),
    Case(
        "returns supplier statuses",
        _returns("supplier", statuses=[AfterSalesStatus.AWAITING_STOCK_IN]),
        {"after_sales_order": SUPPLIER_ORDERS},
    ),
    Case(
        "returns supplier platform",
        _returns("supplier", platform=StorePlatform.SHOPIFY),
        {"after_sales_order": SUPPLIER_ORDERS},
    ),
    Case(
        "returns supplier distributorName",
        _returns("supplier", distributor_name=lambda d: d.distributor_name),
        {"after_sales_order": SUPPLIER_ORDERS},
    ),
    Case(
        "returns supplier updated range",
        _returns("supplier", updated_from=NOW - timedelta(hours=1), updated_to=NOW),
        {"after_sales_order": SUPPLIER_ORDERS},
    ),
    Case(
        "returns distributor",
        _returns("buyer"),
        {"after_sales_order": ("distributor_id",)},
        keyset=True,
    ),
    Case(
        "withdrawals supplier",
        lambda d: distribution_queries.list_withdrawals(viewer=d.supplier, first=PAGE, after=None),
        {"withdrawal": SUPPLIER_ORDERS},
        keyset=True,
    ),
    Case(
        "withdrawals supplier deep page",
        lambda d: distribution_queries.list_withdrawals(
            viewer=d.supplier, first=PAGE, after=d.withdrawal_cursor
        ),
        {"withdrawal": SUPPLIER_ORDERS},
        keyset=True,
    ),
    Case(
        "withdrawals distributor",
        lambda d: distribution_queries.list_withdrawals(viewer=d.buyer, first=PAGE, after=None),
        {"withdrawal": ("distributor_id",)},
        keyset=True,
    ),
    Case(
        "withdrawals of an order",
        lambda d: distribution_queries.list_withdrawals(
            viewer=d.buyer, order_id=d.withdrawal_order_id, first=PAGE, after=None
        ),
        {"withdrawal": ("distributor_id", "order_id")},
    ),
    Case(
        "withdrawals of a return",
        lambda d: distribution_queries.list_withdrawals(
            viewer=d.supplier, after_sales_id=d.withdrawal_return_id, first=PAGE, after=None
        ),
        {"withdrawal": ("supplier_id", "after_sales_id")},
    ),
    # distribution
    Case(
        "partnerships supplier",
        lambda d: distribution_queries.list_partnerships(viewer=d.supplier, first=PAGE, after=None),
        {"partnership": ("supplier_id",)},
    ),
    Case(
        "partnerships distributor",
        lambda d: distribution_queries.list_partnerships(viewer=d.buyer, first=PAGE, after=None),
        {"partnership": ("distributor_id",)},
    ),
    Case(
        "distributionWarehouses",
        lambda d: distribution_queries.list_distribution_warehouses(
            viewer=d.buyer, partnership_id=d.partnership_id, first=PAGE, after=None
        ),
        {"distribution_warehouse": ("partnership_id",)},
    ),
    Case(
        "thirdPartyWarehouses",
        lambda d: distribution_queries.list_connections(viewer=d.supplier, first=PAGE, after=None),
        {"third_party_warehouse": ("supplier_id",)},
    ),
    # quotes, stores, wallets
    Case(
        "quotes buyer",
        lambda d: order_queries.list_quotes(viewer=d.buyer, first=PAGE, after=None),
        {"quote": ("buyer_id",)},
        keyset=True,
    ),
    Case(
        "quotes supplier",
        lambda d: order_queries.list_quotes(viewer=d.supplier, first=PAGE, after=None),
        {"quote": ("supplier_id",)},
        keyset=True,
    ),
    Case(
        "stores",
        lambda d: store_queries.list_stores(viewer=d.buyer, first=PAGE, after=None),
        {"store": ("buyer_id",)},
    ),
    Case(
        "storeProducts",
        lambda d: store_queries.list_store_products(
            viewer=d.buyer, store_id=d.store_id, first=PAGE, after=None
        ),
        {"store_product": ("store_id",)},
    ),
    Case(
        "wallets buyer",
        lambda d: payment_queries.list_wallets(viewer=d.buyer, first=PAGE, after=None),
        {"wallet": ("buyer_id",)},
    ),
    Case(
        "wallets supplier",
        lambda d: payment_queries.list_wallets(viewer=d.supplier, first=PAGE, after=None),
        {"wallet": ("supplier_id",)},
    ),
    Case(
        "walletEntries",
        lambda d: payment_queries.wallet_entries(
            viewer=d.buyer, wallet_id=d.wallet_id, first=PAGE, after=None
        ),
        {"wallet_entry": ("wallet_id",)},
        keyset=True,
    ),
    Case(
        "walletEntries deep page",
        lambda d: payment_queries.wallet_entries(
            viewer=d.buyer, wallet_id=d.wallet_id, first=PAGE, after=d.entry_cursor
        ),
        {"wallet_entry": ("wallet_id",)},
        keyset=True,
    ),
    # catalogue and organisation
    Case(
        "products supplier",
        lambda d: catalogue_queries.list_products(viewer=d.supplier, first=PAGE, after=None),
        {"product": ("supplier_id",)},
    ),
    Case(
        "products of one supplier, as a buyer",
        lambda d: catalogue_queries.list_products(
            viewer=d.buyer, supplier_id=d.supplier.organisation_id, first=PAGE, after=None
        ),
        {"product": ("supplier_id",)},
    ),
    Case(
        "logisticsMethods supplier",
        lambda d: catalogue_queries.list_logistics_methods(
            viewer=d.supplier, supplier_id=None, first=PAGE, after=None
        ),
        {"logistics_method": ("supplier_id",)},
    ),
    Case(
        "cloudWarehouses of one supplier",
        lambda d: stock_queries.list_cloud_warehouses(
            viewer=d.buyer, supplier_id=d.supplier.organisation_id, first=PAGE, after=None
        ),
        {"cloud_warehouse": ("supplier_id",)},
    ),
    Case(
        "users",
        lambda d: organisation_queries.list_users(viewer=d.buyer, first=PAGE, after=None),
        {"user": ("organisation_id",)},
    ),
    Case(
        "apiTokens",
        lambda d: organisation_queries.list_tokens(viewer=d.buyer, first=PAGE, after=None),
        {"api_token": ("organisation_id",)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_list_reads_through_an_organisation_index(case: Case, seeded: Seeded) -> None:
    scans, nodes, report = await _plan_scans(seeded, lambda: case.call(seeded))
    sequential = [s for s in scans if s.node == "Seq Scan" and s.table in BIG_TABLES]
    assert not sequential, f"{case.name}: Seq Scan on a big table\n{report}"
    if case.keyset:
        # small organisations are cheaper to read whole and sort (a bitmap scan): with sorts
        # priced out too, the planner must find an index in the page's order
        _, nodes, report = await _plan_scans(seeded, lambda: case.call(seeded), ordered=True)
        sorts = nodes & {"Sort", "Incremental Sort"}
        assert not sorts, f"{case.name}: no index in the page's order ({sorts})\n{report}"
    for table, columns in case.index_on.items():
        assert any(s.table == table and s.leads_with(c) for s in scans for c in columns), (
            f"{case.name}: no index on {table} sought by one of {columns}\n{report}"
        )


async def test_search_seeks_an_index_for_every_searched_column(seeded: Seeded) -> None:
    """The OR of the search is served by one index per column (a BitmapOr), not by reading
    every order of the caller and filtering."""
    scans, _, report = await _plan_scans(
        seeded,
        lambda: order_queries.list_orders(
            viewer=seeded.buyer,
            filters=order_queries.OrderFilter(search=seeded.tracking_number),
            first=PAGE,
            after=None,
        ),
    )
    missing = [
        c for c in SEARCHED if not any(s.table == "supply_order" and s.leads_with(c) for s in scans)
    ]
    assert not missing, f"searched columns without an index: {missing}\n{report}"
