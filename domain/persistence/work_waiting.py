"""PostgreSQL: which kinds of background work have rows waiting, in one statement: the safety
sweep of every background loop at once (``integrations.wakeups.PostgresWakeups``).

A loop's own round decides exactly what it takes (``domain.work_due``, the claims in
``domain.persistence``); this statement only says which loops have something to look at, read
from the indexes the loops read (the work tables' ``(state, due_at)``, migration 0015's partial
index of open tracking pushes, the outbox's ``seq`` and ``published_at``). It may say yes where a
round then takes nothing (a row another instance holds under a live lease, a failed tracking push
still waiting out its delay): the round that follows reads when that work falls due
(``next_due``), as after any round. It never says no where a round would take something: each
clause holds for every row a round can claim.
"""

from __future__ import annotations

from compat import tortoise as orm
from domain.distribution.models import TaskState, WarehouseTask
from domain.events.models import Event
from domain.orders.models import InboxState, Order, TrackingSync, WebhookReceipt
from domain.work_due import WorkKind


def waiting_sql() -> str:
    """One row of booleans named by kind (``WorkKind``); ``$1``: the tracking pushes an order
    may get."""
    event, outbox = orm.table(Event), WorkKind.OUTBOX.value
    inbox, task = WorkKind.INBOX.value, WorkKind.WAREHOUSE_TASK.value
    tracking = WorkKind.TRACKING.value
    return f"""SELECT
    EXISTS (SELECT 1 FROM "{event}" WHERE seq IS NULL)
        OR EXISTS (SELECT 1 FROM "{event}" WHERE published_at IS NULL) AS {outbox},
    EXISTS (SELECT 1 FROM "{orm.table(WebhookReceipt)}"
            WHERE state = '{InboxState.PENDING.value}' AND due_at <= now()) AS {inbox},
    EXISTS (SELECT 1 FROM "{orm.table(WarehouseTask)}"
            WHERE state = '{TaskState.PENDING.value}' AND due_at <= now()) AS {task},
    EXISTS (SELECT 1 FROM "{orm.table(Order)}"
            WHERE tracking_sync IN ('{TrackingSync.PENDING.value}', '{TrackingSync.FAILED.value}')
              AND store_id IS NOT NULL AND tracking_sync_attempts < $1::integer) AS {tracking}"""
