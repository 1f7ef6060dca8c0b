"""The store webhook receiver: ``POST /webhooks/stores/{storeId}/orders`` (Shopify conventions).

Checked in this order, and nothing is written unless all pass: the signature
(``X-Shopify-Hmac-Sha256``, constant-time; bad or missing → 401), the event id and trigger time
(missing or malformed → 400), the trigger time's age (older than the replay window → 200
``stale``, ignored), the body (malformed → 400). A redelivered event or an order already taken
in answers 200 ``duplicate``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.models.orders import WebhookReceipt
from domain.models.stores import Store
from domain.order_intake import ingest_store_order
from integrations.stores.protocol import StorePayloadError, parse_order, verify

log = logging.getLogger(__name__)
REPLAY_WINDOW = timedelta(hours=48)


def _answer(status: int, outcome: str, **extra: str) -> JSONResponse:
    return JSONResponse({"status": outcome, **extra}, status_code=status)


async def receive_store_order(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        store_id = int(request.path_params["store_id"])
    except ValueError:
        return _answer(401, "unauthorized")
    store = await Store.get_or_none(id=store_id)
    # an unknown store and a bad signature look the same to the caller
    if store is None or not verify(
        body, store.webhook_secret, request.headers.get("x-shopify-hmac-sha256")
    ):
        return _answer(401, "unauthorized")
    event_id = request.headers.get("x-shopify-event-id", "").strip()
    triggered = request.headers.get("x-shopify-triggered-at", "")
    try:
        triggered_at = datetime.fromisoformat(triggered.replace("Z", "+00:00"))
        if triggered_at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        return _answer(400, "invalid", error="X-Shopify-Triggered-At must be ISO 8601 with zone")
    if not event_id or len(event_id) > 100:
        return _answer(400, "invalid", error="X-Shopify-Event-Id is required")
    if datetime.now(UTC) - triggered_at > REPLAY_WINDOW:
        log.info("stale store webhook %s for store %s ignored", event_id, store.id)
        return _answer(200, "stale")
    try:
        data = parse_order(json.loads(body))
    except (ValueError, StorePayloadError) as error:
        return _answer(400, "invalid", error=str(error)[:300])
    if await WebhookReceipt.exists(store_id=store.id, event_id=event_id):
        return _answer(200, "duplicate")
    result = await ingest_store_order(store=store, data=data, event_id=event_id)
    return _answer(200, "created" if result.created else "duplicate", orderId=str(result.order.id))
