"""Cancelling one unpaid order: on PostgreSQL its read and its change outside a transaction
(``domain.orders.fulfilment.cancel_orders``), the change one statement (a compare-and-set on the
version read, the timeline entry and the event). These tests pin what that must keep: racing
cancels of one order and a cancel racing a payment end with one winner, one timeline entry and
one event per change, and the wallet equal to its ledger; several orders stay all or none. They
run on SQLite too (there in a transaction)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from domain.events.models import Event
from domain.lifecycle import hooks_write
from domain.orders.models import Order, OrderKind, OrderStatus, OrderTransition
from domain.payments.models import Wallet, WalletEntry
from schema.global_ids import key_of
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_cloud_stock import manual_order, top_up
from tests.test_order_flow import supplier_catalogue

CANCEL = """mutation($o: [ID!]!) { cancelOrders(orderIds: $o) { orders { id status }
  userErrors { code field } } }"""
PAY = """mutation($o: [ID!]!) { payOrders(orderIds: $o) { orders { id status }
  userErrors { code } } }"""


async def _changes(order_id: int, to: OrderStatus) -> tuple[int, int]:
    """Timeline entries and events of ``order_id``'s changes to ``to``."""
    entries = await OrderTransition.filter(order_id=order_id, to_status=to).count()
    events = [
        e
        for e in await Event.filter(type="ORDER_STATUS_CHANGED", subject_id=str(order_id))
        if e.payload["to"] == to.value
    ]
    return entries, len(events)


async def test_racing_cancels_of_one_order_cancel_it_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order = await manual_order(client, buyer, cat, 1)
    answers = [
        a["cancelOrders"]
        for a in await asyncio.gather(
            *(client.data(CANCEL, {"o": [order]}, token=buyer.token) for _ in range(8))
        )
    ]
    won = [a for a in answers if not a["userErrors"]]
    assert len(won) == 1 and won[0]["orders"][0]["status"] == "CANCELLED"
    codes = {a["userErrors"][0]["code"] for a in answers if a["userErrors"]}
    assert codes <= {"ILLEGAL_TRANSITION", "CONFLICT"}
    assert await _changes(key_of(order), OrderStatus.CANCELLED) == (1, 1)


async def test_a_cancel_racing_a_payment_leaves_one_of_them_and_the_wallet_whole(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    orders = [await manual_order(client, buyer, cat, 1) for _ in range(6)]
    await top_up(client, supplier, buyer, "500.00")  # the buyer's first order made its wallet
    answers = await asyncio.gather(
        *(
            client.data(mutation, {"o": [order]}, token=buyer.token)
            for order in orders
            for mutation in (CANCEL, PAY)
        )
    )
    for order, (cancelled, paid) in zip(
        orders, zip(answers[::2], answers[1::2], strict=True), strict=True
    ):
        row = await Order.get(id=key_of(order))
        won_cancel = not cancelled["cancelOrders"]["userErrors"]
        won_pay = not paid["payOrders"]["userErrors"]
        assert won_cancel != won_pay, (cancelled, paid)  # exactly one of them
        expected = OrderStatus.CANCELLED if won_cancel else OrderStatus.AWAITING_SHIPPING
        assert row.status is expected
        assert await _changes(row.id, expected) == (1, 1)
        other = OrderStatus.AWAITING_SHIPPING if won_cancel else OrderStatus.CANCELLED
        assert await _changes(row.id, other) == (0, 0)
    wallet = await Wallet.get(buyer_id=buyer.organisation_id)
    entries = await WalletEntry.filter(wallet_id=wallet.id)
    assert wallet.balance == sum((e.amount for e in entries), Decimal("0.00"))
    paid_ids = {
        o.id for o in await Order.filter(id__in=[key_of(o) for o in orders], paid_at__isnull=False)
    }
    assert {e.order_id for e in entries if e.order_id is not None} == paid_ids


async def test_several_orders_are_cancelled_all_or_none(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    first, second = [await manual_order(client, buyer, cat, 1) for _ in range(2)]
    assert not (await client.data(CANCEL, {"o": [second]}, token=buyer.token))["cancelOrders"][
        "userErrors"
    ]
    refused = (await client.data(CANCEL, {"o": [first, second]}, token=buyer.token))["cancelOrders"]
    assert refused["userErrors"] == [{"code": "ILLEGAL_TRANSITION", "field": "orderIds.1"}]
    assert (await Order.get(id=key_of(first))).status is OrderStatus.AWAITING_PAYMENT
    assert await _changes(key_of(first), OrderStatus.CANCELLED) == (0, 0)


def test_hooks_say_for_which_orders_they_write() -> None:
    """What decides whether a change of one order may leave out its transaction."""
    plain = Order(kind=OrderKind.MANUAL, cloud_warehouse_id=None)
    from_stock = Order(kind=OrderKind.MANUAL, cloud_warehouse_id=7)
    stocking = Order(kind=OrderKind.CLOUD_WAREHOUSE, cloud_warehouse_id=None)
    assert not any(hooks_write(plain, target) for target in OrderStatus)
    assert {t for t in OrderStatus if hooks_write(from_stock, t)} == {
        OrderStatus.SHIPPED,
        OrderStatus.CANCELLED,
        OrderStatus.REFUNDED,
    }
    assert {t for t in OrderStatus if hooks_write(stocking, t)} == {OrderStatus.SHIPPED}
