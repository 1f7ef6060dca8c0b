"""What a status change brings with it (``domain/lifecycle.py``): the hooks run in their
declared order inside the command's transaction, and background work is woken through a
commit-listener topic only once that transaction commits."""

from __future__ import annotations

import pytest

from domain.db import add_commit_listener, remove_commit_listener, transaction
from domain.lifecycle import HOOKS
from domain.orders.models import Order, OrderStatus, TrackingSync
from domain.orders.status import transition
from domain.orders.tracking import TRACKING_TOPIC, wake_tracking_push
from domain.stock.ledger import settle_paid_from_stock, stocking_order_in_transit
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_status import _order


def test_the_hooks_run_in_their_declared_order() -> None:
    assert [(hook.run, sorted(hook.targets)) for hook in HOOKS] == [
        (
            settle_paid_from_stock,
            sorted({OrderStatus.SHIPPED, OrderStatus.CANCELLED, OrderStatus.REFUNDED}),
        ),
        (stocking_order_in_transit, [OrderStatus.SHIPPED]),
        (wake_tracking_push, [OrderStatus.SHIPPED]),
    ]


class Boom(Exception):
    pass


async def _ship(order: Order, sync: TrackingSync, *, fail: bool = False) -> None:
    async with transaction():
        await transition(
            order, OrderStatus.SHIPPED, actor_user_id=None, changes={"tracking_sync": sync}
        )
        if fail:
            raise Boom


async def test_a_shipment_whose_tracking_is_due_wakes_the_pusher_once_committed(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    woken: list[str] = []

    def listener() -> None:
        woken.append("tracking")

    add_commit_listener(listener, topic=TRACKING_TOPIC)
    try:
        order, other = await _order(client, make_member), await _order(client, make_member)
        for paid in (order, other):
            async with transaction():
                await transition(paid, OrderStatus.AWAITING_SHIPPING, actor_user_id=None)
        assert woken == []

        await _ship(other, TrackingSync.NOT_NEEDED)  # no store: nothing to push
        assert woken == []

        with pytest.raises(Boom):
            await _ship(order, TrackingSync.PENDING, fail=True)
        assert woken == []  # rolled back: nobody is woken
        order = await Order.get(id=order.id)
        assert order.status is OrderStatus.AWAITING_SHIPPING

        async with transaction():
            await _ship(order, TrackingSync.PENDING)  # nested: waits for the outer commit
            assert woken == []
        assert woken == ["tracking"]
    finally:
        remove_commit_listener(listener, topic=TRACKING_TOPIC)
