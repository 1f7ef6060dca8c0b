"""The background worker that takes accepted store webhooks in (``domain.stores.inbox``).

Rows are taken in by the batch (one claim, one intake transaction, one statement marking them
done), each row failing alone. The receiver wakes it on this instance, and on PostgreSQL rows
written by other processes wake it (``integrations.wakeups``). After a round it sleeps until the
first row it knows of falls due (a retry, the lease of an instance that died runs out), or until
its safety sweep (``poll_interval`` seconds) for anything else. The rows it holds are under a
short lease renewed while they are taken in (``integrations.heartbeat``) and given back when it
stops.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from domain.leases import LEASE_SECONDS, RowLeases
from domain.orders.intake import Ingested, ingest_store_orders
from domain.orders.models import InboxState, WebhookReceipt
from domain.stores import inbox as store_inbox
from domain.stores.data import StoreOrderData
from domain.stores.models import Store
from domain.work_due import next_inbox_due
from integrations.background import WakeableLoop
from integrations.heartbeat import Heartbeat
from integrations.stores.protocol import StorePayloadError, parse_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboxSettings:
    poll_interval: float = 30.0  # the safety sweep: seconds between rounds nothing woke
    batch: int = 200  # rows a round claims and takes in together
    lease_seconds: float = LEASE_SECONDS  # renewed every third of it while rows are taken in
    max_attempts: int = 5
    retry_delay: float = 2.0


class StoreInboxWorker(WakeableLoop):
    name = "store inbox"

    def __init__(self, settings: InboxSettings) -> None:
        super().__init__(sweep_interval=settings.poll_interval)
        self.settings = settings
        self.owner = f"inbox-{uuid.uuid4().hex[:12]}"
        self.heartbeat = Heartbeat(
            RowLeases(
                "store inbox", WebhookReceipt, self.owner, held={"state": InboxState.PENDING}
            ),
            seconds=settings.lease_seconds,
        )

    async def stop(self) -> None:
        """Take no more rows; give back the leases of rows not taken in yet."""
        await super().stop()
        await self.heartbeat.close()

    async def round(self) -> None:
        taken = self.settings.batch
        while taken >= self.settings.batch:  # a full batch: more may be waiting
            taken = await self.run_due()

    async def next_due(self) -> datetime | None:
        return await next_inbox_due()

    async def run_due(self) -> int:
        """Take in every row due now, up to one batch; returns how many were leased."""
        async with self.heartbeat.holding():
            rows = await store_inbox.claim_due(
                owner=self.owner,
                lease_seconds=self.settings.lease_seconds,
                limit=self.settings.batch,
            )
            if rows:
                await self.take_in_all(rows)
        return len(rows)

    async def take_in(self, row: WebhookReceipt) -> InboxState:
        """One leased row's order taken in (a batch of one); returns the row's state after."""
        return (await self.take_in_all([row]))[row.id]

    async def take_in_all(self, rows: Sequence[WebhookReceipt]) -> dict[int, InboxState]:
        """Leased rows' orders taken in together; each row's state after this run, by row id.

        A row whose store is gone or whose body does not parse fails alone, and so does one
        whose order's rules fail; the others are written in one transaction. If that write
        fails, each row is tried alone, so one bad row does not hold the others back.
        """
        states: dict[int, InboxState] = {}
        stores = await connected_stores({row.store_id for row in rows})
        ready: list[tuple[WebhookReceipt, Store, StoreOrderData]] = []
        for row in rows:
            store = stores.get(row.store_id)
            if store is None:
                await store_inbox.finish(row, failed=True, error="the store was disconnected")
                states[row.id] = InboxState.FAILED
                continue
            try:
                data = parse_order(orjson.loads(row.payload or ""))
            except (ValueError, StorePayloadError) as error:  # checked on receipt: a guard only
                await store_inbox.finish(row, failed=True, error=f"malformed body: {error}")
                states[row.id] = InboxState.FAILED
                continue
            ready.append((row, store, data))
        if not ready:
            return states
        try:
            outcomes = await ingest_store_orders([(store, data) for _, store, data in ready])
        except Exception as error:
            if len(ready) == 1:  # alone already: the failure is the row's
                outcomes = [error]
            else:
                log.exception("taking in %d store webhooks together failed: one by one", len(ready))
                outcomes = [await self._alone(store, data) for _, store, data in ready]
        done: list[tuple[WebhookReceipt, int]] = []
        for (row, store, _), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, Exception):
                states[row.id] = await self._failed(row, store, outcome)
            else:
                done.append((row, outcome.order.id))
                states[row.id] = InboxState.DONE
        await store_inbox.finish_all(done)
        return states

    async def _alone(self, store: Store, data: StoreOrderData) -> Ingested | Exception:
        """One order taken in as a batch of its own; its failure returned, not raised."""
        try:
            [outcome] = await ingest_store_orders([(store, data)])
        except Exception as error:
            return error
        return outcome

    async def _failed(self, row: WebhookReceipt, store: Store, error: Exception) -> InboxState:
        """A row whose order could not be taken in: due again after a doubling delay, or FAILED
        with the error after the last attempt."""
        log.error(
            "taking in webhook %s of store %s failed",
            row.event_id,
            store.id,
            exc_info=(type(error), error, error.__traceback__),
        )
        reason = str(error) or type(error).__name__
        if row.attempts >= self.settings.max_attempts:
            await store_inbox.finish(row, failed=True, error=reason)
            return InboxState.FAILED
        delay = self.settings.retry_delay * 2 ** (row.attempts - 1)
        await store_inbox.retry_later(row, delay=delay, error=reason)
        return InboxState.PENDING


async def connected_stores(ids: set[int]) -> dict[int, Store]:
    """The stores of these ids that still exist, by id (one statement)."""
    return {store.id: store for store in await Store.filter(id__in=sorted(ids))}
