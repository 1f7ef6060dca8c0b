"""The store webhook inbox: events accepted at once, orders taken in by a background worker.

``accept`` is all a webhook request does after its checks: one INSERT of the body, whose unique
(store, event id) makes a redelivery a duplicate. A worker then leases pending rows (a
conditional UPDATE, as for warehouse tasks, so two instances never take the same row), takes
each order in through ``order_intake.ingest_store_order`` and marks the row DONE with the
order's id. Taking in is idempotent (an order is unique per store order id), so a row run twice
after a crash still makes one order. A row that keeps failing is retried with a doubling delay
and left FAILED, with the error, after the last attempt.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from domain.leases import lease_free
from domain.models.orders import InboxState, WebhookReceipt


async def accept(*, store_id: int, event_id: str, body: bytes) -> bool:
    """Queue a checked webhook body; False when this event was accepted before."""
    try:
        await WebhookReceipt.create(
            store_id=store_id,
            event_id=event_id[:100],
            payload=body.decode(),
            state=InboxState.PENDING,
            due_at=datetime.now(UTC),
        )
    except IntegrityError:
        return False
    return True


async def claim_due(*, owner: str, lease_seconds: float, limit: int) -> list[WebhookReceipt]:
    """Take the lease of up to ``limit`` due rows, oldest first (three statements)."""
    now = datetime.now(UTC)
    ids = (
        await WebhookReceipt.filter(lease_free(now), state=InboxState.PENDING, due_at__lte=now)
        .order_by("id")
        .limit(limit)
        .values_list("id", flat=True)
    )
    if not ids:
        return []
    await WebhookReceipt.filter(lease_free(now), id__in=list(ids), state=InboxState.PENDING).update(
        lease_owner=owner,
        lease_until=now + timedelta(seconds=lease_seconds),
        attempts=F("attempts") + 1,
    )
    return (
        await WebhookReceipt.filter(id__in=list(ids), state=InboxState.PENDING, lease_owner=owner)
        .order_by("id")
        .all()
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


async def pending_count() -> int:
    return await WebhookReceipt.filter(state=InboxState.PENDING).count()
