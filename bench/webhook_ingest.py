"""Signed Shopify-style ``orders/create`` webhooks into supplygraph as fast as it takes them.

Every request is a new store order (unique order id and ``X-Shopify-Event-Id``) whose lines name
the webhook buyer's connected variants, except every 20th (5 %), which redelivers an event
already answered, byte for byte (the server must answer ``duplicate``). Value: deliveries
answered 200 per second; baseline: ``plain_starlette`` of the same run (the same requests sent
the same way to a bare Starlette JSON endpoint). Afterwards the buyer's order count, read through
the API, must equal the number of orders answered ``created``.
"""

from __future__ import annotations

import itertools
import json
import random
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
REQUIRES = ("plain_starlette",)
USES_DATABASE = True
MIN_RATIO = 0.2
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
        if status != 200:
            self.outcomes[f"HTTP {status}"] += 1
            return False
        if b'"created"' in body:
            self.outcomes["created"] += 1
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


async def run(ctx: BenchContext) -> list[Row]:
    server = await ctx.app_server()
    workload = StoreOrderWebhooks(
        f"/webhooks/stores/{ctx.data.webhook_store_id}/orders", ctx.data.webhook_secret
    )
    stats: LoadStats = await measure(NAME, server.host, server.port, workload, ctx.load)
    progress(f"  {NAME}: {workload.summary()}")
    stored = await _order_total(server.host, server.port, ctx.data.webhook_token)
    created = workload.outcomes["created"]
    check = "" if stored == created else "  MISMATCH"
    progress(
        f"  {NAME}: orders stored for the webhook buyer {stored}, answered created {created}{check}"
    )
    baseline = ctx.stats.get("plain_starlette")
    ctx.keep(NAME, NAME, "supplygraph", stats)
    rate = baseline.rate if baseline else None
    return [
        compared(NAME, stats.rate, "orders/s", rate, min_ratio=MIN_RATIO),
        *load_rows(NAME, stats, baseline),
    ]
