"""Pulling products and orders from a buyer's store, and pushing tracking back to it."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from domain.access import Viewer, require_buyer
from domain.errors import DomainError, ErrorCode
from domain.leases import LEASE_SECONDS, RowLeases
from domain.orders.fulfilment import claim_tracking_push, record_tracking_sync
from domain.orders.intake import ingest_store_order
from domain.orders.models import Order
from domain.stores.commands import record_sync, upsert_store_products
from domain.stores.models import Store
from domain.stores.queries import store_of_buyer
from domain.work_due import next_tracking_due, tracking_push_due
from integrations.background import WakeableLoop
from integrations.heartbeat import Heartbeat, LeaseLapsed
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

    Woken when a shipment made a push due (in this process, or on PostgreSQL in another one:
    ``integrations.wakeups``); after a round it sleeps until the first failed push is due again,
    or until its safety sweep (``poll_interval`` seconds).

    Each push is claimed by one instance (``claim_tracking_push``) under a short lease renewed
    while it is made (``integrations.heartbeat``); a stopping pusher gives its leases back.
    """

    name = "tracking pusher"
    BATCH = 100
    RETRY_BUDGET = 30.0  # seconds after which a push's client schedules no more retries

    def __init__(
        self,
        *,
        poll_interval: float = 30.0,
        base_delay: float = 1.0,
        max_attempts: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ):
        super().__init__(sweep_interval=poll_interval)
        self.owner = f"tracking-{uuid.uuid4().hex[:12]}"
        self.heartbeat = Heartbeat(
            RowLeases(
                "tracking pushes",
                Order,
                self.owner,
                owner_field="tracking_lease_owner",
                until_field="tracking_lease_until",
            ),
            seconds=lease_seconds,
        )
        self._base_delay = base_delay
        self._max_attempts = max_attempts
        self._transport = transport

    async def stop(self) -> None:
        """Make no more pushes; give back the lease of one under way."""
        await super().stop()
        await self.heartbeat.close()

    async def round(self) -> None:
        pushed = self.BATCH
        while pushed >= self.BATCH:  # a full batch: more may be due
            pushed = await self.push_due()

    async def next_due(self) -> datetime | None:
        return await next_tracking_due(base_delay=self._base_delay, max_attempts=self._max_attempts)

    async def push_due(self) -> int:
        """Push every order whose tracking is due, up to one batch, each once it is claimed
        (another instance may be pushing it: then it is left to that one); returns how many
        were found due."""
        due = (
            await Order.filter(
                tracking_push_due(
                    datetime.now(UTC),
                    base_delay=self._base_delay,
                    max_attempts=self._max_attempts,
                )
            )
            .order_by("id")
            .limit(self.BATCH)
        )
        async with self.heartbeat.holding():
            for order in due:
                claimed_at = time.monotonic()
                if await claim_tracking_push(
                    order_id=order.id,
                    owner=self.owner,
                    now=datetime.now(UTC),
                    until=self.heartbeat.until(),
                    base_delay=self._base_delay,
                    max_attempts=self._max_attempts,
                ):
                    await self.push(order, claimed_at=claimed_at)
        return len(due)

    async def push(self, order: Order, *, claimed_at: float) -> None:
        """Push the order's tracking, claimed at ``claimed_at`` (``time.monotonic()``): no
        call once its lease may have lapsed (the push may be another instance's by then)."""
        store = await Store.get(id=order.store_id)
        try:
            async with StoreClient(
                base_url=store.api_url,
                access_token=store.access_token,
                transport=self._transport,
                budget=self.RETRY_BUDGET,
                before_attempt=functools.partial(self.heartbeat.check, claimed_at),
            ) as client:
                await client.create_fulfillment(
                    order_id=order.store_order_id or "",
                    carrier=order.carrier or "",
                    tracking_number=order.tracking_number or "",
                    idempotency_key=f"supplygraph-{order.id}-{order.tracking_number}",
                )
        except LeaseLapsed as lapsed:
            log.info("tracking push of order %s stopped: %s", order.number, lapsed)
            return
        except (StoreApiError, ValueError) as error:
            log.warning("tracking push of order %s failed: %s", order.number, error)
            await record_tracking_sync(
                order_id=order.id, ok=False, error=str(error), owner=self.owner
            )
            return
        await record_tracking_sync(order_id=order.id, ok=True, owner=self.owner)
