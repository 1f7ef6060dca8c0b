"""The floor reference: a bare Starlette JSON endpoint (``/json`` of ``bench/baseline_app.py``)
under uvicorn, hit with exactly the requests ``webhook_ingest`` sends (new signed store orders,
5 % redeliveries), which it parses and answers. Baseline of ``webhook_ingest``."""

from __future__ import annotations

from bench.common import Row, load_rows, measure
from bench.context import BenchContext
from bench.webhook_ingest import StoreOrderWebhooks

NAME = "plain_starlette"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = False


async def run(ctx: BenchContext) -> list[Row]:
    server = await ctx.baseline_server()
    workload = StoreOrderWebhooks("/json", "bench-secret")
    stats = await measure(NAME, server.host, server.port, workload, ctx.load)
    ctx.keep(NAME, "webhook_ingest", "plain Starlette", stats)
    return [Row(NAME, stats.rate, "req/s"), *load_rows(NAME, stats, None)]
