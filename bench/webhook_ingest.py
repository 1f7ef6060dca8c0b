"""Signed Shopify-style ``orders/create`` webhooks into supplygraph as fast as it takes them.

Every request is a new store order (unique order id and ``X-Shopify-Event-Id``) whose lines name
the webhook buyer's connected variants, except every 20th (5 %), which redelivers an event
already answered, byte for byte (the server must answer ``duplicate``). Value: webhooks answered
(202 ``accepted`` into the store inbox, or 200 ``duplicate``) per second; baseline:
``plain_starlette`` of the same run (the same requests sent the same way to a bare Starlette
JSON endpoint).

The inbox worker takes the accepted orders in meanwhile, on the same process. After the load
the benchmark waits until the buyer's order count, read through the API, equals the number
accepted (none lost, none twice), and reports ``webhook_ingest.taken_in``: orders taken in per
second from the start of the load until the inbox was empty, against ``write_floor`` of the same
run (a payment-shaped transaction written out with asyncpg: the physical limit), target
``TAKEN_IN_RATIO`` (issue 20: intake keeps pace with what the database can write).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter, deque
from datetime import UTC, datetime

from bench.common import (
    LoadStats,
    RawConnection,
    Req,
    Row,
    compared,
    load_rows,
    make_req,
    measure,
    progress,
)
from bench.context import BenchContext
from bench.seed import ADDRESS, SIZES, STORE_PRODUCT_ID, STORE_VARIANT_IDS
from integrations.stores.protocol import (
    HEADER_EVENT_ID,
    HEADER_HMAC,
    HEADER_SHOP_DOMAIN,
    HEADER_TOPIC,
    HEADER_TRIGGERED_AT,
    TOPIC_ORDERS_CREATE,
    sign,
)

NAME = "webhook_ingest"
REQUIRES = ("plain_starlette", "write_floor")
USES_DATABASE = True
MIN_RATIO = 0.2
TAKEN_IN_RATIO = 0.5  # orders taken in per second / write_floor's transactions per second
DUPLICATE_EVERY = 20
FIRST_ORDER_ID = 7_000_000


class StoreOrderWebhooks:
    """The workload: new signed orders, with every ``DUPLICATE_EVERY``-th a redelivery."""

    def __init__(self, path: str, secret: str) -> None:
        self.path, self.secret = path, secret
        self.ids = itertools.count(FIRST_ORDER_ID)
        self.sent = 0
        self.answered: deque[Req] = deque(maxlen=2_000)
        self.duplicates_sent = 0
        self.outcomes: Counter[str] = Counter()
        self.random = random.Random(1)

    def _order(self, order_id: int) -> bytes:
        lines = [
            {
                "id": order_id * 10 + k,
                "product_id": int(STORE_PRODUCT_ID),
                "variant_id": int(STORE_VARIANT_IDS[k]),
                "title": f"Tee {SIZES[k]}",
                "quantity": 1 + k,
                "price": "12.50",
            }
            for k in range(1 + order_id % 3)
        ]
        order = {
            "id": order_id,
            "name": f"#{order_id}",
            "currency": "USD",
            "created_at": datetime.now(UTC).isoformat(),
            "customer": {"first_name": "Ada", "last_name": "Lovelace"},
            "shipping_address": {**ADDRESS, "address2": None, "province": None},
            "line_items": lines,
        }
        return json.dumps(order, separators=(",", ":")).encode()

    def next_request(self) -> Req:
        self.sent += 1
        if self.sent % DUPLICATE_EVERY == 0 and self.answered:
            self.duplicates_sent += 1
            return self.random.choice(self.answered)
        order_id = next(self.ids)
        body = self._order(order_id)
        headers = {
            "content-type": "application/json",
            HEADER_HMAC: sign(body, self.secret),
            HEADER_EVENT_ID: f"bench-{order_id}",
            HEADER_TRIGGERED_AT: datetime.now(UTC).isoformat(),
            HEADER_TOPIC: TOPIC_ORDERS_CREATE,
            HEADER_SHOP_DOMAIN: "bench.myshopify.com",
        }
        return make_req("POST", self.path, headers, body)

    def observe(self, req: Req, status: int, body: bytes) -> bool:
        if status not in (200, 202):
            self.outcomes[f"HTTP {status}"] += 1
            return False
        if status == 202 and b'"accepted"' in body:
            self.outcomes["accepted"] += 1
            self.answered.append(req)
        elif b'"duplicate"' in body:
            self.outcomes["duplicate"] += 1
        else:
            self.outcomes["other"] += 1
        return True

    def summary(self) -> str:
        counted = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return f"{self.sent} sent ({self.duplicates_sent} redeliveries): {counted}"


async def _order_total(host: str, port: int, token: str) -> int:
    body = json.dumps({"query": "{ orderCounts { status count } }"}).encode()
    conn = RawConnection(host, port)
    try:
        status, answer = await conn.send(
            make_req(
                "POST",
                "/graphql",
                {"content-type": "application/json", "authorization": f"Bearer {token}"},
                body,
            )
        )
    finally:
        await conn.close()
    assert status == 200, answer[:300]
    return sum(c["count"] for c in json.loads(answer)["data"]["orderCounts"])


async def _taken_in(host: str, port: int, token: str, accepted: int, patience: float) -> int:
    """Wait until the buyer has ``accepted`` orders (or no progress for ``patience`` seconds)."""
    stored, last_change, clock = -1, time.perf_counter(), time.perf_counter
    while True:
        now_stored = await _order_total(host, port, token)
        if now_stored != stored:
            stored, last_change = now_stored, clock()
        if stored >= accepted or clock() - last_change > patience:
            return stored
        await asyncio.sleep(0.05)


async def run(ctx: BenchContext) -> list[Row]:
    server = await ctx.app_server()
    workload = StoreOrderWebhooks(
        f"/webhooks/stores/{ctx.data.webhook_store_id}/orders", ctx.data.webhook_secret
    )
    before = await _order_total(server.host, server.port, ctx.data.webhook_token)
    started = time.perf_counter()
    stats: LoadStats = await measure(NAME, server.host, server.port, workload, ctx.load)
    progress(f"  {NAME}: {workload.summary()}; waiting for the inbox to drain")
    accepted = workload.outcomes["accepted"]
    stored = await _taken_in(
        server.host, server.port, ctx.data.webhook_token, before + accepted, patience=30
    )
    seconds = time.perf_counter() - started
    taken = stored - before
    check = "" if taken == accepted else "  MISMATCH"
    progress(
        f"  {NAME}: {accepted} accepted, {taken} orders taken in after {seconds:.1f} s "
        f"({taken / seconds:.0f} orders/s){check}"
    )
    if taken != accepted:
        raise RuntimeError(f"{NAME}: {accepted} webhooks accepted but {taken} orders taken in")
    baseline = ctx.stats.get("plain_starlette")
    ctx.keep(NAME, NAME, "supplygraph", stats)
    rate = baseline.rate if baseline else None
    return [
        compared(NAME, stats.rate, "webhooks/s", rate, min_ratio=MIN_RATIO),
        *load_rows(NAME, stats, baseline),
        _taken_in_row(taken / seconds, ctx.write_floor),
    ]


def _taken_in_row(rate: float, write_floor: float | None) -> Row:
    """Orders taken in per second against the write floor; without one (SQLite: the floor is
    PostgreSQL's) the rate alone, with no target to miss."""
    name = f"{NAME}.taken_in"
    if write_floor is None:
        return Row(name, rate, "orders/s")
    return compared(name, rate, "orders/s", write_floor, min_ratio=TAKEN_IN_RATIO)
