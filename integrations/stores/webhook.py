"""The store webhook receiver: ``POST /webhooks/stores/{storeId}/orders`` (Shopify conventions).

Checked in this order, and nothing is written unless all pass: the signature
(``X-Shopify-Hmac-Sha256``, constant-time; bad or missing → 401), the event id and trigger time
(missing or malformed → 400), the trigger time's age (older than the replay window → 200
``stale``, ignored), the body (malformed → 400). Then the body goes to the store's inbox
(``domain.store_inbox``) and the answer is 202 ``accepted``: the order is taken in by the inbox
worker moments later (``orderCreated`` events and the ``orders`` query show it). A redelivered
event answers 200 ``duplicate``; an order delivered again under a new event id is still taken
in once (orders are unique per store order id).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain import store_inbox
from domain.models.stores import Store
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
        parse_order(json.loads(body))  # a malformed body is refused now, not in the inbox
    except (ValueError, StorePayloadError) as error:
        return _answer(400, "invalid", error=str(error)[:300])
    if not await store_inbox.accept(store_id=store.id, event_id=event_id, body=body):
        return _answer(200, "duplicate")
    worker = getattr(request.app.state, "store_inbox", None)
    if worker is not None:
        worker.wake()
    return _answer(202, "accepted")
