"""Prices before payment, as a buyer's order list reads them: an unpaid order shows what paying
it would charge now (the SKU's quantity tier, once its lines are connected), marked as an
estimate that follows the supplier's prices; payment fixes the amounts, and they stop moving.
The same answers through an orders page, `order(id:)` and `nodes(ids:)`, to buyer and supplier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from integrations.stores.simulator import create_store_simulator
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, RunningServer, serve
from tests.test_order_flow import SECRET, TOKEN, connect_store, ok, supplier_catalogue
from tests.test_store_integration import Sim

PRICES = "id status pricesEstimated goodsAmount freightAmount lines { unitPrice quantity }"
ONE = f"query($o: ID!) {{ order(id: $o) {{ {PRICES} }} }}"
SEVERAL = f"query($o: [ID!]!) {{ nodes(ids: $o) {{ ... on Order {{ {PRICES} }} }} }}"
PAGE = f"{{ orders(first: 20) {{ edges {{ node {{ {PRICES} }} }} }} }}"
MANUAL = """mutation($k: ID!, $m: ID!, $q: Int!) { createManualOrder(input: {
  lines: [{skuId: $k, quantity: $q}], logisticsMethodId: $m,
  shippingAddress: {name: "Ann", address1: "1 High St", city: "London", countryCode: "GB"}})
  { order { id } userErrors { code field message } } }"""
SET_PRICE = """mutation($k: ID!, $p: Decimal!) { updateSku(input: {skuId: $k, unitPrice: $p})
  { userErrors { code } } }"""


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token=TOKEN, webhook_secret=SECRET)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
        yield Sim(url=url, control=control)


async def _every_way(client: GraphQLHttp, member: Member, order_id: str) -> dict[str, Any]:
    """The order's prices read by id, among `nodes` and on an orders page: one answer."""
    one = (await client.data(ONE, {"o": order_id}, token=member.token))["order"]
    [among] = (await client.data(SEVERAL, {"o": [order_id]}, token=member.token))["nodes"]
    page = (await client.data(PAGE, token=member.token))["orders"]["edges"]
    [listed] = [e["node"] for e in page if e["node"]["id"] == order_id]
    assert one == among == listed
    return one


def _prices(order: dict[str, Any]) -> tuple[Any, ...]:
    return (
        order["pricesEstimated"],
        order["goodsAmount"],
        [line["unitPrice"] for line in order["lines"]],
    )


async def test_unpaid_orders_show_what_payment_would_charge_until_payment_fixes_it(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)  # TEE-R-M: 5.00, 4.00 from 10 units
    sku, method = cat["skus"]["TEE-R-M"], cat["method"]
    few = (await ok(client, MANUAL, {"k": sku, "m": method, "q": 2}, token=buyer.token))["order"]
    many = (await ok(client, MANUAL, {"k": sku, "m": method, "q": 10}, token=buyer.token))["order"]

    for member in (buyer, supplier):
        assert _prices(await _every_way(client, member, few["id"])) == (True, "10.00", ["5.00"])
        tier = await _every_way(client, member, many["id"])
        assert _prices(tier) == (True, "40.00", ["4.00"])  # the quantity tier reached
        assert tier["freightAmount"] is None  # freight is priced at payment (freightQuote)

    # what payment charges is what the estimate said
    quoted = (
        await client.data(
            "query($o: [ID!]!) { freightQuote(orderIds: $o) { orders { orderId goods } } }",
            {"o": [few["id"], many["id"]]},
            token=buyer.token,
        )
    )["freightQuote"]["orders"]
    assert {q["orderId"]: q["goods"] for q in quoted} == {few["id"]: "10.00", many["id"]: "40.00"}

    # the estimate follows the supplier's price until payment
    await ok(client, SET_PRICE, {"k": sku, "p": "7.50"}, token=supplier.token)
    assert _prices(await _every_way(client, buyer, few["id"])) == (True, "15.00", ["7.50"])
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "100.00", currency: "USD") '
        "{ userErrors { code } } }",
        {"b": buyer.gid},
        token=supplier.token,
    )
    paid = await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { orders { goodsAmount pricesEstimated } "
        "charged { goods } userErrors { code message } } }",
        {"o": few["id"]},
        token=buyer.token,
    )
    assert paid["orders"] == [{"goodsAmount": "15.00", "pricesEstimated": False}]
    assert paid["charged"]["goods"] == "15.00"

    # fixed at payment: a later price change moves the unpaid order only
    await ok(client, SET_PRICE, {"k": sku, "p": "9.00"}, token=supplier.token)
    for member in (buyer, supplier):
        fixed = await _every_way(client, member, few["id"])
        assert fixed["status"] == "AWAITING_SHIPPING"
        assert _prices(fixed) == (False, "15.00", ["7.50"])
        assert fixed["freightAmount"] == "3.00"
        assert _prices(await _every_way(client, member, many["id"])) == (
            True,
            "40.00",  # still the tier, below the new list price
            ["4.00"],
        )

    # a cancelled unpaid order will never be paid: nothing to estimate
    await ok(
        client,
        "mutation($o: ID!) { cancelOrders(orderIds: [$o]) { userErrors { code } } }",
        {"o": many["id"]},
        token=buyer.token,
    )
    assert _prices(await _every_way(client, buyer, many["id"])) == (False, None, [None])


async def test_a_store_order_is_priced_once_its_lines_are_connected_and_while_they_are_sold(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    await sim.order(tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    await server.store_inbox_drained()
    [edge] = (
        await client.data("{ orders { edges { node { id lines { id } } } } }", token=buyer.token)
    )["orders"]["edges"]
    order_id, line_id = edge["node"]["id"], edge["node"]["lines"][0]["id"]

    # nothing connected: no price yet, but an estimate is what the order will show
    unrecognized = await _every_way(client, buyer, order_id)
    assert unrecognized["status"] == "UNRECOGNIZED"
    assert _prices(unrecognized) == (True, None, [None])

    # the order-level SKU connection prices it at that SKU's price
    await ok(
        client,
        "mutation($o: ID!, $l: ID!, $k: ID!) { connectOrderSku(orderId: $o, lineId: $l, skuId: $k) "
        "{ order { status } userErrors { code field } } }",
        {"o": order_id, "l": line_id, "k": cat["skus"]["TEE-B-L"]},
        token=buyer.token,
    )
    connected = await _every_way(client, buyer, order_id)
    quantity = connected["lines"][0]["quantity"]
    assert connected["status"] == "AWAITING_PAYMENT"
    assert _prices(connected) == (True, f"{6 * quantity}.00", ["6.00"])
    assert _prices(await _every_way(client, supplier, order_id)) == _prices(connected)

    # a product no longer sold cannot be paid for: no estimate, as payment would refuse it
    await ok(
        client,
        "mutation($p: ID!) { discontinueProduct(productId: $p) { userErrors { code } } }",
        {"p": cat["product"]},
        token=supplier.token,
    )
    assert _prices(await _every_way(client, buyer, order_id)) == (True, None, [None])
