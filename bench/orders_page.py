"""The orders page a buyer's dashboard loads: ``orders(first: 50)`` with each order's lines
(quantity, SKU code, product title), store, logistics method, tracking and latest transition,
read by 32 concurrent clients as a buyer with many orders (100,000; ``--quick`` 5,000).

Baseline, measured in the same run: the same document against ``bench/baseline_app.py``, a
default Strawberry schema of the same shape resolving from Python objects (no database).
Target: at least the baseline's throughput.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import (
    FixedRequest,
    RawConnection,
    Row,
    ServerProcess,
    compared,
    load_rows,
    make_req,
    measure,
)
from bench.context import BenchContext

NAME = "orders_page"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True
MIN_RATIO = 1.0
PAGE_SIZE = 50
LINES_PER_ORDER = 3
ORDER_GID = "gid://supplygraph/Order/"  # an order's id on the API: its global id

QUERY = """query OrdersPage($first: Int!, $after: String) {
  orders(first: $first, after: $after) {
    edges {
      cursor
      node {
        id
        number
        status
        carrier
        trackingNumber
        lines { quantity sku { code product { title } } }
        store { name }
        logisticsMethod { name }
        latestTransition { toStatus at }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


def page_request(token: str, first: int = PAGE_SIZE) -> FixedRequest:
    body = json.dumps({"query": QUERY, "variables": {"first": first}}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    return FixedRequest(make_req("POST", "/graphql", headers, body), reject=b'"errors"')


async def check_page(server: ServerProcess, workload: FixedRequest, expected: int) -> None:
    """One request, checked in full: ``expected`` orders, each with every field filled and
    its id an Order global id (the baseline's answer has the shape of supplygraph's)."""
    conn = RawConnection(server.host, server.port)
    try:
        status, body = await conn.send(workload.req)
    finally:
        await conn.close()
    answer: dict[str, Any] = json.loads(body) if body.startswith(b"{") else {}
    if status != 200 or answer.get("errors") or not answer.get("data"):
        raise RuntimeError(f"{server.name}: orders page failed: {status} {body[:500]!r}")
    edges = answer["data"]["orders"]["edges"]
    if len(edges) != expected:
        raise RuntimeError(f"{server.name}: {len(edges)} orders on the page, not {expected}")
    for edge in edges:
        node = edge["node"]
        lines = node["lines"]
        if (
            not node["id"].startswith(ORDER_GID)
            or len(lines) != LINES_PER_ORDER
            or not all(ln["sku"]["code"] and ln["sku"]["product"]["title"] for ln in lines)
            or not (node["store"]["name"] and node["logisticsMethod"]["name"])
            or not (node["carrier"] and node["trackingNumber"])
            or node["latestTransition"]["toStatus"] != "SHIPPED"
        ):
            raise RuntimeError(f"{server.name}: incomplete order on the page: {node}")


async def run(ctx: BenchContext) -> list[Row]:
    baseline_server = await ctx.baseline_server()
    baseline_page = page_request("unused")
    await check_page(baseline_server, baseline_page, PAGE_SIZE)
    baseline = await measure(
        f"{NAME} baseline (plain Strawberry)",
        baseline_server.host,
        baseline_server.port,
        baseline_page,
        ctx.load,
    )
    ctx.keep(f"{NAME}.baseline", NAME, "plain Strawberry", baseline)

    server = await ctx.app_server()
    page = page_request(ctx.data.orders_token)
    await check_page(server, page, PAGE_SIZE)
    stats = await measure(NAME, server.host, server.port, page, ctx.load)
    ctx.keep(NAME, NAME, "supplygraph", stats)
    return [
        compared(NAME, stats.rate, "req/s", baseline.rate, min_ratio=MIN_RATIO),
        *load_rows(NAME, stats, baseline),
    ]
