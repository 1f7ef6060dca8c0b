"""The seed's order processes end to end through GraphQL, a store simulator and webhooks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from integrations.stores.protocol import sign
from integrations.stores.simulator import create_store_simulator
from schema.global_ids import gid
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, RunningServer, serve
from tests.test_store_integration import Sim

TOKEN, SECRET = "sim-token", "sim-webhook-secret"


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token=TOKEN, webhook_secret=SECRET)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
        yield Sim(url=url, control=control)


async def ok(client: GraphQLHttp, query: str, variables: dict | None = None, *, token: str) -> dict:
    data = await client.data(query, variables, token=token)
    payload = next(iter(data.values()))
    assert payload.get("userErrors", []) == [], payload
    return payload


async def supplier_catalogue(client: GraphQLHttp, supplier: Member) -> dict:
    product = await ok(
        client,
        """
      mutation { createProduct(input: {title: "Tee", skus: [
        {code: "TEE-R-M", attributes: {color: "Red", size: "M"}, weightGrams: 200, unitPrice: "5.00",
         tiers: [{minQuantity: 10, unitPrice: "4.00"}]},
        {code: "TEE-B-L", attributes: {color: "Blue", size: "L"}, weightGrams: 250, unitPrice: "6.00"}
      ]}) { product { id skus { id code } } userErrors { code field message } } }""",
        token=supplier.token,
    )
    method = await ok(
        client,
        """
      mutation { createLogisticsMethod(input: {name: "Air", minDays: 5, maxDays: 9, rules: [
        {countryCode: "GB", firstWeightGrams: 500, firstPrice: "3.00", stepGrams: 500, stepPrice: "1.50"},
        {countryCode: "*", firstWeightGrams: 500, firstPrice: "8.00", stepGrams: 500, stepPrice: "2.00"}
      ]}) { logisticsMethod { id } userErrors { code field message } } }""",
        token=supplier.token,
    )
    skus = {s["code"]: s["id"] for s in product["product"]["skus"]}
    return {
        "product": product["product"]["id"],
        "skus": skus,
        "method": method["logisticsMethod"]["id"],
    }


async def connect_store(client: GraphQLHttp, buyer: Member, sim: Sim) -> dict:
    payload = await ok(
        client,
        """
      mutation($url: String!) { connectStore(input: {name: "My shop", platform: SHOPIFY, apiUrl: $url,
        accessToken: "sim-token", webhookSecret: "sim-webhook-secret"})
        { store { id platform } webhookSecret webhookUrlPath userErrors { code field message } } }""",
        {"url": sim.url},
        token=buyer.token,
    )
    assert payload["webhookSecret"] == SECRET
    return payload


async def connect_variant(
    client: GraphQLHttp,
    buyer: Member,
    store_product_id: str,
    cat: dict,
    variant_id: str,
    sku_code: str,
) -> dict:
    """connectProduct for one store variant; returns the payload (userErrors unchecked)."""
    data = await client.data(
        """mutation($sp: ID!, $p: ID!, $m: ID!, $v: ID!, $k: ID!) { connectProduct(input: {
        storeProductId: $sp, productId: $p, logisticsMethodId: $m, variants: [{storeVariantId: $v, skuId: $k}]})
        { productLink { id status } userErrors { code field message } } }""",
        {
            "sp": store_product_id,
            "p": cat["product"],
            "m": cat["method"],
            "v": variant_id,
            "k": cat["skus"][sku_code],
        },
        token=buyer.token,
    )
    return data["connectProduct"]


ORDER = """query($id: ID!) { order(id: $id) { id number status kind goodsAmount freightAmount paidAmount
  carrier trackingNumber trackingSync lines { id quantity source unitPrice sku { code } }
  timeline { fromStatus toStatus reason } latestTransition { toStatus } store { name } } }"""


async def connect_red_tee(
    client: GraphQLHttp, buyer: Member, sim: Sim, cat: dict
) -> tuple[dict, dict, dict]:
    """A store of ``buyer``, synced, its Red/M tee variant connected to the supplier's TEE-R-M:
    the ``connectStore`` payload, the store's red variant, the ``connectVariant`` payload."""
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    red = next(v for v in tee["variants"] if v["option1"] == "Red")
    await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code field message } } }",
        {"s": store["store"]["id"]},
        token=buyer.token,
    )
    products = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id variants { id externalId } } } }",
            {"s": store["store"]["id"]},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"]
    variant = next(v["id"] for v in products[0]["variants"] if v["externalId"] == str(red["id"]))
    connected = await connect_variant(client, buyer, products[0]["id"], cat, variant, "TEE-R-M")
    return store, red, connected


async def top_up_and_pay(
    client: GraphQLHttp, supplier: Member, buyer: Member, order_id: str
) -> None:
    """The supplier tops the buyer's wallet up by 50.00 USD, and the buyer pays ``order_id``
    from it."""
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "50.00", currency: "USD") { userErrors { code } } }',
        {"b": buyer.gid},
        token=supplier.token,
    )
    await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
        {"o": order_id},
        token=buyer.token,
    )


async def test_store_order_with_connected_product_through_to_fulfilled(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    store = await connect_store(client, buyer, sim)
    store_id = store["store"]["id"]
    tee = await sim.product("Tee")
    red = next(v for v in tee["variants"] if v["option1"] == "Red")

    # products come in by sync; the buyer connects the Red/M variant to the supplier SKU
    synced = await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { productsSynced ordersCreated userErrors { code field message } } }",
        {"s": store_id},
        token=buyer.token,
    )
    assert synced["productsSynced"] == 2
    products = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id variants { id externalId attributes } } } }",
            {"s": store_id},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"]
    variant = next(v for p in products for v in p["variants"] if v["externalId"] == str(red["id"]))
    payload = await connect_variant(client, buyer, products[0]["id"], cat, variant["id"], "TEE-R-M")
    assert payload["userErrors"] == [], payload

    # an order arrives by signed webhook: connected, so AWAITING_PAYMENT at once
    made = await sim.order(
        red["id"],
        line_items=[{"variant_id": red["id"], "quantity": 3}],
        deliver_to=f"{server.url}{store['webhookUrlPath']}",
    )
    assert made["webhook_status"] == 202  # accepted; taken in by the inbox worker
    await server.store_inbox_drained()
    orders = (
        await client.data(
            "{ orders(first: 10) { edges { node { id status storeOrderNumber } } } }",
            token=buyer.token,
        )
    )["orders"]["edges"]
    [order] = [e["node"] for e in orders if e["node"]["storeOrderNumber"] == made["order"]["name"]]
    assert order["status"] == "AWAITING_PAYMENT"

    # freight: 600 g to GB = 3.00 + one 500 g step 1.50; goods 3 x 5.00
    quote = (
        await client.data(
            "query($o: ID!) { freightQuote(orderIds: [$o]) { goods freight total currency } }",
            {"o": order["id"]},
            token=buyer.token,
        )
    )["freightQuote"]
    assert quote == {"goods": "15.00", "freight": "4.50", "total": "19.50", "currency": "USD"}

    # too little money: refused, nothing charged or changed
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "10.00", currency: "USD") { wallet { balance } userErrors { code } } }',
        {"b": buyer.gid},
        token=supplier.token,
    )
    refused = (
        await client.data(
            "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
            {"o": order["id"]},
            token=buyer.token,
        )
    )["payOrders"]["userErrors"]
    assert refused[0]["code"] == "INSUFFICIENT_FUNDS" and "9.50 short" in refused[0]["message"]
    assert (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"][
        "status"
    ] == "AWAITING_PAYMENT"

    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "20.00", currency: "USD") { wallet { balance } userErrors { code } } }',
        {"b": buyer.gid},
        token=supplier.token,
    )
    paid = await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { orders { status paidAmount } charged { total } userErrors { code message } } }",
        {"o": order["id"]},
        token=buyer.token,
    )
    assert paid["orders"] == [{"status": "AWAITING_SHIPPING", "paidAmount": "19.50"}]
    wallets = (await client.data("{ wallets { nodes { balance } } }", token=buyer.token))[
        "wallets"
    ]["nodes"]
    assert wallets == [{"balance": "10.50"}]

    # the buyer cannot ship; the supplier ships and the tracking reaches the store
    denied = (
        await client.data(
            'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "X") { userErrors { code } } }',
            {"o": order["id"]},
            token=buyer.token,
        )
    )["shipOrder"]["userErrors"]
    assert denied == [{"code": "FORBIDDEN"}]
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "JD0001") { order { status } userErrors { code } } }',
        {"o": order["id"]},
        token=supplier.token,
    )
    for _ in range(100):
        if await sim.fulfillments():
            break
        await asyncio.sleep(0.05)
    [fulfillment] = await sim.fulfillments()
    assert fulfillment["tracking_number"] == "JD0001"
    for _ in range(100):
        state = (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"]
        if state["trackingSync"] == "SYNCED":
            break
        await asyncio.sleep(0.05)
    assert state["trackingSync"] == "SYNCED"

    await ok(
        client,
        "mutation($o: ID!) { markDelivered(orderId: $o) { order { status } userErrors { code } } }",
        {"o": order["id"]},
        token=supplier.token,
    )
    final = (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"]
    assert final["status"] == "FULFILLED"
    assert [t["toStatus"] for t in final["timeline"]] == [
        "AWAITING_PAYMENT",
        "AWAITING_SHIPPING",
        "SHIPPED",
        "FULFILLED",
    ]
    assert (
        final["lines"][0]["unitPrice"] == "5.00" and final["lines"][0]["sku"]["code"] == "TEE-R-M"
    )

    # another buyer sees none of it
    stranger = await make_member("BUYER")
    assert (await client.data(ORDER, {"id": order["id"]}, token=stranger.token))["order"] is None
    assert (await client.data("{ orders { edges { node { id } } } }", token=stranger.token))[
        "orders"
    ]["edges"] == []


async def test_webhook_signatures_and_duplicates(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    variant = tee["variants"][0]
    url = f"{server.url}{store['webhookUrlPath']}"
    forged = await sim.order(variant["id"], deliver_to=url, bad_signature=True)
    assert forged["webhook_status"] == 401
    good = await sim.order(variant["id"], deliver_to=url)
    assert good["webhook_status"] == 202
    again = await sim.control.post(f"/_sim/redeliver/{good['order']['id']}")
    assert again.json()["webhook_status"] == 200  # a duplicate: nothing queued
    await server.store_inbox_drained()
    async with httpx.AsyncClient() as http:
        missing = await http.post(url, content=b"{}", headers={"content-type": "application/json"})
        # a captured body, signed, with a new event id and a time years ahead: refused
        body = json.dumps(good["order"]).encode()

        async def resend(at: datetime) -> httpx.Response:
            return await http.post(
                url,
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-shopify-hmac-sha256": sign(body, SECRET),
                    "x-shopify-event-id": uuid.uuid4().hex,
                    "x-shopify-triggered-at": at.isoformat(),
                },
            )

        ahead = await resend(datetime.now(UTC) + timedelta(days=3 * 365))
        skewed = await resend(datetime.now(UTC) + timedelta(minutes=1))  # a clock a bit fast
        garbled = b"<html>not an order</html>"  # signed, but not JSON
        not_json = await http.post(
            url,
            content=garbled,
            headers={
                "x-shopify-hmac-sha256": sign(garbled, SECRET),
                "x-shopify-event-id": uuid.uuid4().hex,
                "x-shopify-triggered-at": datetime.now(UTC).isoformat(),
            },
        )
    # said in the API's words, not the JSON parser's ("invalid literal ... line 1 column 1")
    assert (not_json.status_code, not_json.json()) == (
        400,
        {"status": "invalid", "error": "the body is not JSON: a store order object"},
    )
    assert missing.status_code == 401
    assert ahead.status_code == 400 and "ahead" in ahead.json()["error"]
    assert skewed.status_code == 202
    await server.store_inbox_drained()  # the same store order: still one order
    edges = (
        await client.data(
            "{ orders { edges { node { status storeOrderNumber } } } }", token=buyer.token
        )
    )["orders"]["edges"]
    assert [e["node"] for e in edges] == [
        {"status": "UNRECOGNIZED", "storeOrderNumber": good["order"]["name"]}
    ]


async def test_unconnected_order_quote_connect_pay_and_partial_refund(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    blue = next(v for v in tee["variants"] if v["option1"] == "Blue")
    await sim.order(blue["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    await server.store_inbox_drained()
    [edge] = (
        await client.data(
            "{ orders { edges { node { id status lines { id } } } } }", token=buyer.token
        )
    )["orders"]["edges"]
    order = edge["node"]
    assert order["status"] == "UNRECOGNIZED"
    products = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id } } }",
            {"s": store["store"]["id"]},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"]

    quote = await ok(
        client,
        'mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p, note: "need blue L", targetPrice: "5.50"}) { quote { id status } userErrors { code field } } }',
        {"s": supplier.gid, "p": products[0]["id"]},
        token=buyer.token,
    )
    assert quote["quote"]["status"] == "REQUESTED"
    cat = await supplier_catalogue(client, supplier)
    answered = await ok(
        client,
        'mutation($q: ID!, $p: ID!, $k: ID!) { answerQuote(input: {quoteId: $q, productId: $p, prices: [{skuId: $k, unitPrice: "6.00"}], message: "in stock"}) { quote { status skuPrices { unitPrice } } userErrors { code field } } }',
        {"q": quote["quote"]["id"], "p": cat["product"], "k": cat["skus"]["TEE-B-L"]},
        token=supplier.token,
    )
    assert answered["quote"]["status"] == "QUOTED"
    await ok(
        client,
        "mutation($q: ID!) { acceptQuote(quoteId: $q) { quote { status } userErrors { code } } }",
        {"q": quote["quote"]["id"]},
        token=buyer.token,
    )

    # products synced from the store carry the variants' attributes
    await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { ordersCreated userErrors { code field message } } }",
        {"s": store["store"]["id"]},
        token=buyer.token,
    )
    # the attributes of Red/M do not match the Blue/L variant: a clear error naming it
    variants = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { variants { id externalId } } } }",
            {"s": store["store"]["id"]},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"][0]["variants"]
    blue_variant = next(v["id"] for v in variants if v["externalId"] == str(blue["id"]))
    mismatch = (
        await connect_variant(client, buyer, products[0]["id"], cat, blue_variant, "TEE-R-M")
    )["userErrors"]
    assert mismatch[0]["code"] == "ATTRIBUTES_MISMATCH" and "Blue" in mismatch[0]["message"]
    payload = await connect_variant(client, buyer, products[0]["id"], cat, blue_variant, "TEE-B-L")
    assert payload["userErrors"] == [], payload
    state = (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"]
    assert state["status"] == "AWAITING_PAYMENT"

    await top_up_and_pay(client, supplier, buyer, order["id"])
    # cancel is refused once paid; a depute is the way
    refused = (
        await client.data(
            "mutation($o: ID!) { cancelOrders(orderIds: [$o]) { userErrors { code } } }",
            {"o": order["id"]},
            token=buyer.token,
        )
    )["cancelOrders"]["userErrors"]
    assert refused == [{"code": "ILLEGAL_TRANSITION"}]
    depute = await ok(
        client,
        'mutation($o: ID!) { openDepute(input: {orderId: $o, type: DAMAGED, reason: "torn", evidence: ["https://img/1"], expectedOutcome: REFUND}) { depute { id status } userErrors { code field } } }',
        {"o": order["id"]},
        token=buyer.token,
    )
    too_much = (
        await client.data(
            'mutation($d: ID!) { refundDepute(deputeId: $d, amount: "1000.00", note: "x") { userErrors { code field } } }',
            {"d": depute["depute"]["id"]},
            token=supplier.token,
        )
    )["refundDepute"]["userErrors"]
    assert too_much == [{"code": "INVALID", "field": "amount"}]
    await ok(
        client,
        'mutation($d: ID!) { refundDepute(deputeId: $d, amount: "4.00", note: "partial") { depute { status refundAmount } userErrors { code field } } }',
        {"d": depute["depute"]["id"]},
        token=supplier.token,
    )
    final = (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"]
    assert final["status"] == "REFUNDED"
    paid = Decimal(final["paidAmount"])
    [wallet] = (await client.data("{ wallets { nodes { balance } } }", token=buyer.token))[
        "wallets"
    ]["nodes"]
    assert Decimal(wallet["balance"]) == Decimal("50.00") - paid + Decimal("4.00")


async def test_manual_order_and_sku_level_connection(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    made = await ok(
        client,
        """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 10}],
        logisticsMethodId: $m, shippingAddress: {name: "Shop", address1: "1 Road", city: "Paris", countryCode: "FR"}})
        { order { id status kind } userErrors { code field message } } }""",
        {"k": cat["skus"]["TEE-R-M"], "m": cat["method"]},
        token=buyer.token,
    )
    assert made["order"]["status"] == "AWAITING_PAYMENT" and made["order"]["kind"] == "MANUAL"
    quote = (
        await client.data(
            "query($o: ID!) { freightQuote(orderIds: [$o]) { goods freight } }",
            {"o": made["order"]["id"]},
            token=buyer.token,
        )
    )["freightQuote"]
    # 10 units reach the 4.00 tier; 2000 g to FR ("*"): 8.00 + 3 steps of 2.00
    assert quote == {"goods": "40.00", "freight": "14.00"}
    bad = (
        await client.data(
            """mutation($k: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 0}],
        shippingAddress: {name: "", address1: "1", city: "P", countryCode: "FR"}}) { order { id } userErrors { code field } } }""",
            {"k": cat["skus"]["TEE-R-M"]},
            token=buyer.token,
        )
    )["createManualOrder"]
    assert bad["order"] is None and bad["userErrors"][0]["field"] == "input.lines.0.quantity"
    cancelled = await ok(
        client,
        "mutation($o: ID!) { cancelOrders(orderIds: [$o]) { orders { status } userErrors { code } } }",
        {"o": made["order"]["id"]},
        token=buyer.token,
    )
    assert cancelled["orders"] == [{"status": "CANCELLED"}]


async def test_wallet_never_goes_negative_under_concurrent_payments(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    from domain.payments.models import Wallet, WalletEntry

    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order_ids = []
    for _ in range(10):
        made = await ok(
            client,
            """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}],
            logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}})
            { order { id } userErrors { code } } }""",
            {"k": cat["skus"]["TEE-R-M"], "m": cat["method"]},
            token=buyer.token,
        )
        order_ids.append(made["order"]["id"])
    # each costs 5.00 + 3.00 freight; money for exactly 4
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "32.00", currency: "USD") { userErrors { code } } }',
        {"b": buyer.gid},
        token=supplier.token,
    )
    results = await asyncio.gather(
        *(
            client.data(
                "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code } } }",
                {"o": o},
                token=buyer.token,
            )
            for o in order_ids
        )
    )
    paid = [r for r in results if not r["payOrders"]["userErrors"]]
    assert len(paid) == 4
    assert {e["code"] for r in results for e in r["payOrders"]["userErrors"]} <= {
        "INSUFFICIENT_FUNDS",
        "CONFLICT",
    }
    wallet = await Wallet.get(buyer_id=buyer.organisation_id, supplier_id=supplier.organisation_id)
    entries = await WalletEntry.filter(wallet_id=wallet.id).values_list("amount", flat=True)
    assert wallet.balance == sum(entries, Decimal("0")) == Decimal("0.00")


async def test_status_subscription_and_mapping_drift(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, ws_connect, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    ws = await ws_connect(buyer.token)
    await ws.acknowledged()
    await ws.subscribe(
        "subscription { orderStatusChanged { orderId fromStatus toStatus order { number } } }"
    )
    await server.wait_for_subscribers(1)
    made = await ok(
        client,
        """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}],
        logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}})
        { order { id number } userErrors { code } } }""",
        {"k": cat["skus"]["TEE-R-M"], "m": cat["method"]},
        token=buyer.token,
    )
    order_id = made["order"]["id"]
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "8.00", currency: "USD") { userErrors { code } } }',
        {"b": buyer.gid},
        token=supplier.token,
    )
    await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code } } }",
        {"o": order_id},
        token=buyer.token,
    )
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "UPS", trackingNumber: "1Z") { userErrors { code } } }',
        {"o": order_id},
        token=supplier.token,
    )
    await ok(
        client,
        "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code } } }",
        {"o": order_id},
        token=supplier.token,
    )
    changes = [(await ws.next_data())["orderStatusChanged"] for _ in range(3)]
    assert [(c["fromStatus"], c["toStatus"]) for c in changes] == [
        ("AWAITING_PAYMENT", "AWAITING_SHIPPING"),
        ("AWAITING_SHIPPING", "SHIPPED"),
        ("SHIPPED", "FULFILLED"),
    ]
    assert {c["order"]["number"] for c in changes} == {made["order"]["number"]}

    # drift: the supplier changes a connected SKU; the connection goes STALE, the buyer is told
    store, red, payload = await connect_red_tee(client, buyer, sim, cat)
    assert payload["userErrors"] == [], payload
    await sim.order(red["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    await server.store_inbox_drained()
    await ok(
        client,
        'mutation($k: ID!) { updateSku(input: {skuId: $k, attributes: {color: "Crimson", size: "M"}}) { sku { code } userErrors { code } } }',
        {"k": cat["skus"]["TEE-R-M"]},
        token=supplier.token,
    )
    connection = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { productLink { status staleReason } } } }",
            {"s": store["store"]["id"]},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"][0]["productLink"]
    assert connection["status"] == "STALE" and "Crimson" in connection["staleReason"]
    stale = (
        await client.data(
            "{ events(types: [PRODUCT_LINK_STALE]) { edges { node { payload } } } }",
            token=buyer.token,
        )
    )["events"]["edges"]
    assert len(stale[0]["node"]["payload"]["affectedOrderIds"]) == 1
    # the name it had before, deprecated, still selects those events (under their new name)
    by_old_name = (
        await client.data(
            "{ events(types: [CONNECTION_STALE]) { edges { node { type payload } } } }",
            token=buyer.token,
        )
    )["events"]["edges"]
    assert [e["node"] for e in by_old_name] == [
        {"type": "PRODUCT_LINK_STALE", "payload": stale[0]["node"]["payload"]}
    ]


async def test_order_level_sku_connection_abnormal_hold_and_bad_input(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    other_buyer = await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    await sim.order(tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    await server.store_inbox_drained()
    [edge] = (
        await client.data(
            "{ orders { edges { node { id status lines { id } } } } }", token=buyer.token
        )
    )["orders"]["edges"]
    order = edge["node"]
    assert order["status"] == "UNRECOGNIZED"
    connect = "mutation($o: ID!, $l: ID!, $k: ID!) { connectOrderSku(orderId: $o, lineId: $l, skuId: $k) { order { status } userErrors { code field } } }"
    variables = {"o": order["id"], "l": order["lines"][0]["id"], "k": cat["skus"]["TEE-B-L"]}
    # another buyer cannot touch it; unknown ids are NOT_FOUND
    foreign = (await client.data(connect, variables, token=other_buyer.token))["connectOrderSku"]
    assert foreign == {
        "order": None,
        "userErrors": [{"code": "NOT_FOUND", "field": "orderId"}],
    }
    unknown = (
        await client.data(connect, {**variables, "k": gid("Sku", 999999)}, token=buyer.token)
    )["connectOrderSku"]
    assert unknown["userErrors"] == [{"code": "NOT_FOUND", "field": "skuId"}]
    # an inactive SKU is refused
    await ok(
        client,
        "mutation($k: ID!) { updateSku(input: {skuId: $k, isActive: false}) { userErrors { code } } }",
        {"k": cat["skus"]["TEE-B-L"]},
        token=supplier.token,
    )
    inactive = (await client.data(connect, variables, token=buyer.token))["connectOrderSku"]
    assert inactive["userErrors"] == [{"code": "INACTIVE", "field": "skuId"}]
    connected = await ok(
        client, connect, {**variables, "k": cat["skus"]["TEE-R-M"]}, token=buyer.token
    )
    assert connected["order"]["status"] == "AWAITING_PAYMENT"

    # staff hold it as abnormal and resolve it back
    held = await ok(
        client,
        'mutation($o: ID!) { holdOrderAbnormal(orderId: $o, reason: "address check") { order { status abnormalReason } userErrors { code } } }',
        {"o": order["id"]},
        token=supplier.token,
    )
    assert held["order"] == {"status": "ABNORMAL", "abnormalReason": "address check"}
    unpaid = (
        await client.data(
            "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code } } }",
            {"o": order["id"]},
            token=buyer.token,
        )
    )["payOrders"]["userErrors"]
    assert unpaid == [{"code": "ILLEGAL_TRANSITION"}]
    back = await ok(
        client,
        'mutation($o: ID!) { resolveOrderAbnormal(orderId: $o, note: "ok") { order { status } userErrors { code } } }',
        {"o": order["id"]},
        token=supplier.token,
    )
    assert back["order"]["status"] == "AWAITING_PAYMENT"
    # a top-up in another currency is refused
    mismatch = (
        await client.data(
            'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "5.00", currency: "EUR") { userErrors { code } } }',
            {"b": buyer.gid},
            token=supplier.token,
        )
    )["topUpWallet"]["userErrors"]
    assert mismatch == [{"code": "CURRENCY_MISMATCH"}]
    negative = (
        await client.data(
            'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "-5.00", currency: "USD") { userErrors { code field } } }',
            {"b": buyer.gid},
            token=supplier.token,
        )
    )["topUpWallet"]["userErrors"]
    assert negative == [{"code": "INVALID", "field": "amount"}]


async def test_a_payment_too_large_for_any_amount_is_refused_with_a_typed_error(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """Goods at the highest price a SKU may have, times a few: the total passes what an amount
    column holds (it answered INTERNAL_SERVER_ERROR); now a typed refusal, nothing written."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    product = await ok(
        client,
        """mutation { createProduct(input: {title: "Gold", skus: [
          {code: "GOLD", attributes: {}, weightGrams: 100, unitPrice: "999999999999.99"}]})
          { product { skus { id } } userErrors { code field message } } }""",
        token=supplier.token,
    )
    method = await ok(
        client,
        """mutation { createLogisticsMethod(input: {name: "Air", minDays: 1, maxDays: 2, rules: [
          {countryCode: "*", firstWeightGrams: 500, firstPrice: "1.00", stepGrams: 500,
           stepPrice: "1.00"}]}) { logisticsMethod { id } userErrors { code field message } } }""",
        token=supplier.token,
    )
    order = await ok(
        client,
        """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 3}],
          logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St",
          city: "London", zip: "N1", countryCode: "GB"}}) { order { id } userErrors { code field message } } }""",
        {"k": product["product"]["skus"][0]["id"], "m": method["logisticsMethod"]["id"]},
        token=buyer.token,
    )
    for query in (
        "query($o: [ID!]!) { freightQuote(orderIds: $o) { total } }",
        "mutation($o: [ID!]!) { payOrders(orderIds: $o) { userErrors { code field } } }",
    ):
        answer = await client.post(query, {"o": [order["order"]["id"]]}, token=buyer.token)
        text = json.dumps(answer)
        assert "INTERNAL_SERVER_ERROR" not in text, text
        assert "INVALID" in text or "BAD_USER_INPUT" in text, text
    status = await client.data(
        "query($o: ID!) { order(id: $o) { status paidAmount } }",
        {"o": order["order"]["id"]},
        token=buyer.token,
    )
    assert status["order"] == {"status": "AWAITING_PAYMENT", "paidAmount": "0.00"}
