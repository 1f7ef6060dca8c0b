"""The store webhook receiver: ``POST /webhooks/stores/{storeId}/orders`` (Shopify conventions).

Checked in this order, and nothing is written unless all pass: the signature
(``X-Shopify-Hmac-Sha256``, constant-time; bad or missing → 401), the event id and trigger time
(missing or malformed → 400), the trigger time (more than ``CLOCK_SKEW`` ahead of our clock →
400; older than the replay window → 200 ``stale``, ignored), the body (malformed → 400). Then
the body goes to the store's inbox (``domain.stores.inbox``) and the answer is 202
``accepted``: the order is taken in by the inbox worker moments later (``orderCreated`` events
and the ``orders`` query show it). A redelivered event answers 200 ``duplicate``; an order
delivered again under a new event id is still taken in once (orders are unique per store order
id).

Concurrent requests share their INSERT (``domain.stores.inbox.InboxIntake``, a group commit), and a
store's webhook secret is kept in memory for ``SECRET_TTL`` seconds once read (secrets never
change after a store is connected; a store removed from the database is refused after at most
that long, and anything accepted meanwhile fails in the inbox, naming the reason). A database
that does not answer gets 503, which the store retries.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import orjson
from starlette.requests import Request
from starlette.responses import Response

from domain.db import DATABASE_UNAVAILABLE
from domain.stores import inbox as store_inbox
from domain.stores.models import Store
from domain.validation import is_key
from integrations.stores.protocol import StorePayloadError, parse_order, verify

log = logging.getLogger(__name__)
REPLAY_WINDOW = timedelta(hours=48)
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of our clock a store's may run
SECRET_TTL = 30.0
_secrets: dict[int, tuple[str, float]] = {}  # store id → (webhook secret, read at)


def _answer(status: int, outcome: str, **extra: str) -> Response:
    return Response(
        orjson.dumps({"status": outcome, **extra}),
        status_code=status,
        media_type="application/json",
    )


async def _webhook_secret(store_id: int) -> str | None:
    """The store's webhook secret, None for no such store (only found secrets are kept)."""
    now = time.monotonic()
    kept = _secrets.get(store_id)
    if kept is not None and now - kept[1] < SECRET_TTL:
        return kept[0]
    store = await Store.get_or_none(id=store_id)
    if store is None:
        _secrets.pop(store_id, None)
        return None
    if len(_secrets) > 10_000:
        _secrets.clear()
    _secrets[store_id] = (store.webhook_secret, now)
    return store.webhook_secret


async def receive_store_order(request: Request) -> Response:
    try:
        return await _receive(request)
    except DATABASE_UNAVAILABLE as error:
        log.error("store webhook refused, database unavailable: %s", error)
        return _answer(503, "unavailable")


async def _receive(request: Request) -> Response:
    body = await request.body()
    try:
        store_id = int(request.path_params["store_id"])
    except ValueError:
        return _answer(401, "unauthorized")
    secret = await _webhook_secret(store_id) if is_key(store_id) else None
    # an unknown store and a bad signature look the same to the caller
    if secret is None or not verify(body, secret, request.headers.get("x-shopify-hmac-sha256")):
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
    now = datetime.now(UTC)
    if triggered_at - now > CLOCK_SKEW:  # a captured body re-signed for the future: refused
        return _answer(400, "invalid", error="X-Shopify-Triggered-At is ahead of our clock")
    if now - triggered_at > REPLAY_WINDOW:
        log.info("stale store webhook %s for store %s ignored", event_id, store_id)
        return _answer(200, "stale")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:  # the parser's own words name its internals, not the API's
        return _answer(400, "invalid", error="the body is not JSON: a store order object")
    try:
        parse_order(data)  # a malformed body is refused now, not in the inbox
    except (ValueError, StorePayloadError) as error:
        return _answer(400, "invalid", error=str(error)[:300])
    intake: store_inbox.InboxIntake | None = getattr(request.app.state, "inbox_intake", None)
    if intake is not None:
        new = await intake.accept(store_id=store_id, event_id=event_id, body=body)
    else:
        new = await store_inbox.accept(store_id=store_id, event_id=event_id, body=body)
    if not new:
        return _answer(200, "duplicate")
    worker = getattr(request.app.state, "store_inbox", None)
    if worker is not None:
        worker.wake()
    return _answer(202, "accepted")
