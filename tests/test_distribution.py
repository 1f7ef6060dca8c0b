"""Distribution through a third-party warehouse, end to end over real HTTP: partnership →
auto-created warehouse → third-party warehouse selected → push → callbacks; the withdraw
cascade on both sides; returns; bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from domain.distribution.models import TaskKind, WarehouseTask, Withdrawal
from domain.events.models import Event
from integrations.stores.simulator import create_store_simulator
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WarehouseSim,
    eventually,
    manual_order,
    order_state,
    paid_order,
    partnered,
    push,
    top_up,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer, serve
from tests.test_order_flow import connect_variant, ok
from tests.test_store_integration import Sim


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app with a fast warehouse worker (short timeouts and retry delays)."""
    return await make_server(**FAST_WAREHOUSE)


def pushed(state: dict) -> bool:
    return state["distribution"]["pushStatus"] in ("PUSHED", "PUSH_FAILED")


async def test_partnership_push_and_shipped_callback(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    # the system created a distribution warehouse on acceptance
    warehouses = (
        await client.data(
            "query($p: ID!) { distributionWarehouses(partnershipId: $p) { nodes { id createdBySystem thirdPartyWarehouseId } } }",
            {"p": d.partnership_id},
            token=d.distributor.token,
        )
    )["distributionWarehouses"]["nodes"]
    assert warehouses == [
        {
            "id": d.warehouse_id,
            "createdBySystem": True,
            "thirdPartyWarehouseId": d.third_party_warehouse_id,
        }
    ]
    # test third_party_warehouse reaches the simulator with the sealed key
    tested = await ok(
        client,
        "mutation($c: ID!) { testThirdPartyWarehouse(id: $c) { thirdPartyWarehouse { lastTestOk lastTestMessage } userErrors { code } } }",
        {"c": d.third_party_warehouse_id},
        token=d.supplier.token,
    )
    assert tested["thirdPartyWarehouse"]["lastTestOk"] is True

    order_id = await paid_order(client, d)
    listed = (
        await client.data(
            "query($n: String!) { orders(filter: {distributorName: $n, distributionOnly: true}) { edges { node { id buyerName } } } }",
            {"n": "Org "},
            token=d.supplier.token,
        )
    )["orders"]["edges"]
    assert [e["node"]["id"] for e in listed] == [order_id]

    assert (await push(client, d, order_id))["userErrors"] == []
    state = await eventually(
        lambda: order_state(client, d.supplier.token, order_id), lambda s: pushed(s)
    )
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert state["distribution"]["warehouseOrderId"] == "WO-1"
    # a second push is refused: it is already at the warehouse
    again = await push(client, d, order_id)
    assert again["userErrors"][0]["code"] == "ILLEGAL_TRANSITION"

    shipped = await sim.advance(order_id, "SHIPPED", carrier="DHL", tracking_number="JD42")
    assert shipped["callback_status"] == 200
    for token in (d.supplier.token, d.distributor.token):
        state = await order_state(client, token, order_id)
        assert state["status"] == "SHIPPED"
        assert (state["carrier"], state["trackingNumber"]) == ("DHL", "JD42")
    assert (await sim.effects())["outbound_created"] == 1


async def test_withdraw_success_refunds_and_both_sides_see_it_in_order(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    sim: WarehouseSim,
    ws_connect,
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)

    stranger = await make_member("BUYER")
    sockets = {}
    for name, member in (
        ("supplier", d.supplier),
        ("distributor", d.distributor),
        ("stranger", stranger),
    ):
        ws = await ws_connect(member.token)
        await ws.acknowledged()
        await ws.subscribe("subscription { withdrawalStatusChanged { orderId status reason } }")
        sockets[name] = ws
    await server.wait_for_subscribers(3)

    answered = await ok(
        client,
        'mutation($o: ID!) { withdrawOrder(orderId: $o, reason: "customer cancelled") { withdrawal { id status } userErrors { code field message } } }',
        {"o": order_id},
        token=d.distributor.token,
    )
    assert answered["withdrawal"]["status"] == "WITHDRAWING"
    for name in ("supplier", "distributor"):
        seen = [(await sockets[name].next_data())["withdrawalStatusChanged"] for _ in range(2)]
        assert [s["status"] for s in seen] == ["WITHDRAWING", "WITHDRAWN"]
        assert {s["orderId"] for s in seen} == {order_id}
    with pytest.raises(TimeoutError):
        await sockets["stranger"].next_data(timeout=0.3)

    for token in (d.supplier.token, d.distributor.token):
        state = await order_state(client, token, order_id)
        assert state["status"] == "CANCELLED"
        assert state["distribution"]["withdrawalStatus"] == "WITHDRAWN"
        assert state["refundedAmount"] == "8.00"
    wallets = (await client.data("{ wallets { nodes { balance } } }", token=d.distributor.token))[
        "wallets"
    ]["nodes"]
    assert wallets == [{"balance": "8.00"}]
    assert (await sim.effects())["outbound_cancelled"] == 1
    state = await order_state(client, d.distributor.token, order_id)
    assert [a["kind"] for a in state["warehouseAttempts"]] == ["PUSH_ORDER", "CANCEL_ORDER"]
    # a withdrawn order cannot be withdrawn again
    again = (
        await client.data(
            "mutation($o: ID!) { withdrawOrder(orderId: $o) { userErrors { code } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["withdrawOrder"]["userErrors"]
    assert again == [{"code": "ILLEGAL_TRANSITION"}]


async def test_withdraw_refused_after_pick_fails_on_both_sides_and_offers_ways_out(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    await sim.advance(order_id, "PICKING")

    withdrawal = await ok(
        client,
        "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
        {"o": order_id},
        token=d.distributor.token,
    )
    # a second withdraw while one runs (or has failed) is refused
    second = (
        await client.data(
            "mutation($o: ID!) { withdrawOrder(orderId: $o) { userErrors { code } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["withdrawOrder"]["userErrors"]
    assert second == [{"code": "ILLEGAL_TRANSITION"}]
    for token in (d.distributor.token, d.supplier.token):
        state = await eventually(
            lambda t=token: order_state(client, t, order_id),
            lambda s: s["distribution"]["withdrawalStatus"] == "WITHDRAW_FAILED",
        )
        assert state["status"] == "AWAITING_SHIPPING"
        assert "PICKING" in state["withdrawals"][0]["failure"]
    wallets = (await client.data("{ wallets { nodes { balance } } }", token=d.distributor.token))[
        "wallets"
    ]["nodes"]
    assert wallets == [{"balance": "0.00"}]

    # way out: close it by hand with a note; the order carries on and ships
    closed = await ok(
        client,
        'mutation($w: ID!) { closeWithdrawal(withdrawalId: $w, note: "customer agreed") { withdrawal { resolution } userErrors { code } } }',
        {"w": withdrawal["withdrawal"]["id"]},
        token=d.distributor.token,
    )
    assert closed["withdrawal"]["resolution"] == "CLOSED"
    state = await order_state(client, d.distributor.token, order_id)
    assert state["distribution"]["withdrawalStatus"] is None


async def test_retry_then_convert_a_failed_withdraw_into_a_return(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    await sim.faults(refuse_cancel=True)
    first = await ok(
        client,
        "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
        {"o": order_id},
        token=d.distributor.token,
    )
    await eventually(
        lambda: order_state(client, d.distributor.token, order_id),
        lambda s: s["distribution"]["withdrawalStatus"] == "WITHDRAW_FAILED",
    )
    retried = await ok(
        client,
        "mutation($w: ID!) { retryWithdrawal(withdrawalId: $w) { withdrawal { id status } userErrors { code message } } }",
        {"w": first["withdrawal"]["id"]},
        token=d.distributor.token,
    )
    assert retried["withdrawal"]["status"] == "WITHDRAWING"
    state = await eventually(
        lambda: order_state(client, d.distributor.token, order_id),
        lambda s: s["distribution"]["withdrawalStatus"] == "WITHDRAW_FAILED",
    )
    assert [(w["status"], w["resolution"]) for w in state["withdrawals"]] == [
        ("WITHDRAW_FAILED", "RETRIED"),
        ("WITHDRAW_FAILED", None),
    ]
    converted = await ok(
        client,
        'mutation($w: ID!) { convertWithdrawalToReturn(withdrawalId: $w, reason: "send it back") { afterSalesOrder { id status items { quantity } } userErrors { code message } } }',
        {"w": retried["withdrawal"]["id"]},
        token=d.distributor.token,
    )
    assert converted["afterSalesOrder"]["status"] == "REQUESTED"
    assert converted["afterSalesOrder"]["items"] == [{"quantity": 1}]


async def test_push_charges_on_push_with_the_shortfall_and_refuses_foreign_orders(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    await ok(
        client,
        "mutation { updateDistributionSettings(chargeOnPush: true) { settings { chargeOnPush } userErrors { code } } }",
        token=d.supplier.token,
    )
    order_id = await manual_order(client, d)  # unpaid: 8.00 due
    await top_up(client, d, "5.00")
    short = (await push(client, d, order_id))["userErrors"]
    assert short[0]["code"] == "INSUFFICIENT_FUNDS" and "3.00 short" in short[0]["message"]
    state = await order_state(client, d.supplier.token, order_id)
    assert state["status"] == "AWAITING_PAYMENT" and state["distribution"] is None
    await top_up(client, d, "3.00")
    assert (await push(client, d, order_id))["userErrors"] == []
    state = await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    assert state["status"] == "AWAITING_SHIPPING" and state["paidAmount"] == "8.00"

    # another supplier cannot push it; the distributor cannot push at all
    other = await make_member("SUPPLIER")
    foreign = (
        await client.data(
            "mutation($o: [ID!]!) { pushOrders(orderIds: $o) { userErrors { code field } } }",
            {"o": [order_id]},
            token=other.token,
        )
    )["pushOrders"]["userErrors"]
    assert foreign == [{"code": "NOT_FOUND", "field": "orderIds.0"}]
    denied = (
        await client.data(
            "mutation($o: [ID!]!) { pushOrders(orderIds: $o) { userErrors { code } } }",
            {"o": [order_id]},
            token=d.distributor.token,
        )
    )["pushOrders"]["userErrors"]
    assert denied == [{"code": "FORBIDDEN"}]


async def test_push_without_a_third_party_warehouse_is_refused(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    d = await partnered(client, make_member, None)
    order_id = await paid_order(client, d)
    refused = (await push(client, d, order_id))["userErrors"]
    assert refused[0]["code"] == "NO_WAREHOUSE"
    # without a warehouse a withdraw completes at once
    await ok(
        client,
        "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
        {"o": order_id},
        token=d.distributor.token,
    )
    state = await eventually(
        lambda: order_state(client, d.distributor.token, order_id),
        lambda s: s["status"] == "CANCELLED",
    )
    assert state["distribution"]["withdrawalStatus"] == "WITHDRAWN"


async def test_returns_pushed_by_hand_and_automatically_then_stocked_in_and_withdrawn(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    sim: WarehouseSim,
    ws_connect,
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    await sim.advance(order_id, "SHIPPED", carrier="DHL", tracking_number="T1")
    await ok(
        client,
        "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code } } }",
        {"o": order_id},
        token=d.supplier.token,
    )
    lines = (
        await client.data(
            "query($o: ID!) { order(id: $o) { lines { id } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["order"]["lines"]
    ws = await ws_connect(d.supplier.token)
    await ws.acknowledged()
    await ws.subscribe("subscription { returnStatusChanged { number status pushStatus } }")
    await server.wait_for_subscribers(1)

    create = """mutation($o: ID!, $l: ID!, $q: Int!) { createAfterSalesOrder(input: {orderId: $o,
      items: [{lineId: $l, quantity: $q, reason: "torn"}], reason: "damaged"})
      { afterSalesOrder { id number status pushStatus } userErrors { code field message } } }"""
    too_many = (
        await client.data(
            create, {"o": order_id, "l": lines[0]["id"], "q": 5}, token=d.distributor.token
        )
    )["createAfterSalesOrder"]["userErrors"]
    assert too_many == [
        {"code": "INVALID", "field": "input.items.0.quantity", "message": too_many[0]["message"]}
    ]
    by_hand = (
        await ok(
            client, create, {"o": order_id, "l": lines[0]["id"], "q": 1}, token=d.distributor.token
        )
    )["afterSalesOrder"]
    assert (by_hand["status"], by_hand["pushStatus"]) == ("REQUESTED", "NOT_PUSHED")
    listed = (
        await client.data(
            '{ afterSalesOrders(filter: {distributorName: "Org"}) { edges { node { id distributorName updatedAt } } } }',
            token=d.supplier.token,
        )
    )["afterSalesOrders"]["edges"]
    assert [e["node"]["id"] for e in listed] == [by_hand["id"]]
    await ok(
        client,
        "mutation($r: [ID!]!) { pushReturns(afterSalesIds: $r) { afterSalesOrders { pushStatus } userErrors { code message } } }",
        {"r": [by_hand["id"]]},
        token=d.supplier.token,
    )
    read = "query($r: ID!) { afterSalesOrder(id: $r) { status pushStatus withdrawalStatus items { receivedQuantity } } }"
    state = await eventually(
        lambda: client.data(read, {"r": by_hand["id"]}, token=d.supplier.token),
        lambda s: s["afterSalesOrder"]["pushStatus"] == "PUSHED",
    )
    assert state["afterSalesOrder"]["status"] == "AWAITING_STOCK_IN"
    received = await sim.receive(by_hand["id"])
    assert received["callback_status"] == 200
    state = await client.data(read, {"r": by_hand["id"]}, token=d.distributor.token)
    assert state["afterSalesOrder"]["status"] == "STOCKED_IN"
    assert state["afterSalesOrder"]["items"] == [{"receivedQuantity": 1}]
    changes = [(await ws.next_data())["returnStatusChanged"] for _ in range(4)]
    assert [(c["status"], c["pushStatus"]) for c in changes] == [
        ("REQUESTED", "NOT_PUSHED"),
        ("REQUESTED", "PUSHING"),
        ("AWAITING_STOCK_IN", "PUSHED"),
        ("STOCKED_IN", "PUSHED"),
    ]

    # automatic push; then a withdraw that the warehouse accepts, and one it refuses
    await ok(
        client,
        "mutation { updateDistributionSettings(autoPushReturns: true) { settings { autoPushReturns } userErrors { code } } }",
        token=d.supplier.token,
    )
    auto = (
        await ok(
            client, create, {"o": order_id, "l": lines[0]["id"], "q": 1}, token=d.distributor.token
        )
    )["afterSalesOrder"]
    await eventually(
        lambda: client.data(read, {"r": auto["id"]}, token=d.supplier.token),
        lambda s: s["afterSalesOrder"]["pushStatus"] == "PUSHED",
    )
    await ok(
        client,
        "mutation($r: ID!) { withdrawAfterSalesOrder(afterSalesId: $r) { withdrawal { status } userErrors { code message } } }",
        {"r": auto["id"]},
        token=d.distributor.token,
    )
    state = await eventually(
        lambda: client.data(read, {"r": auto["id"]}, token=d.distributor.token),
        lambda s: s["afterSalesOrder"]["withdrawalStatus"] == "WITHDRAWN",
    )
    assert state["afterSalesOrder"]["status"] == "WITHDRAWN"
    assert (await sim.effects())["returns_cancelled"] == 1


async def test_after_sales_withdraw_refused_once_received(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    await ok(
        client,
        "mutation { updateDistributionSettings(autoPushReturns: true) { userErrors { code } } }",
        token=d.supplier.token,
    )
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    await sim.advance(order_id, "SHIPPED", carrier="DHL", tracking_number="T2")
    lines = (
        await client.data(
            "query($o: ID!) { order(id: $o) { lines { id } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["order"]["lines"]
    created = (
        await ok(
            client,
            """mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o,
          items: [{lineId: $l, quantity: 1}], reason: "wrong size"}) { afterSalesOrder { id } userErrors { code } } }""",
            {"o": order_id, "l": lines[0]["id"]},
            token=d.distributor.token,
        )
    )["afterSalesOrder"]
    read = "query($r: ID!) { afterSalesOrder(id: $r) { status pushStatus withdrawalStatus withdrawals { failure } } }"
    await eventually(
        lambda: client.data(read, {"r": created["id"]}, token=d.supplier.token),
        lambda s: s["afterSalesOrder"]["pushStatus"] == "PUSHED",
    )
    # the parcel arrives but the callback is lost; the distributor withdraws
    await sim.receive(created["id"], deliver=False)
    await ok(
        client,
        "mutation($r: ID!) { withdrawAfterSalesOrder(afterSalesId: $r) { withdrawal { status } userErrors { code } } }",
        {"r": created["id"]},
        token=d.distributor.token,
    )
    for token in (d.distributor.token, d.supplier.token):
        state = await eventually(
            lambda t=token: client.data(read, {"r": created["id"]}, token=t),
            lambda s: s["afterSalesOrder"]["withdrawalStatus"] == "WITHDRAW_FAILED",
        )
        assert "RECEIVED" in state["afterSalesOrder"]["withdrawals"][0]["failure"]


async def test_bigshop_store_order_filtered_pushed_and_tracking_reaches_the_store(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    app = create_store_simulator(access_token="bs-token", webhook_secret="bs-secret")
    async with serve(app) as store_url, httpx.AsyncClient(base_url=store_url) as control:
        shop = Sim(url=store_url, control=control)
        store = await ok(
            client,
            """mutation($u: String!) { connectStore(input: {name: "BigShop store", platform: BIGSHOP,
              apiUrl: $u, accessToken: "bs-token", webhookSecret: "bs-secret"})
              { store { id } webhookUrlPath userErrors { code field message } } }""",
            {"u": store_url},
            token=d.distributor.token,
        )
        tee = await shop.product("Tee")
        red = next(v for v in tee["variants"] if v["option1"] == "Red")
        await ok(
            client,
            "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code field message } } }",
            {"s": store["store"]["id"]},
            token=d.distributor.token,
        )
        products = (
            await client.data(
                "query($s: ID!) { storeProducts(storeId: $s) { nodes { id variants { id externalId } } } }",
                {"s": store["store"]["id"]},
                token=d.distributor.token,
            )
        )["storeProducts"]["nodes"]
        variant = next(
            v["id"] for v in products[0]["variants"] if v["externalId"] == str(red["id"])
        )
        connected = await connect_variant(
            client, d.distributor, products[0]["id"], d.catalogue, variant, "TEE-R-M"
        )
        assert connected["userErrors"] == []
        made = await shop.order(red["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
        assert made["webhook_status"] == 202
        await server.store_inbox_drained()

        query = """query($p: StorePlatform, $n: String) { orders(filter: {platform: $p, distributorName: $n,
          distributionOnly: true}) { edges { node { id storeOrderNumber buyerName } } } }"""
        found = (await client.data(query, {"p": "BIGSHOP", "n": "org"}, token=d.supplier.token))[
            "orders"
        ]["edges"]
        assert [e["node"]["storeOrderNumber"] for e in found] == [made["order"]["name"]]
        none = (await client.data(query, {"p": "SHOPIFY", "n": None}, token=d.supplier.token))[
            "orders"
        ]["edges"]
        assert none == []
        order_id = found[0]["node"]["id"]
        await top_up(client, d, "20.00")
        await ok(
            client,
            "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
        await push(client, d, order_id)
        await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
        await sim.advance(order_id, "SHIPPED", carrier="UPS", tracking_number="1Z99")
        fulfillments = await eventually(shop.fulfillments, lambda f: len(f) == 1)
        assert fulfillments[0]["tracking_number"] == "1Z99"


async def test_racing_withdraws_of_one_order_make_one_withdrawal(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    """On PostgreSQL the request is one statement (``domain.persistence.withdrawals``); racing
    requests still make one withdrawal, one cancel task and one WITHDRAWING event."""
    d = await partnered(client, make_member, sim)
    order_id = await paid_order(client, d)
    await push(client, d, order_id)
    await eventually(lambda: order_state(client, d.supplier.token, order_id), pushed)
    answers = await asyncio.gather(
        *(
            client.data(
                "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id status } "
                "userErrors { code } } }",
                {"o": order_id},
                token=d.distributor.token,
            )
            for _ in range(6)
        )
    )
    made = [a["withdrawOrder"] for a in answers if not a["withdrawOrder"]["userErrors"]]
    refused = [
        a["withdrawOrder"]["userErrors"] for a in answers if a["withdrawOrder"]["userErrors"]
    ]
    assert len(made) == 1 and made[0]["withdrawal"]["status"] == "WITHDRAWING"
    assert all(errors == [{"code": "ILLEGAL_TRANSITION"}] for errors in refused)
    order = key_of(order_id)
    assert await Withdrawal.filter(order_id=order).count() == 1
    assert await WarehouseTask.filter(order_id=order, kind=TaskKind.CANCEL_ORDER).count() == 1
    withdrawing = await Event.filter(
        type="WITHDRAWAL_STATUS_CHANGED", subject_id=str(key_of(made[0]["withdrawal"]["id"]))
    )
    assert [e.payload["status"] for e in withdrawing][:1] == ["WITHDRAWING"]
    await eventually(
        lambda: order_state(client, d.distributor.token, order_id),
        lambda s: s["distribution"]["withdrawalStatus"] == "WITHDRAWN",
    )
    assert (await sim.effects())["outbound_cancelled"] == 1
