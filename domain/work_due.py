"""When the background work kept in the database next falls due.

The background loops (``integrations.background.WakeableLoop``) sleep until they are woken or
until the work they know of falls due, instead of looking every second. After a round a loop
asks here when the first row it would take is due: a retry put off (``due_at``), a lease held by
another instance that runs out (``lease_until``: the instance may have died), a failed tracking
push waiting out its delay. Rows that are due already answer "now"; no row answers None (the
loop sleeps until woken, or until its safety sweep).

Each answer reads the rows the loop would claim, and only those: the work tables' indexes on
``(state, due_at)`` for the inbox and the warehouse tasks; for tracking pushes, on PostgreSQL
the partial index of migration 0015 (SQLite scans the orders: a loop asks after its rounds,
which come when woken or at its sweep, never on a timer of its own).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tortoise.expressions import Q
from tortoise.functions import Min
from tortoise.models import Model

from domain.distribution.models import TaskState, WarehouseTask
from domain.leases import lease_free
from domain.orders.models import InboxState, Order, TrackingSync, WebhookReceipt


class WorkKind(StrEnum):
    """The kinds of background work, as the triggers of migration 0015 name them (and what
    wakes their loops: ``integrations.wakeups``)."""

    OUTBOX = "outbox"  # events to number and publish
    INBOX = "inbox"  # store webhooks to take in
    WAREHOUSE_TASK = "warehouse_task"  # pushes and withdraws for third-party warehouses
    TRACKING = "tracking"  # tracking numbers to push to stores


async def _next_leased(model: type[Model], pending: object) -> datetime | None:
    """The earliest moment a PENDING row of ``model`` can be claimed: its ``due_at`` if nobody
    holds it, else the end of its lease."""
    now = datetime.now(UTC)
    free = (
        await model.filter(lease_free(now), state=pending, due_at__isnull=False)
        .order_by("due_at")
        .first()
        .values_list("due_at", flat=True)
    )
    held = (
        await model.filter(state=pending, lease_until__gte=now)
        .order_by("lease_until")
        .first()
        .values_list("lease_until", flat=True)
    )
    return min((t for t in (free, held) if isinstance(t, datetime)), default=None)


async def next_inbox_due() -> datetime | None:
    """When the first store webhook waiting in the inbox can be taken in."""
    return await _next_leased(WebhookReceipt, InboxState.PENDING)


async def next_task_due() -> datetime | None:
    """When the first warehouse task can be run."""
    return await _next_leased(WarehouseTask, TaskState.PENDING)


def _retry_delay(base_delay: float, failures: int) -> timedelta:
    return timedelta(seconds=base_delay * 2 ** (failures - 1))


def _tracking_open(max_attempts: int) -> Q:
    """Orders of a store whose tracking push is still to be made: PENDING, or FAILED with
    attempts left (migration 0015's partial index holds the PENDING and FAILED ones)."""
    return Q(
        tracking_sync__in=[TrackingSync.PENDING, TrackingSync.FAILED],
        tracking_sync_attempts__lt=max_attempts,
        store_id__isnull=False,
    )


def tracking_push_due(now: datetime, *, base_delay: float, max_attempts: int) -> Q:
    """Orders whose tracking push is due at ``now`` and not being made by an instance (its
    lease free): PENDING, or FAILED at least ``base_delay`` x 2^(failures - 1) seconds ago (the
    order's last change is the failure)."""
    waited = Q(tracking_sync=TrackingSync.PENDING)
    for failures in range(1, max_attempts):
        waited |= Q(
            tracking_sync=TrackingSync.FAILED,
            tracking_sync_attempts=failures,
            updated_at__lte=now - _retry_delay(base_delay, failures),
        )
    return Q(_tracking_open(max_attempts), _tracking_free(now), waited)


def _tracking_free(now: datetime) -> Q:
    return lease_free(now, field="tracking_lease_until")


async def next_tracking_due(*, base_delay: float, max_attempts: int) -> datetime | None:
    """When the first tracking push is due (see ``tracking_push_due``): a push another
    instance holds is due when its lease runs out (made by then, it is no longer open)."""
    now = datetime.now(UTC)
    open_ = Order.filter(_tracking_open(max_attempts))
    free = open_.filter(_tracking_free(now))
    if await free.filter(tracking_sync=TrackingSync.PENDING).exists():
        return now
    earliest = (
        await free.filter(tracking_sync=TrackingSync.FAILED)
        .annotate(last_failed=Min("updated_at"))
        .group_by("tracking_sync_attempts")
        .values_list("tracking_sync_attempts", "last_failed")
    )
    held = (
        await open_.filter(tracking_lease_until__gte=now)
        .order_by("tracking_lease_until")
        .first()
        .values_list("tracking_lease_until", flat=True)
    )
    return min(
        (
            *(
                failed + _retry_delay(base_delay, failures)
                for failures, failed in earliest
                if isinstance(failed, datetime)
            ),
            *([held] if isinstance(held, datetime) else []),
        ),
        default=None,
    )
