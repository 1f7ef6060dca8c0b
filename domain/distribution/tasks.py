"""The work queue for third-party warehouses: tasks written in the command's transaction, taken
by one worker at a time through a lease, retried later, and finished exactly once.

A lease is taken by a conditional UPDATE (``state = PENDING and the lease is free or expired``),
one statement for a whole claim (``domain.persistence.warehouse_tasks``; on PostgreSQL with
``SKIP LOCKED``, so instances claiming at once take different tasks), which one writer wins on
SQLite as on PostgreSQL, so several instances never run one task at the same moment. An
instance that dies leaves its lease to expire and another takes the task over; every outcome
is applied by a compare-and-set on the subject's status, so a task run twice in that case
still changes the data once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from tortoise.expressions import F, Subquery

from domain.after_sales.models import AfterSalesOrder
from domain.db import notify_after_commit, transaction
from domain.distribution.models import TaskKind, TaskState, WarehouseAttempt, WarehouseTask
from domain.events import record_event
from domain.events.catalogue import WarehouseAttemptRecorded
from domain.leases import lease_free
from domain.limits import MAX_ATTEMPTS_KEPT
from domain.orders.models import Order
from domain.persistence.warehouse_tasks import claim_tasks
from domain.request_context import request_id_var

TASKS_TOPIC = "warehouse_tasks"  # commit listeners woken when a task was queued


async def enqueue(
    *,
    kind: TaskKind,
    third_party_warehouse_id: int | None,
    actor_user_id: int | None,
    order_id: int | None = None,
    after_sales_id: int | None = None,
    withdrawal_id: int | None = None,
) -> WarehouseTask:
    """Add a task, due now. Call inside the command's transaction; the workers are woken when
    it commits."""
    notify_after_commit(TASKS_TOPIC)
    return await WarehouseTask.create(
        kind=kind,
        third_party_warehouse_id=third_party_warehouse_id,
        order_id=order_id,
        after_sales_id=after_sales_id,
        withdrawal_id=withdrawal_id,
        actor_user_id=actor_user_id,
        request_id=request_id_var.get(),
        due_at=datetime.now(UTC),
    )


async def claim_due(
    *, owner: str, lease_seconds: float, limit: int, exclude: Collection[int] = ()
) -> list[WarehouseTask]:
    """Take the lease of up to ``limit`` due tasks, oldest first, counting a run of each (one
    statement: ``domain.persistence.warehouse_tasks``). ``exclude``: tasks not to take, those
    the caller still runs (their lease may have run out meanwhile)."""
    now = datetime.now(UTC)
    return await claim_tasks(
        owner=owner,
        until=now + timedelta(seconds=lease_seconds),
        now=now,
        limit=limit,
        exclude=exclude,
    )


async def finish(task: WarehouseTask, *, failed: bool = False, error: str | None = None) -> bool:
    """Mark the task done (or failed for good) if this worker still holds it. Call inside the
    transaction that applies its outcome; False means another worker took it over."""
    done = await WarehouseTask.filter(
        id=task.id, state=TaskState.PENDING, lease_owner=task.lease_owner
    ).update(
        state=TaskState.FAILED if failed else TaskState.DONE,
        finished_at=datetime.now(UTC),
        lease_owner=None,
        lease_until=None,
        last_error=(error or None) and error[:500],
    )
    return done == 1


async def retry_later(
    task: WarehouseTask, *, delay: float, error: str, count_run: bool = True
) -> None:
    """Give the lease back and make the task due again after ``delay`` seconds.

    ``count_run=False``: this run did not try the warehouse (it waited for other work), so it
    does not use up one of the task's runs.
    """
    changes: dict[str, object] = {
        "due_at": datetime.now(UTC) + timedelta(seconds=delay),
        "lease_owner": None,
        "lease_until": None,
        "last_error": error[:500],
    }
    if not count_run:
        changes["attempts"] = F("attempts") - 1
    await WarehouseTask.filter(
        id=task.id, state=TaskState.PENDING, lease_owner=task.lease_owner
    ).update(**changes)


async def _drop_old_attempts(task: WarehouseTask) -> None:
    """Keep the latest ``MAX_ATTEMPTS_KEPT`` attempts of the task's order or return."""
    subject = (
        {"order_id": task.order_id}
        if task.order_id is not None
        else {"after_sales_id": task.after_sales_id}
    )
    if None in subject.values():
        return
    kept = (
        WarehouseAttempt.filter(**subject)
        .order_by("-id")
        .limit(MAX_ATTEMPTS_KEPT)
        .values_list("id", flat=True)
    )
    await WarehouseAttempt.filter(**subject).exclude(id__in=Subquery(kept)).delete()


async def record_attempt(task: WarehouseTask, *, ok: bool, outcome: str) -> None:
    """One call made to the warehouse for ``task`` and how it went (the ``warehouseAttempts``
    of its order or return), told to both sides of that order or return."""
    async with transaction():
        await WarehouseAttempt.create(
            task_id=task.id,
            kind=task.kind,
            order_id=task.order_id,
            after_sales_id=task.after_sales_id,
            ok=ok,
            outcome=outcome[:500],
        )
        await _drop_old_attempts(task)
        subject: Order | AfterSalesOrder | None = None
        if task.order_id is not None:
            subject = await Order.get_or_none(id=task.order_id)
        elif task.after_sales_id is not None:
            subject = await AfterSalesOrder.get_or_none(id=task.after_sales_id)
        if subject is None:
            return
        event = WarehouseAttemptRecorded.of(task, subject, ok=ok, outcome=outcome)
        if event is not None:
            await record_event(event)


async def supersede_pending(*, order_id: int, kind: TaskKind, reason: str) -> int:
    """Drop tasks of ``kind`` for the order that no worker holds (a withdraw overtakes a push
    that has not started). Returns how many were dropped."""
    now = datetime.now(UTC)
    return await WarehouseTask.filter(
        lease_free(now), order_id=order_id, kind=kind, state=TaskState.PENDING
    ).update(state=TaskState.FAILED, finished_at=now, last_error=reason[:500])


async def pushes_under_way(order_ids: Collection[int]) -> set[int]:
    """Those of ``order_ids`` with a push still pending (a cancel waits for it to land)."""
    pending = WarehouseTask.filter(
        order_id__in=list(order_ids), kind=TaskKind.PUSH_ORDER, state=TaskState.PENDING
    )
    return {int(order_id) for order_id in await pending.values_list("order_id", flat=True)}
