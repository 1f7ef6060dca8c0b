"""Scale-out: two supplygraph instances, no proxy between them and the clients, on one
PostgreSQL and one Redis. Both are ``python main.py serve`` with the same DATABASE_URL,
REDIS_URL and SECRETS_KEY on different ports: A is the run's app server (``ctx.app_server()``),
B is started here.

1. Query throughput: the orders page (``bench.orders_page.page_request``, the seeded buyer) read
   by 32 closed-loop clients from A alone (``scale_out.one``), then by 16 clients on A and 16 on
   B at the same time (``scale_out.two``: the sum of both instances' req/s; its p50 and p99 over
   the answers of both). Ratio two / one: what the second instance adds (2.0 would be linear).
   The same request is answered from each instance's response cache after its first execution,
   so this is the throughput of repeated reads; ``scale_out.uncached.*`` measures the same pair
   with an ``extensions`` member in the request, which the cache never answers: every request
   runs the query against the shared PostgreSQL.
2. Cross-instance delivery: ``SUBSCRIBERS`` graphql-transport-ws clients connected to A, each
   running ``orderStatusChanged`` with a buyer's token, while ``CHANGES`` status changes of that
   buyer's orders are made one every ``INTERVAL`` s through ``cancelOrders`` of a distinct
   AWAITING_PAYMENT order (a cheap legal change: one transition and its event). First the
   changes are made on A (``scale_out.same``, the same-instance baseline), then on B
   (``scale_out.cross``: B's outbox publisher puts the event on Redis, A's hub fans it out).
   Before each, probe changes (not measured) until one has reached every socket. Latency:
   client receipt (``time.time()``) minus the event's ``at`` (set when the mutation writes the
   event, just before its commit; one wall clock on this machine), p50, p99 and max over every
   delivery; lost: subscribers x changes - deliveries. Targets: cross p99 at most 1.3x the
   same-instance p99 of this run, nothing lost.

Placement: with ``taskset`` and two cores, A is moved (every thread, ``taskset -a -p``) to core
0, where the runner means its servers to be, and B started on core 1, which it shares with this
process (the load generator and the subscribers): B and the clients compete for core 1, so
``two`` is a lower bound of what two free cores would give. PostgreSQL and Redis are not
pinned. Without ``taskset`` nothing is pinned.

Needs PostgreSQL (SQLite serves one process) and Redis (without it each instance has its own
in-memory broadcast); otherwise it is skipped and says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlparse

from bench.common import (
    LOADGEN_CORE,
    PYTHON,
    SERVER_CORE,
    FixedRequest,
    LoadStats,
    RawConnection,
    Repetition,
    Row,
    ServerProcess,
    compared,
    free_port,
    load_rows,
    make_req,
    measure,
    percentile,
    place,
    progress,
)
from bench.context import BenchContext
from bench.hot_paths import (
    EXECUTE_EVERY_TIME,
    bench_database,
    bulk_orders,
    graphql_data,
    graphql_req,
    supplier_catalogue,
)
from bench.orders_page import PAGE_SIZE, check_page, page_request
from bench.seed import buyer_with_token
from bench.ws_clients import Subscriber, close_all, open_subscribers
from schema.global_ids import gid

NAME = "scale_out"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True
SUBSCRIBERS = 200
CHANGES = 20
INTERVAL = 0.2  # seconds between two status changes
PROBES = 3  # probe changes tried before a phase; each may take PROBE_WAIT to reach every socket
PROBE_WAIT = 5.0
QUIET = 5.0  # the wait for deliveries ends when nothing new came for this long
MAX_P99_RATIO = 1.3
ORDER_PREFIX = "SCALE"

SUBSCRIPTION = "subscription { orderStatusChanged { orderId toStatus at } }"
CANCEL = (
    'mutation($o: [ID!]!) { cancelOrders(orderIds: $o, reason: "scale-out bench") '
    "{ orders { id status } userErrors { code message } } }"
)


def _unsupported(ctx: BenchContext) -> str | None:
    if urlparse(ctx.database_url).scheme not in {"postgres", "postgresql", "asyncpg"}:
        return "needs PostgreSQL in DATABASE_URL (SQLite serves one process)"
    if not os.environ.get("REDIS_URL"):
        return "needs REDIS_URL (without Redis each instance has its own broadcast)"
    return None


def second_instance(ctx: BenchContext) -> ServerProcess:
    env = {**ctx.app_environment(), "HOST": "127.0.0.1", "PORT": str(free_port())}
    return ServerProcess(
        "supplygraph B",
        [PYTHON, "main.py", "serve"],
        env,
        ctx.results_dir / "server_b.log",
        core=LOADGEN_CORE,
    )


# --------------------------------------------------------------------------- throughput


def combined(a: LoadStats, b: LoadStats) -> LoadStats:
    """Two load runs over the same windows as one: rates added, latencies pooled."""
    reps = []
    for ra, rb in zip(a.repetitions, b.repetitions, strict=True):
        latencies = sorted(ra.samples_ms + rb.samples_ms)
        reps.append(
            Repetition(
                rate=ra.rate + rb.rate,
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                ok=ra.ok + rb.ok,
                errors=ra.errors + rb.errors,
                samples_ms=latencies,
            )
        )
    return LoadStats(
        rate=statistics.median(r.rate for r in reps),
        p50_ms=statistics.median(r.p50_ms for r in reps),
        p99_ms=statistics.median(r.p99_ms for r in reps),
        errors=sum(r.errors for r in reps),
        repetitions=reps,
        samples_ms=a.samples_ms + b.samples_ms,
    )


def uncached(page: FixedRequest) -> FixedRequest:
    """The same request with an ``extensions`` member: the response cache
    (``service/response_cache.py``) never answers those, so every request runs the query."""
    body = json.loads(page.req.body)
    body["extensions"] = EXECUTE_EVERY_TIME
    req = make_req("POST", page.req.path, dict(page.req.headers), json.dumps(body).encode())
    return FixedRequest(req, reject=page.reject)


async def one_and_two(
    ctx: BenchContext, name: str, page: FixedRequest, a: ServerProcess, b: ServerProcess
) -> list[Row]:
    """``page`` read by all clients from A alone, then by half of them on each instance."""
    for server in (a, b):
        await check_page(server, page, PAGE_SIZE)
    one = await measure(f"{name} one instance (A)", a.host, a.port, page, ctx.load)
    ctx.keep(f"{name}.one", NAME, "one instance", one)
    on_b = max(1, ctx.load.clients // 2)
    on_a = max(1, ctx.load.clients - on_b)
    stats_a, stats_b = await asyncio.gather(
        measure(f"{name} two instances, A", a.host, a.port, page, replace(ctx.load, clients=on_a)),
        measure(f"{name} two instances, B", b.host, b.port, page, replace(ctx.load, clients=on_b)),
    )
    two = combined(stats_a, stats_b)
    ctx.keep(f"{name}.two", NAME, "two instances", two)
    progress(
        f"  {name}: one {one.rate:.1f} req/s; two {two.rate:.1f} req/s "
        f"(A {stats_a.rate:.1f} with {on_a} clients, B {stats_b.rate:.1f} with {on_b})"
    )
    return [
        Row(f"{name}.one", one.rate, "req/s"),
        compared(f"{name}.two", two.rate, "req/s", one.rate),
        *load_rows(f"{name}.two", two, one),
    ]


async def throughput(ctx: BenchContext, a: ServerProcess, b: ServerProcess) -> list[Row]:
    page = page_request(ctx.data.orders_token)
    return [
        *await one_and_two(ctx, NAME, page, a, b),
        *await one_and_two(ctx, f"{NAME}.uncached", uncached(page), a, b),
    ]


# --------------------------------------------------------------------------- delivery


@dataclass
class Delivery:
    latencies_ms: list[float]  # sorted
    expected: int
    duplicates: int

    @property
    def lost(self) -> int:
        return self.expected - len(self.latencies_ms)

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def max_ms(self) -> float:
        return self.latencies_ms[-1] if self.latencies_ms else float("nan")


def _order_ids(subscriber: Subscriber) -> Iterator[tuple[str, float, str]]:
    """(order global id, receipt time, the event's ``at``) of every result so far."""
    for arrival in subscriber.arrivals:
        change = arrival.data.get("orderStatusChanged") or {}
        yield str(change.get("orderId")), arrival.at, str(change.get("at"))


def _reached(subscribers: list[Subscriber], order_ids: set[str]) -> int:
    return sum(len({oid for oid, _, _ in _order_ids(s)} & order_ids) for s in subscribers)


async def _cancel(conn: RawConnection, token: str, order_id: int) -> None:
    status, body = await conn.send(graphql_req(token, CANCEL, {"o": [gid("Order", order_id)]}))
    data = graphql_data(body) if status == 200 else None
    answer = (data or {}).get("cancelOrders") or {}
    if answer.get("userErrors") != [] or [o["status"] for o in answer["orders"]] != ["CANCELLED"]:
        raise RuntimeError(f"cancelOrders of {order_id} failed: {status} {body[:300]!r}")


async def _probe(
    subscribers: list[Subscriber], conn: RawConnection, token: str, orders: Iterator[int]
) -> int:
    """Probe changes until one reached every socket; returns how many were made."""
    for made in range(1, PROBES + 1):
        order_id = next(orders)
        await _cancel(conn, token, order_id)
        deadline = time.monotonic() + PROBE_WAIT
        while time.monotonic() < deadline:
            if _reached(subscribers, {gid("Order", order_id)}) == len(subscribers):
                return made
            await asyncio.sleep(0.02)
    raise RuntimeError(f"after {PROBES} probe changes not every subscriber had one")


async def deliver(
    label: str,
    subscribers: list[Subscriber],
    mutate_on: ServerProcess,
    token: str,
    orders: Iterator[int],
) -> Delivery:
    """Probe, then ``CHANGES`` changes on ``mutate_on`` one every ``INTERVAL`` s; waits until
    every subscriber has every change or nothing new arrived for ``QUIET`` s."""
    conn = RawConnection(mutate_on.host, mutate_on.port)
    try:
        probes = await _probe(subscribers, conn, token, orders)
        measured: set[str] = set()  # global ids, as the events carry them
        start = time.perf_counter()
        for i in range(CHANGES):
            await asyncio.sleep(max(0.0, start + i * INTERVAL - time.perf_counter()))
            order_id = next(orders)
            await _cancel(conn, token, order_id)
            measured.add(gid("Order", order_id))
    finally:
        await conn.close()
    expected = len(subscribers) * CHANGES
    seen, quiet_since = -1, time.monotonic()
    while True:
        reached = _reached(subscribers, measured)
        if reached == expected:
            break
        if reached != seen:
            seen, quiet_since = reached, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET:
            break
        await asyncio.sleep(0.02)
    latencies: list[float] = []
    duplicates = 0
    for subscriber in subscribers:
        got: set[str] = set()
        for order_id, received, at in _order_ids(subscriber):
            if order_id not in measured:
                continue
            if order_id in got:
                duplicates += 1
                continue
            got.add(order_id)
            latencies.append((received - datetime.fromisoformat(at).timestamp()) * 1000.0)
    result = Delivery(sorted(latencies), expected, duplicates)
    broken = [s.error for s in subscribers if s.error]
    progress(
        f"  {NAME}.{label}: {probes} probe(s), {CHANGES} changes on {mutate_on.name}: "
        f"p50 {result.pct(50):.1f} ms, p99 {result.pct(99):.1f} ms, max {result.max_ms:.1f} ms, "
        f"lost {result.lost}, duplicates {duplicates}"
        + (f"; {len(broken)} streams ended: {broken[0]}" if broken else "")
    )
    return result


async def delivery(ctx: BenchContext, a: ServerProcess, b: ServerProcess) -> list[Row]:
    async with bench_database(ctx):
        cat = await supplier_catalogue("Scale supplier", "supplier@scale.bench.test")
        buyer, token = await buyer_with_token("Scale buyer", "buyer@scale.bench.test")
        order_ids = await bulk_orders(
            prefix=ORDER_PREFIX,
            buyer_id=buyer.organisation_id,
            cat=cat,
            count=2 * (CHANGES + PROBES),
        )
    orders = iter(order_ids)
    started = time.perf_counter()
    subscribers, errors = await open_subscribers(
        f"ws://{a.host}:{a.port}/graphql", token, SUBSCRIPTION, SUBSCRIBERS
    )
    progress(
        f"  {NAME}: {len(subscribers)}/{SUBSCRIBERS} subscribers on A in "
        f"{time.perf_counter() - started:.1f} s" + (f"; first error: {errors[0]}" if errors else "")
    )
    try:
        if not subscribers:
            raise RuntimeError(f"no subscriber connected to A: {errors[:1]}")
        same = await deliver("same", subscribers, a, token, orders)
        cross = await deliver("cross", subscribers, b, token, orders)
    finally:
        await close_all(subscribers)
    # sockets that never opened lost every change
    unopened = (SUBSCRIBERS - len(subscribers)) * CHANGES
    same.expected += unopened
    cross.expected += unopened
    p99_ratio = cross.pct(99) / same.pct(99) if same.pct(99) > 0 else None
    return [
        Row(f"{NAME}.same.p50", same.pct(50), "ms", target="report"),
        Row(f"{NAME}.same.p99", same.pct(99), "ms", target="report"),
        Row(f"{NAME}.same.max", same.max_ms, "ms", target="report"),
        Row(f"{NAME}.same.lost", float(same.lost), "events", target="0", met=same.lost == 0),
        compared(f"{NAME}.cross.p50", cross.pct(50), "ms", same.pct(50)),
        Row(
            f"{NAME}.cross.p99",
            cross.pct(99),
            "ms",
            same.pct(99),
            p99_ratio,
            target=f"ratio <= {MAX_P99_RATIO:g}",
            met=p99_ratio is not None and p99_ratio <= MAX_P99_RATIO,
        ),
        compared(f"{NAME}.cross.max", cross.max_ms, "ms", same.max_ms),
        Row(f"{NAME}.cross.lost", float(cross.lost), "events", target="0", met=cross.lost == 0),
    ]


# --------------------------------------------------------------------------- the benchmark


async def run(ctx: BenchContext) -> list[Row]:
    reason = _unsupported(ctx)
    if reason is not None:
        progress(f"  {NAME}: skipped: {reason}")
        return []
    a = await ctx.app_server()
    b = second_instance(ctx)
    try:
        await b.start()
        assert a.process is not None
        placement = (
            f"A on core {SERVER_CORE}, B on core {LOADGEN_CORE} with the load generator"
            if place(a.process.pid, SERVER_CORE)
            else "no CPU pinning"
        )
        progress(f"  {NAME}: A at {a.port}, B at {b.port}; {placement}")
        rows = await throughput(ctx, a, b)
        rows += await delivery(ctx, a, b)
    finally:
        b.stop()
    for row in rows:
        if row.target is None:
            row.target = "report"
    return rows
