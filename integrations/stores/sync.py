"""Pulling products and orders from a buyer's store, and pushing tracking back to it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from domain.access import Viewer, require_buyer
from domain.errors import DomainError, ErrorCode
from domain.orders.fulfilment import record_tracking_sync
from domain.orders.intake import ingest_store_order
from domain.orders.models import Order, TrackingSync
from domain.stores.commands import record_sync, upsert_store_products
from domain.stores.models import Store
from domain.stores.queries import store_of_buyer
from integrations.background import WakeableLoop
from integrations.stores.client import StoreApiError, StoreClient
from integrations.stores.protocol import StorePayloadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    store: Store
    products_synced: int
    orders_seen: int
    orders_created: int


def client_for(store: Store, transport: httpx.AsyncBaseTransport | None = None) -> StoreClient:
    return StoreClient(base_url=store.api_url, access_token=store.access_token, transport=transport)


async def sync_store(
    *, viewer: Viewer, store_id: int, transport: httpx.AsyncBaseTransport | None = None
) -> SyncResult:
    """Pull the store's products, then its orders after the last one seen (idempotent)."""
    require_buyer(viewer)
    store = await store_of_buyer(viewer, store_id)
    seen = created = 0
    try:
        async with client_for(store, transport) as client:
            products = await upsert_store_products(
                store=store, products=await client.list_products(), actor_user_id=viewer.user_id
            )
            async for data in client.iter_all_orders(since_id=store.last_order_external_id):
                result = await ingest_store_order(store=store, data=data)
                seen += 1
                created += int(result.created)
                store.last_order_external_id = data.external_id
    except (StoreApiError, StorePayloadError) as error:
        raise DomainError(
            ErrorCode.UPSTREAM_FAILED, f"The store answered: {error}", field="storeId"
        ) from error
    finally:
        await record_sync(store, actor_user_id=viewer.user_id)
    return SyncResult(
        store=store, products_synced=products, orders_seen=seen, orders_created=created
    )


class TrackingPusher(WakeableLoop):
    """Pushes carrier and tracking numbers of shipped store orders to the stores.

    Each push is retried by the client for transient failures; a push that still fails is tried
    again ``base_delay`` x 2^(failures - 1) seconds after the last failure, up to
    ``max_attempts`` in all. The state and the last error are on the order (``trackingSync``).
    """

    name = "tracking pusher"

    def __init__(
        self,
        *,
        poll_interval: float = 2.0,
        base_delay: float = 1.0,
        max_attempts: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(poll_interval=poll_interval)
        self._base_delay = base_delay
        self._max_attempts = max_attempts
        self._transport = transport

    async def round(self) -> None:
        await self.push_due()

    async def push_due(self) -> int:
        """Push every order whose tracking is due; returns how many were tried."""
        now = datetime.now(UTC)
        due = (
            await Order.filter(
                tracking_sync__in=[TrackingSync.PENDING, TrackingSync.FAILED],
                tracking_sync_attempts__lt=self._max_attempts,
                store_id__isnull=False,
            )
            .order_by("id")
            .limit(100)
        )
        tried = 0
        for order in due:
            wait = timedelta(seconds=self._base_delay * 2 ** (order.tracking_sync_attempts - 1))
            if order.tracking_sync is TrackingSync.FAILED and order.updated_at + wait > now:
                continue
            tried += 1
            await self.push(order)
        return tried

    async def push(self, order: Order) -> None:
        store = await Store.get(id=order.store_id)
        try:
            async with client_for(store, self._transport) as client:
                await client.create_fulfillment(
                    order_id=order.store_order_id or "",
                    carrier=order.carrier or "",
                    tracking_number=order.tracking_number or "",
                    idempotency_key=f"supplygraph-{order.id}-{order.tracking_number}",
                )
        except (StoreApiError, ValueError) as error:
            log.warning("tracking push of order %s failed: %s", order.number, error)
            await record_tracking_sync(order_id=order.id, ok=False, error=str(error))
            return
        await record_tracking_sync(order_id=order.id, ok=True)
