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

# the kinds as ``integrations.wakeups.WorkKind`` and migration 0015's triggers name them
OUTBOX, INBOX, WAREHOUSE_TASK, TRACKING = "outbox", "inbox", "warehouse_task", "tracking"


def waiting_sql() -> str:
    """One row of booleans named by kind; ``$1``: the tracking pushes an order may get."""
    return f"""SELECT
    EXISTS (SELECT 1 FROM "{orm.table(Event)}" WHERE seq IS NULL)
        OR EXISTS (SELECT 1 FROM "{orm.table(Event)}" WHERE published_at IS NULL)
        AS {OUTBOX},
    EXISTS (SELECT 1 FROM "{orm.table(WebhookReceipt)}"
            WHERE state = '{InboxState.PENDING.value}' AND due_at <= now()) AS {INBOX},
    EXISTS (SELECT 1 FROM "{orm.table(WarehouseTask)}"
            WHERE state = '{TaskState.PENDING.value}' AND due_at <= now()) AS {WAREHOUSE_TASK},
    EXISTS (SELECT 1 FROM "{orm.table(Order)}"
            WHERE tracking_sync IN ('{TrackingSync.PENDING.value}', '{TrackingSync.FAILED.value}')
              AND store_id IS NOT NULL AND tracking_sync_attempts < $1::integer) AS {TRACKING}"""
