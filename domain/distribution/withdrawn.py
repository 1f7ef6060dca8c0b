"""The common outcome of a withdraw, applied at once: the warehouse cancelled a paid order (or
never had it), so the withdrawal becomes WITHDRAWN, the order CANCELLED and its payment goes
back to the wallet, with the call's attempt record and the events.

On PostgreSQL the outcomes of any number of withdrawals are two statements together
(``domain.persistence.withdraw_outcome``): a read of the withdrawals, their orders and wallets,
and a write that changes everything only if nothing changed since the read. Anything else
(another engine, an order shipped meanwhile, paid from cloud stock, with nothing to refund, a
row changed since the read) is left to ``domain.distribution.withdrawals.withdraw_finished``'s
transactional way, which decides from fresh reads, so both ways give the same outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.distribution.models import TaskKind, WarehouseTask, Withdrawal, WithdrawalStatus
from domain.events import NewEvent, recorded
from domain.events.catalogue import WalletChanged, WarehouseAttemptRecorded, WithdrawalStatusChanged
from domain.limits import MAX_ATTEMPTS_KEPT
from domain.orders.models import Order, OrderStatus
from domain.orders.status import StatusChange, can_transition, plan_transition, transitioned
from domain.payments.models import EntryKind
from domain.persistence.dialects import is_postgres
from domain.persistence.withdraw_outcome import (
    WithdrawalScene,
    WithdrawnOrder,
    WithdrawnWrite,
    withdrawal_scenes,
    withdrawn_in_one_statement,
)


def cancel_reason(withdrawal: Withdrawal) -> str:
    """The reason on the cancelled order's timeline."""
    reason = "withdrawn by the distributor"
    return reason + (f": {withdrawal.reason}" if withdrawal.reason else "")


def refund_note(order: Order) -> str:
    """The note of the refund's ledger entry."""
    return f"withdrawn order {order.number}"


@dataclass(frozen=True)
class Cancelled:
    """A cancel task whose order the warehouse cancelled (or never had): ``attempt`` is how
    its call went."""

    task: WarehouseTask
    attempt: str


@dataclass(frozen=True)
class _Planned:
    """One outcome about to be written: the rows, the order's status change, the events."""

    withdrawal: Withdrawal  # as it will be stored
    written: WithdrawnOrder
    change: StatusChange
    events: tuple[NewEvent, NewEvent, NewEvent, NewEvent]  # attempt, wallet, order, withdrawal

    async def announce(self) -> None:
        """After the write: the events announced, the order's status hooks run."""
        attempt, wallet, _, withdrawal = self.events
        recorded(attempt)
        recorded(wallet)
        await transitioned(self.change, actor_user_id=self.change.timeline.actor_user_id)
        recorded(withdrawal)


def _plan(cancelled: Cancelled, scene: WithdrawalScene | None) -> _Planned | None:
    """The outcome to write, if it is the common case as read."""
    task = cancelled.task
    if scene is None or scene.order is None or scene.wallet is None:
        return None
    withdrawal, order, wallet = scene.withdrawal, scene.order, scene.wallet
    refund = order.paid_amount - order.refunded_amount
    if (
        withdrawal.status is not WithdrawalStatus.WITHDRAWING
        or order.id != task.order_id
        or order.shipped_at is not None  # the warehouse's SHIPPED came first: it fails
        or order.cloud_warehouse_id is not None  # its stock is released by the status's hook
        or refund <= 0
        or not can_transition(order.status, OrderStatus.CANCELLED)
    ):
        return None
    attempt_event = WarehouseAttemptRecorded.of(task, order, ok=True, outcome=cancelled.attempt)
    if attempt_event is None:
        return None
    actor = task.actor_user_id
    change = plan_transition(
        order,
        OrderStatus.CANCELLED,
        actor_user_id=actor,
        reason=cancel_reason(withdrawal),
        changes={"refunded_amount": order.paid_amount},
    )
    withdrawal.status, withdrawal.failure = WithdrawalStatus.WITHDRAWN, None
    events = (
        attempt_event,
        WalletChanged.of(wallet, reason=EntryKind.REFUND.value.lower(), actor_user_id=actor),
        change.event,
        WithdrawalStatusChanged.of(withdrawal, actor_user_id=actor),
    )
    written = WithdrawnOrder(
        task_id=task.id,
        lease_owner=task.lease_owner,
        attempt_outcome=cancelled.attempt,
        withdrawal_id=withdrawal.id,
        order_id=order.id,
        order_version=order.version,
        order_from=order.status,
        order_reason=change.timeline.reason,
        refunded_amount=order.paid_amount,
        wallet_id=wallet.id,
        refund=refund,
        entry_note=refund_note(order),
        actor_user_id=actor,
    )
    return _Planned(withdrawal, written, change, events)


async def withdrawn_together(cancelled: Sequence[Cancelled]) -> list[Withdrawal | None]:
    """Apply successful cancels of orders together, in two statements on PostgreSQL: each
    one's withdrawal WITHDRAWN, in order; None for each not applied (not the common case, or
    a row changed since it was read): nothing was written for it, and the caller applies it
    the transactional way."""
    applied: list[Withdrawal | None] = [None] * len(cancelled)
    if not is_postgres():
        return applied
    wanted = {
        n: c.task.withdrawal_id
        for n, c in enumerate(cancelled)
        if c.task.kind is TaskKind.CANCEL_ORDER and c.task.withdrawal_id is not None
    }
    scenes = await withdrawal_scenes(sorted(set(wanted.values())))
    planned: dict[int, _Planned] = {}
    orders: set[int] = set()
    for n, withdrawal_id in wanted.items():
        plan = _plan(cancelled[n], scenes.get(withdrawal_id))
        if plan is not None and plan.written.order_id not in orders:  # one outcome an order
            orders.add(plan.written.order_id)
            planned[n] = plan
    if not planned:
        return applied
    written = await withdrawn_in_one_statement(
        WithdrawnWrite(
            orders=[plan.written for plan in planned.values()],
            attempts_kept=MAX_ATTEMPTS_KEPT,
            now=datetime.now(UTC),
            events=[event for plan in planned.values() for event in plan.events],
        )
    )
    if written:
        for n, plan in planned.items():
            await plan.announce()
            applied[n] = plan.withdrawal
    elif len(planned) > 1:  # one of them changed since it was read: the others still go
        for n in planned:
            [applied[n]] = await withdrawn_together([cancelled[n]])
    return applied


async def withdrawn_at_once(task: WarehouseTask, *, attempt: str) -> Withdrawal | None:
    """``withdrawn_together`` for one cancel."""
    [withdrawal] = await withdrawn_together([Cancelled(task, attempt)])
    return withdrawal
