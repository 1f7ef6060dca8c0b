"""The background worker that takes accepted store webhooks in (``domain.stores.inbox``).

The receiver wakes it on this instance; every instance also looks for due rows every
``poll_interval`` seconds, so rows accepted elsewhere, retried, or left by an instance that died
(its lease expires) are taken in too.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from domain.orders.intake import ingest_store_order
from domain.orders.models import InboxState, WebhookReceipt
from domain.stores import inbox as store_inbox
from domain.stores.models import Store
from integrations.background import WakeableLoop
from integrations.stores.protocol import StorePayloadError, parse_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboxSettings:
    poll_interval: float = 1.0
    batch: int = 50
    lease_seconds: float = 60.0
    max_attempts: int = 5
    retry_delay: float = 2.0


class StoreInboxWorker(WakeableLoop):
    name = "store inbox"

    def __init__(self, settings: InboxSettings) -> None:
        super().__init__(poll_interval=settings.poll_interval)
        self.settings = settings
        self.owner = f"inbox-{uuid.uuid4().hex[:12]}"

    async def round(self) -> None:
        taken = self.settings.batch
        while taken >= self.settings.batch:  # a full batch: more may be waiting
            taken = await self.run_due()

    async def run_due(self) -> int:
        """Take in every row due now, up to one batch; returns how many were leased."""
        rows = await store_inbox.claim_due(
            owner=self.owner, lease_seconds=self.settings.lease_seconds, limit=self.settings.batch
        )
        for row in rows:
            await self.take_in(row)
        return len(rows)

    async def take_in(self, row: WebhookReceipt) -> InboxState:
        """One leased row's order taken in; returns the row's state after this run."""
        store = await Store.get_or_none(id=row.store_id)
        if store is None:
            await store_inbox.finish(row, failed=True, error="the store was disconnected")
            return InboxState.FAILED
        try:
            data = parse_order(json.loads(row.payload or ""))
        except (ValueError, StorePayloadError) as error:  # checked on receipt: a guard only
            await store_inbox.finish(row, failed=True, error=f"malformed body: {error}")
            return InboxState.FAILED
        try:
            result = await ingest_store_order(store=store, data=data)
        except Exception as error:
            log.exception("taking in webhook %s of store %s failed", row.event_id, store.id)
            reason = str(error) or type(error).__name__
            if row.attempts >= self.settings.max_attempts:
                await store_inbox.finish(row, failed=True, error=reason)
                return InboxState.FAILED
            delay = self.settings.retry_delay * 2 ** (row.attempts - 1)
            await store_inbox.retry_later(row, delay=delay, error=reason)
            return InboxState.PENDING
        await store_inbox.finish(row, order_id=result.order.id)
        return InboxState.DONE
