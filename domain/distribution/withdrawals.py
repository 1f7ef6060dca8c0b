"""The withdraw cascade: a distributor withdraws a paid order or an after-sales order.

``withdraw_order`` answers at once with WITHDRAWING (an event to both sides) and queues the
work. The worker asks the third-party warehouse to cancel, if the order sits there, and then
applies the outcome here exactly once: WITHDRAWN (order CANCELLED, payment refunded to the
wallet; after-sales order WITHDRAWN) or WITHDRAW_FAILED with the warehouse's reason. A
WITHDRAW_FAILED withdrawal can be retried, turned into an after-sales return, or closed by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.expressions import Subquery

from domain.access import Viewer, require_buyer
from domain.after_sales.models import AfterSalesOrder, AfterSalesStatus
from domain.after_sales.status_events import return_event
from domain.db import notify_after_commit, transaction
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalResolution,
    WithdrawalStatus,
)
from domain.distribution.tasks import (
    TASKS_TOPIC,
    enqueue,
    finish,
    record_attempt,
    supersede_pending,
)
from domain.distribution.withdrawn import cancel_reason, refund_note, withdrawn_at_once
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event, recorded
from domain.events.catalogue import WithdrawalStatusChanged
from domain.limits import MAX_WITHDRAWALS
from domain.orders.access import order_of_buyer
from domain.orders.models import Order, OrderStatus
from domain.orders.status import transition
from domain.organisations.models import OrganisationKind, Role
from domain.payments.commands import credit, wallet_for
from domain.payments.models import EntryKind
from domain.persistence.dialects import is_postgres
from domain.persistence.withdrawals import WithdrawWrite, request, withdraw_target
from domain.request_context import request_id_var
from domain.validation import clean_text

WITHDRAWABLE = (OrderStatus.AWAITING_SHIPPING, OrderStatus.ABNORMAL)
SHIPPED_FIRST = "the order shipped before the warehouse cancelled it"


async def _event(withdrawal: Withdrawal, actor_user_id: int | None) -> None:
    await record_event(WithdrawalStatusChanged.of(withdrawal, actor_user_id=actor_user_id))


async def show_withdrawal(
    shown: WithdrawalStatus | None,
    /,
    *,
    order_id: int | None = None,
    after_sales_id: int | None = None,
    claim: bool = False,
    **changes: object,
) -> int:
    """The rule, written once: an order's warehouse record (``WarehouseOrder``) and an
    after-sales order show their latest withdrawal's status in ``withdrawal_status``.
    WITHDRAWING when one is requested (``claim``: only if none is open, which makes it one at a
    time), its outcome when it finishes, nothing once a failed one is resolved (retried, closed
    or converted). ``changes`` go in the same update. Returns the rows updated."""
    document = (
        WarehouseOrder.filter(order_id=order_id)
        if order_id is not None
        else AfterSalesOrder.filter(id=after_sales_id)
    )
    if claim:
        document = document.filter(withdrawal_status__isnull=True)
    return await document.update(withdrawal_status=shown, **changes)


async def _below_the_cap(*, field: str, **subject: int) -> None:
    """An order or a return is withdrawn at most ``MAX_WITHDRAWALS`` times (retries included)."""
    if await Withdrawal.filter(**subject).count() >= MAX_WITHDRAWALS:
        raise DomainError(
            ErrorCode.TOO_MANY,
            f"Withdrawn {MAX_WITHDRAWALS} times already: close it, or open a depute.",
            field=field,
        )


def _withdrawable(order: Order) -> bool:
    return order.status in WITHDRAWABLE and order.supplier_id is not None and not order.shipped_at


def _requested(order: Order, viewer: Viewer, reason: str) -> dict[str, object]:
    """A withdrawal of ``order`` as the distributor requests it (both ways of writing it)."""
    return {
        "order_id": order.id,
        "distributor_id": order.buyer_id,
        "supplier_id": order.supplier_id,
        "status": WithdrawalStatus.WITHDRAWING,
        "reason": reason,
        "requested_by_user_id": viewer.user_id,
    }


async def withdraw_order(*, viewer: Viewer, order_id: int, reason: str = "") -> Withdrawal:
    """The distributor withdraws a paid order that has not shipped."""
    require_buyer(viewer)
    reason = clean_text(reason, field="reason", max_length=500, required=False)
    if is_postgres():
        withdrawal = await _request_in_one_statement(viewer, order_id, reason)
        if withdrawal is not None:
            return withdrawal
    # elsewhere, and for what one statement does not cover or refused: each answer from here
    async with transaction():
        order = await order_of_buyer(viewer, order_id)
        if not _withdrawable(order):
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Order {order.number} is {order.status.value}: only a paid order that has not "
                "shipped can be withdrawn.",
                field="orderId",
            )
        record, _ = await WarehouseOrder.get_or_create(
            order_id=order.id, defaults={"supplier_id": order.supplier_id}
        )
        claimed = await show_withdrawal(WithdrawalStatus.WITHDRAWING, order_id=order.id, claim=True)
        if claimed != 1:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Order {order.number} is {record.withdrawal_status}: retry or close that "
                "withdrawal instead.",
                field="orderId",
            )
        await _below_the_cap(order_id=order.id, field="orderId")
        withdrawal = await Withdrawal.create(**_requested(order, viewer, reason))
        await _queue_cancel(withdrawal, record, actor_user_id=viewer.user_id)
        await _event(withdrawal, viewer.user_id)
    return withdrawal


async def _request_in_one_statement(
    viewer: Viewer, order_id: int, reason: str
) -> Withdrawal | None:
    """PostgreSQL, the common case (a withdrawable order with a warehouse record, no open
    withdrawal, no push under way): the request in one statement
    (``domain.persistence.withdrawals``). None when the case is not that one, or the
    statement found the order changed: then ``withdraw_order`` answers statement by
    statement."""
    target = await withdraw_target(order_id, viewer.organisation_id)
    if (
        target is None
        or target.push_status in (None, PushStatus.PUSHING)
        or target.withdrawal_status is not None
        or not _withdrawable(target.order)
    ):
        return None
    order, now = target.order, datetime.now(UTC)
    assert order.supplier_id is not None and target.push_status is not None
    withdrawal = Withdrawal(
        id=target.next_withdrawal_id,
        created_at=now,
        updated_at=now,
        **_requested(order, viewer, reason),
    )
    event = WithdrawalStatusChanged.of(withdrawal, actor_user_id=viewer.user_id)
    written = await request(
        WithdrawWrite(
            withdrawal,
            push_status=target.push_status,
            withdrawable=WITHDRAWABLE,
            cap=MAX_WITHDRAWALS,
            third_party_warehouse_id=(
                target.third_party_warehouse_id if target.push_status is PushStatus.PUSHED else None
            ),
            request_id=request_id_var.get(),
            now=now,
            event=event,
        )
    )
    if not written:
        return None
    recorded(event)
    notify_after_commit(TASKS_TOPIC)
    return withdrawal


async def _queue_cancel(
    withdrawal: Withdrawal, record: WarehouseOrder, *, actor_user_id: int | None
) -> None:
    if record.push_status is PushStatus.PUSHING:
        # a push nobody has started is simply dropped; a running one is waited for
        dropped = await _drop_unstarted_push(record.order_id)
        if dropped:
            await WarehouseOrder.filter(order_id=record.order_id).update(
                push_status=PushStatus.NOT_PUSHED, push_error="withdrawn before the push"
            )
            record.push_status = PushStatus.NOT_PUSHED
    at_warehouse = record.push_status in (PushStatus.PUSHED, PushStatus.PUSHING)
    await enqueue(
        kind=TaskKind.CANCEL_ORDER,
        third_party_warehouse_id=record.third_party_warehouse_id if at_warehouse else None,
        order_id=record.order_id,
        withdrawal_id=withdrawal.id,
        actor_user_id=actor_user_id,
    )


async def _drop_unstarted_push(order_id: int) -> bool:
    return (
        await supersede_pending(
            order_id=order_id, kind=TaskKind.PUSH_ORDER, reason="superseded by a withdraw"
        )
        > 0
    )


async def withdraw_after_sales(
    *, viewer: Viewer, after_sales_id: int, reason: str = ""
) -> Withdrawal:
    """The distributor withdraws an after-sales order not yet stocked in."""
    require_buyer(viewer)
    reason = clean_text(reason, field="reason", max_length=500, required=False)
    async with transaction():
        item = await AfterSalesOrder.get_or_none(
            id=after_sales_id, distributor_id=viewer.organisation_id
        )
        if item is None:
            raise not_found("After-sales order", field="afterSalesId")
        if item.status not in (AfterSalesStatus.REQUESTED, AfterSalesStatus.AWAITING_STOCK_IN):
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"After-sales order {item.number} is {item.status.value}.",
                field="afterSalesId",
            )
        claimed = await show_withdrawal(
            WithdrawalStatus.WITHDRAWING, after_sales_id=item.id, claim=True
        )
        if claimed != 1:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"After-sales order {item.number} is {item.withdrawal_status}: retry or close "
                "that withdrawal instead.",
                field="afterSalesId",
            )
        await _below_the_cap(after_sales_id=item.id, field="afterSalesId")
        withdrawal = await Withdrawal.create(
            after_sales_id=item.id,
            distributor_id=item.distributor_id,
            supplier_id=item.supplier_id,
            status=WithdrawalStatus.WITHDRAWING,
            reason=reason,
            requested_by_user_id=viewer.user_id,
        )
        at_warehouse = item.push_status in (PushStatus.PUSHED, PushStatus.PUSHING)
        await enqueue(
            kind=TaskKind.CANCEL_RETURN,
            third_party_warehouse_id=item.third_party_warehouse_id if at_warehouse else None,
            after_sales_id=item.id,
            withdrawal_id=withdrawal.id,
            actor_user_id=viewer.user_id,
        )
        item.withdrawal_status = WithdrawalStatus.WITHDRAWING  # claimed above
        await return_event(item, viewer.user_id, withdrawal=withdrawal)
        await _event(withdrawal, viewer.user_id)
    return withdrawal


async def withdraw_finished(
    task: WarehouseTask, *, ok: bool, failure: str | None = None, attempt: str | None = None
) -> Withdrawal | None:
    """Apply a cancel task's outcome, once. WITHDRAWN: the order is CANCELLED and its payment
    refunded (an after-sales order is WITHDRAWN); otherwise WITHDRAW_FAILED with the reason.

    ``attempt``: how the task's last call went, recorded as one of its attempts. The common
    case, an order cancelled, is applied with it at once on PostgreSQL
    (``domain.distribution.withdrawn``); otherwise the attempt is recorded first, on its own
    (a refusal below keeps the record of the call), and the outcome applied here."""
    assert task.withdrawal_id is not None
    if ok and attempt is not None:
        withdrawn = await withdrawn_at_once(task, attempt=attempt)
        if withdrawn is not None:
            return withdrawn
    if attempt is not None:
        await record_attempt(task, ok=ok, outcome=attempt)
    async with transaction():
        if not await finish(task, failed=not ok, error=failure):
            return None
        if ok and await _shipped_meanwhile(task.withdrawal_id):
            ok, failure = False, SHIPPED_FIRST
        target = WithdrawalStatus.WITHDRAWN if ok else WithdrawalStatus.WITHDRAW_FAILED
        moved = await Withdrawal.filter(
            id=task.withdrawal_id, status=WithdrawalStatus.WITHDRAWING
        ).update(status=target, failure=None if ok else (failure or "")[:500])
        if moved != 1:
            return None
        withdrawal = await Withdrawal.get(id=task.withdrawal_id)
        if withdrawal.order_id is not None:
            await show_withdrawal(target, order_id=withdrawal.order_id)
            if ok:
                await _cancel_and_refund(withdrawal, task.actor_user_id)
        else:
            returned = {"status": AfterSalesStatus.WITHDRAWN} if ok else {}
            await show_withdrawal(target, after_sales_id=withdrawal.after_sales_id, **returned)
            item = await AfterSalesOrder.get(id=withdrawal.after_sales_id)
            await return_event(item, task.actor_user_id, withdrawal=withdrawal)
        await _event(withdrawal, task.actor_user_id)
    return withdrawal


async def _shipped_meanwhile(withdrawal_id: int) -> bool:
    """Whether the order of this withdrawal shipped after the withdraw was requested (a
    warehouse's SHIPPED can cross the request): a shipped order is never cancelled and
    refunded, whatever the warehouse answered to the cancel."""
    of_withdrawal = Withdrawal.filter(id=withdrawal_id).values("order_id")
    # a return's withdrawal has no order: nothing shipped is at stake
    return await Order.filter(id__in=Subquery(of_withdrawal), shipped_at__isnull=False).exists()


async def _cancel_and_refund(withdrawal: Withdrawal, actor_user_id: int | None) -> None:
    order = await Order.get(id=withdrawal.order_id)
    refund = order.paid_amount - order.refunded_amount
    if (
        refund > 0
    ):  # LOCK_ORDER (domain.payments.commands): the wallet before the order and its stock
        wallet = await wallet_for(buyer_id=order.buyer_id, supplier_id=withdrawal.supplier_id)
        await credit(
            wallet,
            refund,
            kind=EntryKind.REFUND,
            actor_user_id=actor_user_id,
            note=refund_note(order),
            order_id=order.id,
        )
    await transition(
        order,
        OrderStatus.CANCELLED,
        actor_user_id=actor_user_id,
        reason=cancel_reason(withdrawal),
        changes={"refunded_amount": order.paid_amount},
    )


async def _failed_withdrawal(viewer: Viewer, withdrawal_id: int) -> Withdrawal:
    scope = (
        {"supplier_id": viewer.organisation_id}
        if viewer.organisation_kind is OrganisationKind.SUPPLIER
        else {"distributor_id": viewer.organisation_id}
    )
    withdrawal = await Withdrawal.get_or_none(id=withdrawal_id, **scope)
    if withdrawal is None:
        raise not_found("Withdrawal", field="withdrawalId")
    if withdrawal.status is not WithdrawalStatus.WITHDRAW_FAILED or withdrawal.resolution:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"The withdrawal is {withdrawal.status.value}"
            + (f" ({withdrawal.resolution.value})" if withdrawal.resolution else "")
            + "; only an open WITHDRAW_FAILED one offers this.",
            field="withdrawalId",
        )
    return withdrawal


async def _resolve(withdrawal: Withdrawal, resolution: WithdrawalResolution, note: str) -> None:
    moved = await Withdrawal.filter(
        id=withdrawal.id, status=WithdrawalStatus.WITHDRAW_FAILED, resolution__isnull=True
    ).update(resolution=resolution, resolution_note=note)
    if moved != 1:
        raise DomainError(ErrorCode.CONFLICT, "Resolved meanwhile.", field="withdrawalId")
    withdrawal.resolution = resolution
    withdrawal.resolution_note = note


async def retry_withdrawal(*, viewer: Viewer, withdrawal_id: int) -> Withdrawal:
    """Try a failed withdraw again: the failed one is resolved as RETRIED (an event, so both
    sides see it is no longer open) and a new withdrawal starts, WITHDRAWING."""
    require_buyer(viewer)
    async with transaction():
        failed = await _failed_withdrawal(viewer, withdrawal_id)
        await _resolve(failed, WithdrawalResolution.RETRIED, "retried")
        await show_withdrawal(None, order_id=failed.order_id, after_sales_id=failed.after_sales_id)
        await _event(failed, viewer.user_id)
        if failed.order_id is not None:
            return await withdraw_order(
                viewer=viewer, order_id=failed.order_id, reason=failed.reason
            )
        assert failed.after_sales_id is not None
        return await withdraw_after_sales(
            viewer=viewer, after_sales_id=failed.after_sales_id, reason=failed.reason
        )


async def close_withdrawal(*, viewer: Viewer, withdrawal_id: int, note: str) -> Withdrawal:
    """Either side's staff closes a failed withdraw by hand with a note; the order (or return)
    carries on. A return's stream hears it too: its withdraw status is cleared."""
    viewer.require_role(Role.STAFF)
    note = clean_text(note, field="note", max_length=500)
    async with transaction():
        failed = await _failed_withdrawal(viewer, withdrawal_id)
        await _resolve(failed, WithdrawalResolution.CLOSED, note)
        await show_withdrawal(None, order_id=failed.order_id, after_sales_id=failed.after_sales_id)
        if failed.after_sales_id is not None:
            item = await AfterSalesOrder.get(id=failed.after_sales_id)
            await return_event(item, viewer.user_id, withdrawal=failed)
        await _event(failed, viewer.user_id)
    return failed


async def mark_converted(withdrawal: Withdrawal, note: str, *, actor_user_id: int | None) -> None:
    """The failed withdraw became an after-sales return (``after_sales.convert_withdrawal``);
    recorded like a close, so both sides hear that it is resolved."""
    await _resolve(withdrawal, WithdrawalResolution.CONVERTED_TO_RETURN, note)
    await show_withdrawal(None, order_id=withdrawal.order_id)
    await _event(withdrawal, actor_user_id)


async def failed_withdrawal_of_order(*, viewer: Viewer, withdrawal_id: int) -> Withdrawal:
    require_buyer(viewer)
    withdrawal = await _failed_withdrawal(viewer, withdrawal_id)
    if withdrawal.order_id is None:
        raise DomainError(
            ErrorCode.INVALID, "This withdrawal is of an after-sales order.", field="withdrawalId"
        )
    return withdrawal
