"""A dashboard reloading the same page: the orders page of ``orders_page`` (same document,
variables and buyer token) requested again and again by 32 clients, so that after the first
request every answer can come from the response cache (``service/response_cache.py``). Each
request still authenticates its bearer token; nothing changes the buyer's orders meanwhile.

The server is one of its own, started as ``make run`` starts it with ``RESPONSE_CACHE=true``
(whatever the environment says), on the run's database, and stopped afterwards.

Value: req/s; baseline: ``plain_starlette`` of the same run (a bare Starlette JSON endpoint,
the floor reference). Target: at least 0.3 of it. The cache's hits and misses during the run,
read from ``/metrics``, are printed beside it.
"""

from __future__ import annotations

import re

from bench.common import (
    PYTHON,
    RawConnection,
    Row,
    ServerProcess,
    compared,
    free_port,
    load_rows,
    make_req,
    measure,
    progress,
)
from bench.context import METRICS_TOKEN, BenchContext
from bench.orders_page import PAGE_SIZE, check_page, page_request

NAME = "repeated_reads"
REQUIRES = ("plain_starlette",)
USES_DATABASE = True
MIN_RATIO = 0.3


async def _cache_lookups(host: str, port: int) -> dict[str, float]:
    """``supplygraph_response_cache_lookups_total`` by result, from ``/metrics``."""
    conn = RawConnection(host, port)
    try:
        status, body = await conn.send(
            make_req("GET", "/metrics", {"authorization": f"Bearer {METRICS_TOKEN}"})
        )
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    found = re.findall(
        rb'^supplygraph_response_cache_lookups_total\{result="(\w+)"\} (\S+)$', body, re.M
    )
    return {result.decode(): float(value) for result, value in found}


async def run(ctx: BenchContext) -> list[Row]:
    env = {
        **ctx.app_environment(),
        "RESPONSE_CACHE": "true",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    server = ServerProcess(
        "supplygraph (response cache)",
        [PYTHON, "main.py", "serve"],
        env,
        ctx.results_dir / "server-repeated-reads.log",
    )
    try:
        await server.start()
        page = page_request(ctx.data.orders_token)
        await check_page(server, page, PAGE_SIZE)  # the first answer, in full: fills the cache
        await check_page(server, page, PAGE_SIZE)  # and the same answer from the cache
        before = await _cache_lookups(server.host, server.port)
        stats = await measure(NAME, server.host, server.port, page, ctx.load)
        after = await _cache_lookups(server.host, server.port)
    finally:
        server.stop()
    hits, misses = (after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss"))
    progress(f"  {NAME}: response cache {hits:.0f} hits, {misses:.0f} misses during the run")
    if hits == 0:
        raise RuntimeError(f"{NAME}: no request was answered from the response cache")
    baseline = ctx.stats.get("plain_starlette")
    ctx.keep(NAME, NAME, "supplygraph, cached", stats)
    return [
        compared(
            NAME, stats.rate, "req/s", baseline.rate if baseline else None, min_ratio=MIN_RATIO
        ),
        *load_rows(NAME, stats, baseline),
    ]
