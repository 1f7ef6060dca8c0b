"""The state machine's write (``domain.order_status.transition``): on PostgreSQL one statement
holds the compare-and-set, the timeline entry and the event; on SQLite three. Either way a
change writes exactly one entry and one event, and a change refused as stale writes nothing."""

from __future__ import annotations

import pytest

from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.events.models import Event, EventAudience
from domain.orders.models import Order, OrderStatus, OrderTransition
from domain.orders.status import transition
from schema.global_ids import key_of
from tests.conftest import MakeMember
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import ok, supplier_catalogue

CREATE = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k,
quantity: 1}], logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L",
countryCode: "GB"}}) { order { id } userErrors { code } } }"""


async def _order(client: GraphQLHttp, make_member: MakeMember) -> Order:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    made = await ok(
        client, CREATE, {"k": cat["skus"]["TEE-R-M"], "m": cat["method"]}, token=buyer.token
    )
    return await Order.get(id=key_of(made["order"]["id"]))


async def _written(order: Order) -> tuple[list[OrderTransition], list[Event]]:
    entries = await OrderTransition.filter(order_id=order.id).order_by("id")
    events = await Event.filter(
        subject_type="Order", subject_id=str(order.id), type="ORDER_STATUS_CHANGED"
    ).order_by("id")
    return entries, events


async def test_a_change_writes_one_entry_and_one_event(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    order = await _order(client, make_member)
    version = order.version
    async with transaction():
        await transition(order, OrderStatus.CANCELLED, actor_user_id=None, reason="why " * 200)
    assert (order.status, order.version) == (OrderStatus.CANCELLED, version + 1)
    stored = await Order.get(id=order.id)
    assert (stored.status, stored.version) == (OrderStatus.CANCELLED, version + 1)
    entries, events = await _written(order)
    assert [(e.from_status, e.to_status) for e in entries][-1] == (
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.CANCELLED,
    )
    assert len(entries[-1].reason) == 500 and entries[-1].created_at.tzinfo is not None
    assert len(events) == 1
    assert events[0].payload["from"] == "AWAITING_PAYMENT"
    assert events[0].payload["to"] == "CANCELLED"
    assert events[0].payload["number"] == order.number
    audience = await EventAudience.filter(event_id=events[0].id).values_list(
        "organisation_id", flat=True
    )
    assert sorted(audience) == sorted({order.buyer_id, order.supplier_id})


async def test_a_stale_change_writes_nothing(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    order = await _order(client, make_member)
    stale = await Order.get(id=order.id)
    async with transaction():
        await transition(order, OrderStatus.ABNORMAL, actor_user_id=None, reason="held")
    entries_before, events_before = await _written(order)
    with pytest.raises(DomainError) as refused:
        async with transaction():
            await transition(stale, OrderStatus.CANCELLED, actor_user_id=None)
    assert refused.value.code is ErrorCode.CONFLICT
    assert await _written(order) == (entries_before, events_before)
    stored = await Order.get(id=order.id)
    assert (stored.status, stored.version) == (OrderStatus.ABNORMAL, order.version)
