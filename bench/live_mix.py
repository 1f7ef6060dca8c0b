"""Live delivery in a dashboard's mix: commit-to-client latency by event source, beside one
subscription going through the same flow.

The flow of ``tests/support/live_flow.py`` (partnership, third-party warehouse, a store order
taken in by the inbox worker, payments, pushes and withdraws decided by the warehouse worker,
warehouse callbacks, tracking pushed to the store, reconciliation, an auto-pushed return whose
withdraw is refused) runs against supplygraph served as ``make run`` serves it, with the
warehouse and store simulators in this process (the outside world, like the clients). Two
phases, each ``ROUNDS`` runs of the flow with new organisations (``--quick``: ``QUICK_ROUNDS``;
``BENCH_LIVE_MIX_ROUNDS`` overrides both):

- ``single``: the supplier's event stream alone (``single_panel``), the baseline;
- ``mixed``: the whole dashboard (``panels``: 18 subscriptions on 12 sockets, graphql-transport-ws
  and legacy graphql-ws, own and shared sockets, filters that match rarely or never, a stream
  resumed with ``afterEventId``, nested ``order`` fields).

The phases alternate in ``BLOCKS`` blocks (single, mixed, single, mixed), each block on a freshly
started server, so that what drifts over the run (the database's growth, its background work)
weighs on both alike. A flow makes ten events by background work: 16 rounds give the p99 of 160
such events rather than the slowest of a hundred.

Latency: the frame's arrival (``time.time()`` as it is read) minus the event's ``created_at``,
stamped in the committing transaction on this machine's clock. Source: ``request`` for events
with an acting user, ``worker`` for those without (warehouse worker and callbacks, store inbox,
tracking pusher, reconciliation). Rows: p50 and p99 by source for ``mixed`` beside ``single``'s
(target: p99 at most 1.3 times), and what ``mixed`` received wrongly (missing, extra or out of
order: target 0).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import httpx

from bench.common import (
    PYTHON,
    Row,
    ServerProcess,
    at_most,
    compared,
    free_port,
    percentile,
    progress,
)
from bench.hot_paths import bench_database
from integrations.stores.simulator import create_store_simulator
from integrations.warehouses.simulator import create_warehouse_simulator
from tests.support.dashboard import Dashboard, Report
from tests.support.distribution import WAREHOUSE_KEY, WarehouseSim
from tests.support.live_flow import Instance, Pace, PanelSet, panels, run_flow, single_panel
from tests.support.server import serve
from tests.test_store_integration import Sim

if TYPE_CHECKING:
    from bench.context import BenchContext

NAME = "live_mix"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True

MAX_RATIO = 1.3
ROUNDS, QUICK_ROUNDS = 16, 3
BLOCKS = 2
PACE = Pace(warehouse_delay=0.2, gap=0.3)
SERVER_SETTINGS = {
    "WAREHOUSE_TIMEOUT": "5",
    "WAREHOUSE_RETRIES": "1",
    "WAREHOUSE_TASK_ATTEMPTS": "2",
    "WAREHOUSE_RETRY_DELAY": "0.2",
    "WAREHOUSE_RECONCILE_AFTER": "2",
    "TRACKING_RETRY_DELAY": "1",
}
SOURCES = ("request", "worker")


async def phase(ctx: BenchContext, label: str, panel_set: PanelSet, rounds: int) -> Report:
    """``rounds`` runs of the flow with ``panel_set`` open, on a server started for them
    (``label`` names its log and its progress lines)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **ctx.app_environment(),
        "RESPONSE_CACHE": "true",  # as make run serves it
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": url,
        **SERVER_SETTINGS,
    }
    server = ServerProcess(
        f"supplygraph ({label})",
        [PYTHON, "main.py", "serve"],
        env,
        ctx.results_dir / f"live_mix_{label}.log",
    )
    total = Report([], [])
    warehouse = create_warehouse_simulator(api_key=WAREHOUSE_KEY, callback_secret="not-yet")
    store = create_store_simulator(access_token="bs-token", webhook_secret="bs-secret")
    try:
        await server.start()
        async with (
            serve(warehouse) as warehouse_url,
            serve(store) as store_url,
            httpx.AsyncClient(base_url=warehouse_url) as warehouse_control,
            httpx.AsyncClient(base_url=store_url) as store_control,
        ):
            sim = WarehouseSim(warehouse_url, warehouse_control)
            shop = Sim(store_url, store_control)
            for n in range(rounds):
                started = time.perf_counter()
                dashboard = Dashboard()
                try:
                    await run_flow(
                        instances=[Instance(url)],
                        sim=sim,
                        shop=shop,
                        dashboard=dashboard,
                        pace=PACE,
                        panel_set=panel_set,
                    )
                    report = await dashboard.verify(bound_ms=float("inf"))
                finally:
                    await dashboard.close()
                total.deliveries += report.deliveries
                total.problems += report.problems
                seconds = time.perf_counter() - started
                progress(
                    f"  {NAME} {label}: round {n + 1}/{rounds}, {len(report.deliveries)} "
                    f"deliveries, {len(report.problems)} wrong, {seconds:.1f} s"
                )
    finally:
        server.stop()
    progress(f"  {NAME} {label}: " + total.summary().replace("\n", "\n  " + " " * len(NAME)))
    return total


def keep_series(ctx: BenchContext, name: str, role: str, report: Report) -> None:
    """The latencies, for ``make bench-plot``."""
    samples = report.latencies()
    ctx.series[name] = {
        "benchmark": NAME,
        "role": role,
        "unit": "ms",
        "p50": round(percentile(samples, 50), 3),
        "p99": round(percentile(samples, 99), 3),
        "samples": [round(s, 3) for s in samples],
    }


async def run(ctx: BenchContext) -> list[Row]:
    rounds = int(os.environ.get("BENCH_LIVE_MIX_ROUNDS") or (QUICK_ROUNDS if ctx.quick else ROUNDS))
    blocks = [rounds // BLOCKS + (1 if b < rounds % BLOCKS else 0) for b in range(BLOCKS)]
    single, mixed = Report([], []), Report([], [])
    async with bench_database(ctx):
        for b, block_rounds in enumerate(n for n in blocks if n):
            for total, label, panel_set in (
                (single, "single", single_panel),
                (mixed, "mixed", panels),
            ):
                report = await phase(ctx, f"{label}{b + 1}", panel_set, block_rounds)
                total.deliveries += report.deliveries
                total.problems += report.problems
    for label, total in (("single", single), ("mixed", mixed)):
        summary = total.summary().replace("\n", "\n  " + " " * len(NAME))
        progress(f"  {NAME} {label}, all blocks: {summary}")
    keep_series(ctx, f"{NAME}.single", "one subscription", single)
    keep_series(ctx, f"{NAME}.mixed", "the dashboard's mix", mixed)
    rows: list[Row] = []
    for source in SOURCES:
        app, base = mixed.latencies(source), single.latencies(source)
        rows.append(
            compared(f"{NAME}.{source}.p50", percentile(app, 50), "ms", percentile(base, 50))
        )
        rows.append(
            at_most(
                f"{NAME}.{source}.p99", percentile(app, 99), "ms", percentile(base, 99), MAX_RATIO
            )
        )
    wrong = len(mixed.problems) + len(single.problems)
    for problem in (mixed.problems + single.problems)[:5]:
        progress(f"  {NAME}: {problem[:300]}")
    rows.append(Row(f"{NAME}.deliveries", len(mixed.deliveries), "", len(single.deliveries)))
    rows.append(Row(f"{NAME}.wrong", wrong, "", target="0", met=wrong == 0))
    return rows
