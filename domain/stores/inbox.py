"""The store webhook inbox: events accepted at once, orders taken in by a background worker.

``accept`` is all a webhook request does after its checks: an INSERT of the body, whose unique
(store, event id) makes a redelivery a duplicate. Under load, ``InboxIntake`` commits the bodies
of concurrent requests together: while one INSERT is in flight the next requests queue, and the
queue goes in as one statement, each request answered only once its row is committed.

A worker then leases a batch of due rows (a conditional UPDATE, as for warehouse tasks, so two
instances never take the same row; on PostgreSQL one statement that skips rows another instance
is leasing at that moment), takes their orders in together through
``domain.orders.intake.ingest_store_orders`` and marks the rows DONE with their orders' ids in one
statement (``finish_all``). Taking in is idempotent (an order is unique per store order id), so
a row run twice after a crash still makes one order. A row that keeps failing is retried with a
doubling delay and left FAILED, with the error, after the last attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from domain.db import transaction
from domain.orders.models import InboxState, WebhookReceipt
from domain.persistence.inbox import claim_receipts, finish_done, insert_receipts

Event = tuple[int, str, str]  # store id, event id, body


async def accept(*, store_id: int, event_id: str, body: bytes) -> bool:
    """Queue a checked webhook body; False when this event was accepted before."""
    return bool(await insert_new([(store_id, event_id[:100], body.decode())]))


async def insert_new(events: Sequence[Event]) -> set[tuple[int, str]]:
    """Insert these events as PENDING in one statement; returns the (store, event id) keys that
    were new. Redeliveries (keys already present, or repeated within ``events``) are skipped."""
    unique = {(store, event): body for store, event, body in events}
    if not unique:
        return set()
    receipts = [(store, event, body) for (store, event), body in unique.items()]
    return await insert_receipts(receipts, datetime.now(UTC))


def _retrieved(future: asyncio.Future[bool]) -> None:
    if not future.cancelled():
        future.exception()


class InboxIntake:
    """Group commit for the webhook receiver: concurrent ``accept`` calls share one INSERT.

    Nothing waits for a timer: the first caller starts a flush, callers arriving while it runs
    queue, and the flush takes the whole queue (up to ``batch``) as soon as its INSERT returns.
    Each caller learns whether its event was new once its row is committed; a failed INSERT is
    raised in every caller of that batch.
    """

    def __init__(self, *, batch: int = 500) -> None:
        self.batch = batch
        self._queue: list[tuple[Event, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def accept(self, *, store_id: int, event_id: str, body: bytes) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # an abandoned caller's failure is not reported
        self._queue.append(((store_id, event_id[:100], body.decode()), future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await asyncio.shield(future)  # a caller that goes away does not cancel the batch

    async def _flush(self) -> None:
        try:
            while self._queue:
                taken, self._queue = self._queue[: self.batch], self._queue[self.batch :]
                try:
                    new = await insert_new([event for event, _ in taken])
                except Exception as error:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(error)
                    continue
                seen: set[tuple[int, str]] = set()
                for (store, event, _), future in taken:
                    key = (store, event)
                    first = (
                        key in new and key not in seen
                    )  # a repeat within the batch is a duplicate
                    seen.add(key)
                    if not future.done():
                        future.set_result(first)
        finally:
            self._flushing = None


async def claim_due(*, owner: str, lease_seconds: float, limit: int) -> list[WebhookReceipt]:
    """Take the lease of up to ``limit`` due rows, oldest first (one statement on PostgreSQL)."""
    return await claim_receipts(
        owner=owner, lease_seconds=lease_seconds, limit=limit, now=datetime.now(UTC)
    )


async def retry_later(receipt: WebhookReceipt, *, delay: float, error: str) -> None:
    """Give the lease back; the row is due again after ``delay`` seconds."""
    await WebhookReceipt.filter(
        id=receipt.id, state=InboxState.PENDING, lease_owner=receipt.lease_owner
    ).update(
        due_at=datetime.now(UTC) + timedelta(seconds=delay),
        lease_owner=None,
        lease_until=None,
        last_error=error[:500],
    )


async def finish(
    receipt: WebhookReceipt,
    *,
    order_id: int | None = None,
    failed: bool = False,
    error: str | None = None,
) -> None:
    await WebhookReceipt.filter(
        id=receipt.id, state=InboxState.PENDING, lease_owner=receipt.lease_owner
    ).update(
        state=InboxState.FAILED if failed else InboxState.DONE,
        order_id=order_id,
        processed_at=datetime.now(UTC),
        lease_owner=None,
        lease_until=None,
        last_error=(error or None) and error[:500],
    )


async def finish_all(done: Sequence[tuple[WebhookReceipt, int]]) -> int:
    """Mark leased rows DONE with their orders' ids, as ``finish`` does one; a row whose lease
    was lost meanwhile is left to its new holder. Returns how many were marked."""
    if not done:
        return 0
    marked = [(row.id, row.lease_owner, order_id) for row, order_id in done]
    async with transaction():  # one statement on PostgreSQL, one commit on SQLite
        return await finish_done(marked, datetime.now(UTC))


async def pending_count() -> int:
    return await WebhookReceipt.filter(state=InboxState.PENDING).count()
