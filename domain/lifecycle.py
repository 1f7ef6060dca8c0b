"""What happens when an order changes status.

Every status change goes through ``transition()`` (``domain/orders/status.py``), called inside
the command's transaction. It does three things and nothing else: the compare-and-set of the
status (with the command's other columns) on the order's ``version``, the timeline entry, and
the ORDER_STATUS_CHANGED event. Then, in the same transaction and in the order of ``HOOKS``
below, it runs the hooks registered for the new status; each is a plain function of the module
that owns what it changes and decides from the order whether it applies:

1. SHIPPED, CANCELLED, REFUNDED: an order paid from cloud-warehouse stock settles its
   reservations: shipping deducts the held units, ending unshipped releases them
   (``domain.stock.ledger.settle_paid_from_stock``).
2. SHIPPED: a stocking (CLOUD_WAREHOUSE) order's units go in transit to the buyer's stock
   (``domain.stock.ledger.stocking_order_in_transit``).
3. SHIPPED: an order of a buyer's store whose tracking push is due (``tracking_sync`` PENDING,
   set by the shipping command) wakes the tracking pusher once the transaction commits
   (``domain.orders.tracking.wake_tracking_push``: ``TRACKING_TOPIC``).

A hook says for which orders it writes (``writes``): a command that changes one order whose
hooks write nothing can leave out its transaction where the change is one statement
(``hooks_write``; the compare-and-set alone is atomic).

A hook that fails fails the command: everything rolls back, the status change too. What a
command does besides the status change (charging a wallet, queueing a warehouse push or
cancel, resolving a depute) is part of that command, not listed here. Work for background
workers is written in the transaction and woken through commit-listener topics
(``domain.db.notify_after_commit``), never called directly.

The hook modules must not import ``domain.orders.status`` (``tests/test_architecture.py`` finds
any import cycle in ``domain/``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from domain.orders.models import Order, OrderStatus
from domain.orders.tracking import wake_tracking_push
from domain.stock.ledger import (
    is_stocking,
    paid_from_stock,
    settle_paid_from_stock,
    stocking_order_in_transit,
)

S = OrderStatus


class StatusHook(Protocol):
    def __call__(self, order: Order, *, actor_user_id: int | None) -> Awaitable[None]:
        """``order`` already has its new status (and version)."""
        ...


def _never(order: Order) -> bool:
    return False


@dataclass(frozen=True)
class OnStatusChange:
    targets: frozenset[OrderStatus]
    run: StatusHook
    writes: Callable[[Order], bool]  # whether ``run`` writes to the database for this order


def on_status_change(
    *targets: OrderStatus, run: StatusHook, writes: Callable[[Order], bool] = _never
) -> OnStatusChange:
    return OnStatusChange(frozenset(targets), run, writes)


HOOKS: tuple[OnStatusChange, ...] = (
    on_status_change(
        S.SHIPPED,
        S.CANCELLED,
        S.REFUNDED,
        run=settle_paid_from_stock,
        writes=paid_from_stock,
    ),
    on_status_change(
        S.SHIPPED,
        run=stocking_order_in_transit,
        writes=is_stocking,
    ),
    on_status_change(S.SHIPPED, run=wake_tracking_push),  # wakes after the commit only
)


def hooks_write(order: Order, target: OrderStatus) -> bool:
    """Whether a hook of ``target`` writes to the database when ``order`` moves there."""
    return any(target in hook.targets and hook.writes(order) for hook in HOOKS)


async def status_changed(order: Order, *, actor_user_id: int | None) -> None:
    """Run the hooks of ``order``'s new status, in ``HOOKS`` order (``transition()`` calls it
    inside the command's transaction)."""
    for hook in HOOKS:
        if order.status in hook.targets:
            await hook.run(order, actor_user_id=actor_user_id)
