"""Tracking pushes: a shipped order of a buyer's store has its carrier and tracking number
pushed to that store by the tracking pusher (``integrations/stores/sync.py``), which reads the
orders whose ``tracking_sync`` is PENDING or FAILED. Nothing is queued elsewhere: the order's
columns are the work list, and ``TRACKING_TOPIC`` wakes the pusher when the work commits."""

from __future__ import annotations

from domain.db import notify_after_commit
from domain.orders.models import Order, TrackingSync

TRACKING_TOPIC = "tracking_pushes"  # commit listeners woken when a tracking push became due


async def wake_tracking_push(order: Order, *, actor_user_id: int | None) -> None:
    """Lifecycle hook on SHIPPED: the command set ``tracking_sync`` PENDING for an order of a
    store, so the pusher is woken once the transaction commits."""
    if order.tracking_sync is TrackingSync.PENDING:
        notify_after_commit(TRACKING_TOPIC)
