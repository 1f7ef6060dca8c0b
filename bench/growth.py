"""Growth: the orders page's p50 latency with 10,000 and with 1,000,000 orders of the buyer in
PostgreSQL (``--quick``: 100,000 instead of 1,000,000; the row names say which), on the first
page and on a deep page reached by cursor, and on the filtered pages users open.

Target: each p50 at the large size at most 1.2 x the p50 at 10,000 (keyset pagination and
indexes: no OFFSET, no COUNT over the table on the hot path).

PostgreSQL only: without a PostgreSQL DATABASE_URL the benchmark returns one row saying it was
skipped. It makes a database ``bench_<random>`` per size next to DATABASE_URL's (dropped
afterwards), migrates it with ``python main.py migrate``, and seeds it:

- through ``bench.seed`` (the domain layer): the supplier with its SKUs and logistics method,
  the buyer with its token and store, the webhook buyer;
- in bulk, set-based SQL over ``generate_series`` (data-modifying CTEs, 50,000 orders a
  statement): the buyer's orders in the shape of a store order (three lines with SKUs, store,
  logistics method, carrier and tracking number, one transition), one in ten awaiting
  shipping; and, between them, one order in eleven from one of ten other buyers, partnered
  distributors of the supplier (``Distributor 01`` ...), so that the buyer is not alone in the
  table; then ``VACUUM ANALYZE``.

Each size gets its own server, started as ``make run`` starts it (``python main.py serve``,
logs in the results folder) but with ``RESPONSE_CACHE=false``: the same request sent again and
again would otherwise be answered from memory, and the database's growth is what is measured.
Both servers run during the measurements, and each page is measured on both sizes at the same
time, 8 keep-alive clients per size (fewer if ``--clients`` says so), with the run's warm-up and
repetitions and repetitions of at least 3 s (at a few dozen pages a second on a busy machine, a
1 s window holds too few answers): the two servers share core 0 and the moment, so a change in
the load of a shared machine weighs on both alike (the absolute latencies include the other
size's requests; the ratio is the figure). A size's p50 is taken over every answer after the
warm-up. Pages (``bench.orders_page.QUERY``, 50 orders):

- ``first_page``: the buyer's newest orders;
- ``deep_page``: the page after 90 % of the buyer's orders, by its cursor (the id of the order
  there, found in SQL while seeding; cursors are order ids, which a walk of the first two
  pages through the API checks);
- ``status_filter``: ``statuses: [AWAITING_SHIPPING]`` (one order in ten);
- ``search``: ``search`` by a tracking number (one order);
- ``distributor_filter``: the supplier's page with ``distributorName: "Distributor 07"``.

Rows: the seeding time of each size (s), and per page the p50 at the large size beside the p50
at 10,000 (baseline) with the ratio and the target.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse, urlunparse

from bench.common import (
    PYTHON,
    FixedRequest,
    LoadOptions,
    LoadStats,
    RawConnection,
    Row,
    ServerProcess,
    free_port,
    make_req,
    measure,
    percentile,
    progress,
)
from bench.context import BenchContext
from bench.database import admin, asyncpg_url, is_postgres, migrate
from bench.orders_page import PAGE_SIZE, QUERY
from schema.global_ids import key_of

NAME = "growth"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = False  # it makes a database per size itself
SMALL, LARGE, QUICK_LARGE = 10_000, 1_000_000, 100_000
MAX_RATIO = 1.2
CLIENTS = 8
MIN_SECONDS = 3.0  # per repetition: a 1 s window holds a dozen answers of a busy machine
OTHER_BUYERS = 10
EVERY_OTHER = 11  # order g is another buyer's when g % 11 == 0: 10 of the buyer's per other
CHUNK = 50_000  # orders per INSERT statement
DEEP = 0.9  # the deep page starts after this share of the buyer's orders
DISTRIBUTOR = "Distributor 07"

FILTERED_QUERY = QUERY.replace(
    "$after: String)", "$after: String, $filter: OrderFilterInput)"
).replace(
    "orders(first: $first, after: $after)", "orders(first: $first, after: $after, filter: $filter)"
)
assert FILTERED_QUERY.count("$filter") == 2, "bench.orders_page.QUERY changed its header"


def _label(orders: int) -> str:
    return f"{orders // 1_000_000}M" if orders % 1_000_000 == 0 else f"{orders // 1_000}k"


# --------------------------------------------------------------------------- databases


@dataclass
class Dataset:
    """One seeded database and what its pages need."""

    orders: int
    name: str
    url: str
    buyer_token: str = ""
    supplier_token: str = ""
    deep_cursor: int = 0
    second_page_first_id: int = 0  # the buyer's 51st newest order, for the cursor walk check
    tracking_number: str = ""
    seconds: float = 0.0
    server: ServerProcess | None = None

    @property
    def label(self) -> str:
        return _label(self.orders)


async def _seed_domain(data: Dataset) -> tuple[int, int, int, int, list[int]]:
    """Through ``bench.seed``: (buyer, supplier, store, logistics method, SKU ids); tokens."""
    from tortoise import Tortoise

    from bench.seed import seed
    from domain.db import tortoise_config
    from domain.models import Sku
    from domain.orders.models import Order
    from domain.organisations import tokens
    from domain.organisations.models import User
    from domain.stores.models import Store

    await Tortoise.init(config=tortoise_config(data.url))
    try:
        seeded = await seed(2)  # the two manual orders of the domain, the rest in bulk below
        data.buyer_token = seeded.orders_token
        manual = await Order.filter(buyer_id=seeded.orders_buyer_id).first()
        assert manual is not None and manual.supplier_id and manual.logistics_method_id
        supplier_id, method_id = manual.supplier_id, manual.logistics_method_id
        store = await Store.get(buyer_id=seeded.orders_buyer_id)
        skus = await Sku.filter(supplier_id=supplier_id).order_by("id").values_list("id", flat=True)
        owner = await User.filter(organisation_id=supplier_id).order_by("id").first()
        assert owner is not None
        _, data.supplier_token = await tokens.issue_token(user=owner, name="growth")
        return seeded.orders_buyer_id, supplier_id, store.id, method_id, list(skus)
    finally:
        await Tortoise.close_connections()


_ORDERS_SQL = """
WITH o AS (
    INSERT INTO supply_order (number, kind, status, buyer_id, supplier_id, store_id,
        store_order_id, store_order_number, currency, customer_name, shipping_address,
        logistics_method_id, goods_amount, freight_amount, paid_amount, refunded_amount,
        carrier, tracking_number, tracking_sync, tracking_sync_attempts, version, paid_at,
        shipped_at, created_at, updated_at)
    SELECT 'GR' || lpad(g::text, 10, '0'),
           CASE WHEN g % {every} = 0 THEN 'MANUAL' ELSE 'STORE' END,
           CASE WHEN g % 10 = 3 THEN 'AWAITING_SHIPPING' ELSE 'SHIPPED' END,
           CASE WHEN g % {every} = 0 THEN ($3::int[])[1 + (g / {every}) % {others}]
                ELSE $4::int END,
           $5::int,
           CASE WHEN g % {every} = 0 THEN NULL ELSE $6::int END,
           CASE WHEN g % {every} = 0 THEN NULL ELSE (500000 + g)::text END,
           CASE WHEN g % {every} = 0 THEN NULL ELSE '#' || (500000 + g) END,
           'USD', 'Ada Lovelace', $7::jsonb, $8::int, 30.00, 4.00, 34.00, 0,
           'UPS', '1ZGROW' || lpad(g::text, 10, '0'), 'SYNCED', 0, 3,
           $9::timestamptz + make_interval(secs => g * 10),
           $9::timestamptz + make_interval(secs => g * 10 + 5),
           $9::timestamptz + make_interval(secs => g * 10),
           $9::timestamptz + make_interval(secs => g * 10 + 5)
    FROM generate_series($1::bigint, $2::bigint) AS g
    ORDER BY g
    RETURNING id, status, created_at
), lines AS (
    INSERT INTO order_line (order_id, title, quantity, sku_id, source, unit_price, stock_quantity)
    SELECT o.id, 'Bench tee', k, ($10::int[])[k], 'PRODUCT_LINK', 5.00, 0
    FROM o CROSS JOIN generate_series(1, 3) AS k
)
INSERT INTO order_transition (order_id, from_status, to_status, reason, created_at)
SELECT o.id,
       CASE WHEN o.status = 'SHIPPED' THEN 'AWAITING_SHIPPING' ELSE 'AWAITING_PAYMENT' END,
       o.status, 'seeded', o.created_at
FROM o
"""


async def _seed(data: Dataset, source: str) -> None:
    """Create, migrate and fill ``data``'s database (see the module docstring)."""
    import asyncpg

    from bench.seed import ADDRESS

    started = time.perf_counter()
    await admin(source, f'CREATE DATABASE "{data.name}"')
    migrate(data.url)
    buyer, supplier, store, method, skus = await _seed_domain(data)
    conn = await asyncpg.connect(asyncpg_url(data.url))
    try:
        await conn.execute("SET synchronous_commit = off")
        others = [
            r["id"]
            for r in await conn.fetch(
                """INSERT INTO organisation (name, kind, currency, created_at, updated_at)
                   SELECT 'Distributor ' || lpad(n::text, 2, '0'), 'BUYER', 'USD', now(), now()
                   FROM generate_series(1, $1) AS n ORDER BY n RETURNING id""",
                OTHER_BUYERS,
            )
        ]
        await conn.execute(
            """INSERT INTO partnership (supplier_id, distributor_id, status, message,
                                        decision_note, decided_at, created_at, updated_at)
               SELECT $1, d, 'ACCEPTED', '', '', now(), now(), now() FROM unnest($2::int[]) AS d""",
            supplier,
            others,
        )
        total = data.orders * EVERY_OTHER // (EVERY_OTHER - 1)  # the buyer's share: data.orders
        sql = _ORDERS_SQL.format(every=EVERY_OTHER, others=OTHER_BUYERS)
        start = await conn.fetchval("SELECT now() - interval '400 days'")
        address = json.dumps(ADDRESS)
        bulk_started, reported = time.perf_counter(), 0
        for first in range(1, total + 1, CHUNK):
            last = min(first + CHUNK - 1, total)
            await conn.execute(
                sql, first, last, others, buyer, supplier, store, address, method, start, skus
            )
            if last * 5 // total > reported or last == total:
                reported = last * 5 // total
                progress(
                    f"  {data.label}: {last:,} / {total:,} orders inserted "
                    f"({time.perf_counter() - bulk_started:.1f} s)"
                )
        vacuum_started = time.perf_counter()
        await conn.execute(
            "VACUUM ANALYZE supply_order, order_line, order_transition, organisation, partnership"
        )
        progress(f"  {data.label}: VACUUM ANALYZE {time.perf_counter() - vacuum_started:.1f} s")
        mine = await conn.fetchval("SELECT count(*) FROM supply_order WHERE buyer_id = $1", buyer)
        data.deep_cursor = await conn.fetchval(
            "SELECT id FROM supply_order WHERE buyer_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1",
            buyer,
            math.ceil(mine * DEEP),
        )
        data.second_page_first_id = await conn.fetchval(
            "SELECT id FROM supply_order WHERE buyer_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1",
            buyer,
            PAGE_SIZE,
        )
        data.tracking_number = await conn.fetchval(
            "SELECT tracking_number FROM supply_order WHERE buyer_id = $1 AND id < $2 "
            "ORDER BY id DESC LIMIT 1",
            buyer,
            data.deep_cursor,
        )
    finally:
        await conn.close()
    data.seconds = time.perf_counter() - started
    progress(
        f"  {data.label}: {mine:,} orders of the buyer, {total:,} in all; {data.seconds:.1f} s"
    )


# --------------------------------------------------------------------------- the pages


@dataclass(frozen=True)
class Page:
    name: str
    supplier: bool = False  # read with the supplier's token, else the buyer's
    filter: dict[str, Any] | None = None
    deep: bool = False
    search: bool = False

    def variables(self, data: Dataset) -> dict[str, Any]:
        variables: dict[str, Any] = {"first": PAGE_SIZE}
        if self.deep:
            variables["after"] = str(data.deep_cursor)
        if self.search:
            variables["filter"] = {"search": data.tracking_number}
        elif self.filter is not None:
            variables["filter"] = self.filter
        return variables

    def request(self, data: Dataset) -> FixedRequest:
        token = data.supplier_token if self.supplier else data.buyer_token
        query = FILTERED_QUERY if "filter" in self.variables(data) else QUERY
        body = json.dumps({"query": query, "variables": self.variables(data)}).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        return FixedRequest(make_req("POST", "/graphql", headers, body), reject=b'"errors"')


PAGES = (
    Page("first_page"),
    Page("deep_page", deep=True),
    Page("status_filter", filter={"statuses": ["AWAITING_SHIPPING"]}),
    Page("search", search=True),
    Page("distributor_filter", supplier=True, filter={"distributorName": DISTRIBUTOR}),
)


async def _ask(server: ServerProcess, req: FixedRequest) -> list[dict[str, Any]]:
    """One request; the page's edges, or an error naming what came back."""
    conn = RawConnection(server.host, server.port)
    try:
        status, body = await conn.send(req.req)
    finally:
        await conn.close()
    answer: dict[str, Any] = json.loads(body) if body.startswith(b"{") else {}
    if status != 200 or answer.get("errors") or not answer.get("data"):
        raise RuntimeError(f"{server.name}: orders page failed: {status} {body[:500]!r}")
    return answer["data"]["orders"]["edges"]


async def _check(data: Dataset) -> None:
    """Every page answers with orders; cursors are order ids (walked: page 1, then page 2)."""
    assert data.server is not None
    for page in PAGES:
        edges = await _ask(data.server, page.request(data))
        if not edges:
            raise RuntimeError(f"{data.label}: {page.name} is empty")
        if page.deep and not all(int(e["cursor"]) < data.deep_cursor for e in edges):
            raise RuntimeError(f"{data.label}: the deep page is not after its cursor")
        if page.search and len(edges) != 1:
            raise RuntimeError(f"{data.label}: search found {len(edges)} orders, not 1")
    first = await _ask(data.server, PAGES[0].request(data))
    body = json.dumps(
        {"query": QUERY, "variables": {"first": PAGE_SIZE, "after": first[-1]["cursor"]}}
    ).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {data.buyer_token}"}
    second = await _ask(data.server, FixedRequest(make_req("POST", "/graphql", headers, body)))
    if key_of(second[0]["node"]["id"]) != data.second_page_first_id:
        raise RuntimeError(f"{data.label}: the second page does not follow the first")


async def _start_server(ctx: BenchContext, data: Dataset, key: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": data.url,
        "SECRETS_KEY": key,
        "LOG_LEVEL": "WARNING",
        "RESPONSE_CACHE": "false",  # every request reads the database: what is measured
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    log = ctx.results_dir / f"growth-{data.label}.log"
    data.server = ServerProcess(
        f"supplygraph ({data.label})", [PYTHON, "main.py", "serve"], env, log
    )
    await data.server.start()


async def _measure_page(
    page: Page, datasets: list[Dataset], load: LoadOptions
) -> dict[str, LoadStats]:
    """The page on every size at the same time (each with its own clients): the servers share
    core 0 and the moment, so a change in the load of a shared machine weighs on both alike."""

    async def one(data: Dataset) -> LoadStats:
        assert data.server is not None
        label = f"{NAME}.{page.name}.{data.label}"
        return await measure(label, data.server.host, data.server.port, page.request(data), load)

    stats = await asyncio.gather(*(one(data) for data in datasets))
    return {data.label: s for data, s in zip(datasets, stats, strict=True)}


def _p50(stats: LoadStats) -> float:
    """Over every answer after the warm-up: steadier than the median of the repetitions'
    p50s when a repetition holds few answers."""
    return percentile(sorted(stats.samples_ms), 50)


def _compared(name: str, large: float, small: float) -> Row:
    ratio = large / small if small else None
    return Row(
        name,
        large,
        "ms",
        small,
        ratio,
        target=f"ratio <= {MAX_RATIO:g}",
        met=ratio is not None and ratio <= MAX_RATIO,
    )


async def run(ctx: BenchContext) -> list[Row]:
    source = os.environ.get("DATABASE_URL", "")
    if not is_postgres(source):
        progress("  growth: skipped, it needs DATABASE_URL=postgres://... (PostgreSQL)")
        return [Row(f"{NAME} (skipped: DATABASE_URL is not PostgreSQL)", math.nan, "-")]
    from domain import secrets

    key = ctx.secrets_key or secrets.generate_key()
    secrets.configure(key)  # the key the servers get as SECRETS_KEY (stores seal credentials)
    sizes = (SMALL, QUICK_LARGE if ctx.quick else LARGE)
    datasets: list[Dataset] = []
    for orders in sizes:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        datasets.append(
            Dataset(
                orders,
                name,
                urlunparse(urlparse(source)._replace(scheme="postgres", path=f"/{name}")),
            )
        )
    small, large = datasets
    load: LoadOptions = replace(
        ctx.load,
        clients=min(ctx.load.clients, CLIENTS),
        duration=max(ctx.load.duration, MIN_SECONDS),
    )
    created: list[Dataset] = []
    try:
        for data in datasets:
            progress(f"  seeding {data.label} orders ({data.name})")
            created.append(data)
            await _seed(data, source)
        for data in datasets:
            await _start_server(ctx, data, key)
            await _check(data)
        rows = [Row(f"{NAME}.seed_{d.label}", d.seconds, "s") for d in datasets]
        for page in PAGES:
            stats = await _measure_page(page, datasets, load)
            for data in datasets:
                ctx.keep(
                    f"{NAME}.{page.name}.{data.label}",
                    NAME,
                    f"{data.label} orders",
                    stats[data.label],
                )
            rows.append(
                _compared(
                    f"{NAME}.{page.name}.p50 ({large.label} vs {small.label})",
                    _p50(stats[large.label]),
                    _p50(stats[small.label]),
                )
            )
        return rows
    finally:
        for data in datasets:
            if data.server is not None:
                data.server.stop()
        for data in created:
            await admin(source, f'DROP DATABASE IF EXISTS "{data.name}" WITH (FORCE)')
