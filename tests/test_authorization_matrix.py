"""The authorisation matrix: every Query, Mutation and Subscription field of the live schema,
run by every kind of caller against one world owned by an organisation pair.

The pair is buyer A (a distributor with a store, orders in every state, quotes, a wallet,
deputes, returns, failed withdrawals and cloud-warehouse stock) and supplier S (the orders'
supplier: catalogue, logistics method, partnership, third-party and cloud warehouses). Callers:

* anonymous, and a token of A's owner revoked through the API: refused as UNAUTHENTICATED, over
  HTTP and over WebSockets opened before the revocation (one idle, one with a subscription);
* buyer B and supplier T, organisations outside the pair: see nothing of the pair and change
  nothing of it (an argument naming the pair's object is refused with NOT_FOUND or FORBIDDEN,
  which do not tell whether it exists);
* a member of A or S one role below what the field needs: refused;
* the right role (a member of A or S with exactly the declared role; A's and S's owners for
  subscriptions): served, or refused only for a reason of the domain.

Who may use a field is its ``Requires`` declaration, read from the schema (``declared_access``):
a field without one fails, and the matrix cannot drift from the API. The declarations are then
checked against the domain's own guards: with the API's check switched off (in this test only,
``api_checks_off``), the callers a declaration refuses (the member one role below, and the
right role of the other organisation kind) must still be refused by the domain (FORBIDDEN or
NOT_FOUND, or an empty answer to a query) and change nothing. A guard looser than its
declaration fails there; one tighter fails the first pass (the right role refused).

Fields are read from the schema, so a new field cannot be left out: its required arguments must
be in ``arguments``. What the callers must not see is read from the database
(``tests.support.authz.pair_secrets``), not through the API under test. The figure (fields x
callers tried, leaks found) is printed (``-s``) and is in the failure message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from domain.events.models import Event
from integrations.stores.simulator import create_store_simulator
from resolvers.nodes import MAX_NODES, NODE_TYPES
from schema.build import create_schema
from schema.global_ids import gid
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.authz import (
    INPUT_CODES,
    OPAQUE_REFUSALS,
    WRONG_REFUSALS,
    Access,
    Arguments,
    Kind,
    Operation,
    Outcome,
    Ref,
    Secrets,
    Side,
    Unique,
    api_checks_off,
    build_operation,
    declared_access,
    find_leaks,
    member_secrets,
    pair_secrets,
    qualified,
    root_fields,
    run_over_socket,
    walk,
)
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WAREHOUSE_KEY,
    WarehouseSim,
    eventually,
    order_state,
    warehouse_simulator,
)
from tests.support.events import seq_of
from tests.support.graphql_client import GraphQLHttp, GraphQLWebSocket
from tests.support.server import IDLE_SAFE, RunningServer, serve
from tests.support.services import answers, redis_url
from tests.test_order_flow import connect_variant, ok, supplier_catalogue
from tests.test_store_integration import Sim

STORE_TOKEN, STORE_SECRET = "authz-store-token", "authz-store-secret"

# -- who may use what ------------------------------------------------------------------------------

BOTH = "both"
LOOKUPS = frozenset({"Query.node", "Query.nodes"})
STATE = "(the pair's state)"  # a finding about the state snapshot, not one field

# Fields a declaration lets both sides use, whose arguments (in ``arguments``) name one side's
# objects: the right role of the other side would only get NOT_FOUND.
ARGUMENT_SIDES: dict[str, Side] = {
    "Mutation.revokeApiToken": "buyer",  # the token is A's owner's, not the caller's
}


@functools.cache
def _declared() -> dict[str, Access | None]:
    return declared_access(create_schema()._schema)


def access_of(op_name: str) -> Access:
    """The field's declaration (``Requires``), as the schema has it."""
    access = _declared()[op_name]
    assert access is not None, f"{op_name} declares no `Requires`"
    return access


# Queries whose right answer holds nothing private of the pair (catalogue, settings, counts).
NO_PRIVATE_DATA = frozenset(
    {
        "Query.products",
        "Query.logisticsMethods",
        "Query.cloudWarehouses",
        "Query.distributionSettings",
        "Query.orderCounts",
        "Query.slaRules",  # the rules and the caller's own deadlines: nothing of anyone else
    }
)

# Mutations an outsider may complete although they name an object of the pair, and why. None:
# ``topUpWallet`` was one (any supplier opened a wallet with any buyer) until a supplier could
# top up only the buyers it trades with (``domain.trading``); T topping up A is NOT_FOUND now.
OPEN_TO_OUTSIDERS: dict[str, str] = {}


# -- the world -------------------------------------------------------------------------------------


@dataclass
class World:
    a: Member  # buyer A's owner
    s: Member  # supplier S's owner
    b: Member  # another buyer organisation
    t: Member  # another supplier
    u: Member  # a supplier A may still apply to
    members: dict[tuple[int, str], Member]  # (organisation, role) -> member of A or S
    catalogue: dict[str, Any]
    spare_product: str
    store: str
    store_product: str
    variants: dict[str, str]  # store product and colour -> store variant
    second_product: str  # another store product, not connected
    connection: str
    quotes: dict[str, str]
    orders: dict[str, str]
    lines: dict[str, str]  # order name -> its first line
    deputes: dict[str, str]
    partnership: str
    pending_partnership: str  # another distributor's application to S
    distribution_warehouse: str
    third_party: dict[str, str]
    after_sales: dict[str, str]
    withdrawals: dict[str, str]
    cloud_warehouse: str
    stock_item: str
    wallet: str
    spare_token: str
    first_event: str  # replays A's events from its first
    store_url: str
    warehouse_url: str

    @property
    def pair(self) -> set[int]:
        return {self.a.organisation_id, self.s.organisation_id}


def sides(op_name: str) -> list[str]:
    """The sides of the pair whose right role runs the field."""
    if op_name in ARGUMENT_SIDES:
        return [ARGUMENT_SIDES[op_name]]
    access = access_of(op_name)
    return ["buyer", "supplier"] if access.side == BOTH else [access.side]


def unique(prefix: str) -> Unique:
    return Unique(lambda: f"{prefix} {uuid.uuid4().hex[:8]}")


def arguments(w: World) -> Arguments:
    """The argument table: what every argument of every root field is, drawn from the world.

    A ``Ref`` names an object of the pair the field acts on (an outsider must be refused); a
    plain id refers to something public (S's catalogue, its cloud warehouse, S itself).
    """

    def order(name: str) -> Ref:
        return Ref("Order", w.orders[name])

    red, blue = w.catalogue["skus"]["TEE-R-M"], w.catalogue["skus"]["TEE-B-L"]
    return {
        # objects of the pair, per field
        "order.id": order("store"),
        "node.id": order("store"),
        "nodes.ids": [
            order("store"),
            Ref("OrderLine", w.lines["fulfilled"]),
            Ref("AfterSalesOrder", w.after_sales["push"]),
            Ref("Withdrawal", w.withdrawals["retry"]),
            Ref("Depute", w.deputes["refund"]),
            Ref("Quote", w.quotes["requested"]),
            Ref("Store", w.store),
            Ref("StoreProduct", w.store_product),
            Ref("StoreVariant", w.variants["Mug Red"]),
            Ref("ProductLink", w.connection),
            Ref("Wallet", w.wallet),
            Ref("StockItem", w.stock_item),
            Ref("Partnership", w.partnership),
            Ref("DistributionWarehouse", w.distribution_warehouse),
            Ref("ThirdPartyWarehouse", w.third_party["main"]),
            Ref("ApiToken", w.spare_token),
            Ref("Organisation", w.a.gid),
        ],
        "afterSalesOrder.id": Ref("AfterSalesOrder", w.after_sales["push"]),
        "testThirdPartyWarehouse.id": Ref("ThirdPartyWarehouse", w.third_party["main"]),
        "revokeThirdPartyWarehouse.id": Ref("ThirdPartyWarehouse", w.third_party["spare"]),
        "RevokeApiTokenInput.id": Ref("ApiToken", w.spare_token),
        "freightQuote.orderIds": [order("pay")],
        "connectOrderSku.orderId": order("unrecognised"),
        "connectOrderSku.lineId": Ref("OrderLine", w.lines["unrecognised"]),
        "connectOrderSku.skuId": blue,
        "cancelOrders.orderIds": [order("cancel")],
        "payOrders.orderIds": [order("pay")],
        "shipOrder.orderId": order("ship"),
        "SlaRuleInput.rule": "PAID_NOT_SHIPPED",
        "markDelivered.orderId": order("deliver"),
        "holdOrderAbnormal.orderId": order("hold"),
        "resolveOrderAbnormal.orderId": order("abnormal"),
        "OpenDeputeInput.orderId": order("depute"),
        "refundDepute.deputeId": Ref("Depute", w.deputes["refund"]),
        "resolveDepute.deputeId": Ref("Depute", w.deputes["resolve"]),
        "pushOrders.orderIds": [order("push")],
        "withdrawOrder.orderId": order("withdraw"),
        "withdrawAfterSalesOrder.afterSalesId": Ref("AfterSalesOrder", w.after_sales["withdraw"]),
        "retryWithdrawal.withdrawalId": Ref("Withdrawal", w.withdrawals["retry"]),
        "closeWithdrawal.withdrawalId": Ref("Withdrawal", w.withdrawals["close"]),
        "convertWithdrawalToReturn.withdrawalId": Ref("Withdrawal", w.withdrawals["convert"]),
        "CreateAfterSalesOrderInput.orderId": order("fulfilled"),
        "ReturnItemInput.lineId": Ref("OrderLine", w.lines["fulfilled"]),
        "pushReturns.afterSalesIds": [Ref("AfterSalesOrder", w.after_sales["push"])],
        "receiveStock.orderId": order("in_transit"),
        "AnswerQuoteInput.quoteId": Ref("Quote", w.quotes["requested"]),
        "acceptQuote.quoteId": Ref("Quote", w.quotes["accept"]),
        "declineQuote.quoteId": Ref("Quote", w.quotes["decline"]),
        "UpdateSkuInput.skuId": Ref("Sku", red),
        "discontinueProduct.productId": Ref("Product", w.spare_product),
        "selectDistributionWarehouse.warehouseId": Ref(
            "DistributionWarehouse", w.distribution_warehouse
        ),
        "selectDistributionWarehouse.thirdPartyWarehouseId": Ref(
            "ThirdPartyWarehouse", w.third_party["main"]
        ),
        "storeId": Ref("Store", w.store),
        "storeProductId": Ref("StoreProduct", w.store_product),
        "ConnectProductInput.storeProductId": Ref("StoreProduct", w.second_product),
        "storeVariantId": Ref("StoreVariant", w.variants["Mug Red"]),
        "productLinkId": Ref("ProductLink", w.connection),
        "walletId": Ref("Wallet", w.wallet),
        "stockItemId": Ref("StockItem", w.stock_item),
        "partnershipId": Ref("Partnership", w.partnership),
        "decidePartnership.partnershipId": Ref("Partnership", w.pending_partnership),
        "buyerId": Ref("Organisation", w.a.gid),
        # optional arguments worth sending
        "withdrawals.orderId": order("close_failed"),
        "orderStatusChanged.orderIds": [
            order(n) for n in ("cancel", "pay", "ship", "deliver", "hold", "abnormal")
        ],
        "withdrawalStatusChanged.orderIds": [order("withdraw"), order("retry_failed")],
        **{
            f"{name}.afterEventId": w.first_event
            for name in (
                "events",
                "orderStatusChanged",
                "quoteUpdated",
                "withdrawalStatusChanged",
                "returnStatusChanged",
                "inventoryChanged",
            )
        },
        "applyForPartnership.supplierId": w.u.gid,
        "products.supplierId": w.s.gid,
        "logisticsMethods.supplierId": w.s.gid,
        "cloudWarehouses.supplierId": w.s.gid,
        "inventory.warehouseId": w.cloud_warehouse,
        "inventory.skuId": red,
        "createManualOrder.input.logisticsMethodId": w.catalogue["method"],
        "createCloudWarehouseOrder.input.logisticsMethodId": w.catalogue["method"],
        "updateSku.input.weightGrams": 200,
        "setLowStockThreshold.threshold": 3,
        # public things referred to
        "supplierId": w.s.gid,
        "productId": w.catalogue["product"],
        "skuId": red,
        "logisticsMethodId": w.catalogue["method"],
        "CreateCloudWarehouseOrderInput.warehouseId": w.cloud_warehouse,
        # plain values
        "ConnectStoreInput.apiUrl": w.store_url,
        "AuthoriseWarehouseInput.apiUrl": w.warehouse_url,
        "accessToken": STORE_TOKEN,
        "apiKey": WAREHOUSE_KEY,
        "provider": "SimWMS",
        "platform": "SHOPIFY",
        "name": unique("authz"),
        "email": Unique(lambda: f"authz-{uuid.uuid4().hex[:10]}@example.test"),
        "role": "STAFF",
        "title": "Authz product",
        "code": unique("AUTHZ"),
        "attributes": {"color": "Green", "size": "S"},
        "weightGrams": 100,
        "unitPrice": "4.50",
        "minDays": 2,
        "maxDays": 6,
        "countryCode": "GB",
        "firstWeightGrams": 500,
        "firstPrice": "3.00",
        "stepGrams": 500,
        "stepPrice": "1.00",
        "address1": "1 Matrix Road",
        "city": "London",
        "quantity": 1,
        "carrier": "DHL",
        "trackingNumber": unique("TRK"),
        "reason": "authorisation matrix",
        "note": "authorisation matrix",
        "amount": "1.00",
        "currency": "USD",
        "reship": True,
        "accept": True,
        "type": "DAMAGED",
        "expectedOutcome": "REFUND",
    }


async def build_world(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    shop: Sim,
    wh: WarehouseSim,
) -> World:
    a, s = await make_member("BUYER"), await make_member("SUPPLIER")
    b, t = await make_member("BUYER"), await make_member("SUPPLIER")
    u, c = await make_member("SUPPLIER"), await make_member("BUYER")
    members = {
        (org.organisation_id, role): await make_member(
            role=role, organisation_id=org.organisation_id
        )
        for org in (a, s)
        for role in ("VIEWER", "STAFF", "ADMIN")
    }
    cat = await supplier_catalogue(client, s)
    spare = await ok(
        client,
        """mutation { createProduct(input: {title: "Spare", skus: [{code: "SPARE-1", attributes: {},
        weightGrams: 100, unitPrice: "1.00"}]}) { product { id } userErrors { code field message } } }""",
        token=s.token,
    )

    # partnership, with S's third-party warehouse (the simulator) running it; a spare one
    applied = await ok(
        client,
        "mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id } userErrors { code message } } }",
        {"s": s.gid},
        token=a.token,
    )
    partnership = applied["partnership"]["id"]
    pending = await ok(
        client,
        "mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id } userErrors { code message } } }",
        {"s": s.gid},
        token=c.token,
    )
    accepted = await ok(
        client,
        "mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: true) { partnership { warehouseId } userErrors { code message } } }",
        {"p": partnership},
        token=s.token,
    )
    authorise = """mutation($u: String!, $n: String!) { authoriseThirdPartyWarehouse(input: {provider: "SimWMS",
      name: $n, apiUrl: $u, apiKey: "wh-key"}) { thirdPartyWarehouse { id } callbackSecret userErrors { code message } } }"""
    main = await ok(client, authorise, {"u": wh.url, "n": "Main WMS"}, token=s.token)
    await wh.configure(main["callbackSecret"])
    spare_wms = await ok(client, authorise, {"u": wh.url, "n": "Spare WMS"}, token=s.token)
    await ok(
        client,
        "mutation($p: ID!, $w: ID!, $c: ID) { selectDistributionWarehouse(partnershipId: $p, warehouseId: $w, thirdPartyWarehouseId: $c) { userErrors { code message } } }",
        {
            "p": partnership,
            "w": accepted["partnership"]["warehouseId"],
            "c": main["thirdPartyWarehouse"]["id"],
        },
        token=s.token,
    )

    # A's store: synced, Red connected to TEE-R-M; a Red order (recognised) and a Blue one (not)
    store_name = f"A store {uuid.uuid4().hex[:8]}"
    store = await ok(
        client,
        """mutation($u: String!, $n: String!, $k: String!, $w: String!) { connectStore(input: {name: $n,
        platform: SHOPIFY, apiUrl: $u, accessToken: $k, webhookSecret: $w}) { store { id } webhookUrlPath
        userErrors { code field message } } }""",
        {"u": shop.url, "n": store_name, "k": STORE_TOKEN, "w": STORE_SECRET},
        token=a.token,
    )
    store_id = store["store"]["id"]
    tee = await shop.product("Tee")
    mug = await shop.product("Mug")
    external = {v["option1"]: v["id"] for v in tee["variants"]}
    await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code message } } }",
        {"s": store_id},
        token=a.token,
    )
    products = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id title variants { id externalId } } } }",
            {"s": store_id},
            token=a.token,
        )
    )["storeProducts"]["nodes"]
    product = next(p for p in products if p["title"] == "Tee")
    second = next(p for p in products if p["title"] == "Mug")
    variants = {
        colour: next(v["id"] for v in product["variants"] if v["externalId"] == str(ext))
        for colour, ext in external.items()
    }
    red_mug = next(v["id"] for v in mug["variants"] if v["option1"] == "Red")
    variants["Mug Red"] = next(
        v["id"] for v in second["variants"] if v["externalId"] == str(red_mug)
    )
    connected = await connect_variant(client, a, product["id"], cat, variants["Red"], "TEE-R-M")
    assert connected["userErrors"] == [], connected
    webhook = f"{server.url}{store['webhookUrlPath']}"
    red_order = await shop.order(external["Red"], deliver_to=webhook)
    blue_order = await shop.order(external["Blue"], deliver_to=webhook)
    await server.store_inbox_drained()
    edges = (
        await client.data(
            "{ orders(first: 50) { edges { node { id status storeOrderNumber lines { id } } } } }",
            token=a.token,
        )
    )["orders"]["edges"]
    by_number = {e["node"]["storeOrderNumber"]: e["node"] for e in edges}
    orders = {
        "store": by_number[red_order["order"]["name"]]["id"],
        "unrecognised": by_number[blue_order["order"]["name"]]["id"],
    }
    lines = {"unrecognised": by_number[blue_order["order"]["name"]]["lines"][0]["id"]}
    assert by_number[blue_order["order"]["name"]]["status"] == "UNRECOGNIZED"

    # quotes: one to answer, two to decide
    request = """mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p,
      note: "matrix"}) { quote { id } userErrors { code message } } }"""
    answer = """mutation($q: ID!, $p: ID!, $k: ID!) { answerQuote(input: {quoteId: $q, productId: $p,
      prices: [{skuId: $k, unitPrice: "4.80"}]}) { quote { id } userErrors { code message } } }"""
    quotes = {}
    for name in ("requested", "accept", "decline"):
        made = await ok(client, request, {"s": s.gid, "p": product["id"]}, token=a.token)
        quotes[name] = made["quote"]["id"]
        if name != "requested":
            await ok(
                client,
                answer,
                {"q": quotes[name], "p": cat["product"], "k": cat["skus"]["TEE-R-M"]},
                token=s.token,
            )

    # money, then manual orders in every state
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "1000.00", currency: "USD") { userErrors { code } } }',
        {"b": a.gid},
        token=s.token,
    )
    manual = """mutation($k: ID!, $m: ID!, $q: Int!) { createManualOrder(input: {lines: [{skuId: $k, quantity: $q}],
      logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St", city: "London",
      zip: "N1", countryCode: "GB"}}) { order { id lines { id } } userErrors { code field message } } }"""
    for name in (
        "cancel",
        "pay",
        "hold",
        "abnormal",
        "ship",
        "depute",
        "depute_refund",
        "depute_resolve",
        "withdraw",
        "push",
        "retry_failed",
        "close_failed",
        "convert_failed",
        "deliver",
        "fulfilled",
    ):
        made = await ok(
            client,
            manual,
            {
                "k": cat["skus"]["TEE-R-M"],
                "m": cat["method"],
                "q": 3 if name == "fulfilled" else 1,
            },
            token=a.token,
        )
        orders[name] = made["order"]["id"]
        lines[name] = made["order"]["lines"][0]["id"]
    pay = "mutation($o: [ID!]!) { payOrders(orderIds: $o) { userErrors { code message } } }"
    paid = [
        "ship",
        "depute",
        "depute_refund",
        "depute_resolve",
        "withdraw",
        "push",
        "retry_failed",
        "close_failed",
        "convert_failed",
        "deliver",
        "fulfilled",
    ]
    await ok(client, pay, {"o": [orders[n] for n in paid]}, token=a.token)
    await ok(
        client,
        'mutation($o: ID!) { holdOrderAbnormal(orderId: $o, reason: "address check") { userErrors { code } } }',
        {"o": orders["abnormal"]},
        token=s.token,
    )
    ship = 'mutation($o: ID!, $n: String!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: $n) { userErrors { code } } }'
    for name in ("deliver", "fulfilled"):
        await ok(client, ship, {"o": orders[name], "n": f"T-{name}"}, token=s.token)
    await ok(
        client,
        "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code } } }",
        {"o": orders["fulfilled"]},
        token=s.token,
    )
    deputes = {}
    for name in ("refund", "resolve"):
        opened = await ok(
            client,
            """mutation($o: ID!) { openDepute(input: {orderId: $o, type: DAMAGED, reason: "torn",
            expectedOutcome: REFUND}) { depute { id } userErrors { code field } } }""",
            {"o": orders[f"depute_{name}"]},
            token=a.token,
        )
        deputes[name] = opened["depute"]["id"]
    after_sales = {}
    for name in ("withdraw", "push"):
        made = await ok(
            client,
            """mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o, items: [{lineId: $l,
            quantity: 1}], reason: "damaged"}) { afterSalesOrder { id } userErrors { code field message } } }""",
            {"o": orders["fulfilled"], "l": lines["fulfilled"]},
            token=a.token,
        )
        after_sales[name] = made["afterSalesOrder"]["id"]

    # withdrawals the warehouse refused (it had the orders already)
    failing = [orders[n] for n in ("retry_failed", "close_failed", "convert_failed")]
    await ok(
        client,
        "mutation($o: [ID!]!) { pushOrders(orderIds: $o) { userErrors { code message } } }",
        {"o": failing},
        token=s.token,
    )
    for order_id in failing:
        await eventually(
            lambda o=order_id: order_state(client, s.token, o),
            lambda st: st["distribution"]["pushStatus"] == "PUSHED",
        )
    await wh.faults(refuse_cancel=True)
    withdrawals = {}
    for name, order_id in zip(("retry", "close", "convert"), failing, strict=True):
        await ok(
            client,
            "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
            {"o": order_id},
            token=a.token,
        )
        state = await eventually(
            lambda o=order_id: order_state(client, a.token, o),
            lambda st: st["distribution"]["withdrawalStatus"] == "WITHDRAW_FAILED",
        )
        withdrawals[name] = state["withdrawals"][-1]["id"]

    # cloud-warehouse stock: one stocking order received, one in transit
    cloud = await ok(
        client,
        """mutation { createCloudWarehouse(input: {name: "Matrix Dock", address: {name: "Matrix Dock",
        address1: "1 Dock Rd", city: "Felixstowe", zip: "IP11", countryCode: "GB"}})
        { warehouse { id } userErrors { code field message } } }""",
        token=s.token,
    )
    cloud_id = cloud["warehouse"]["id"]
    for name, quantity in (("stocked", 5), ("in_transit", 2)):
        made = await ok(
            client,
            """mutation($w: ID!, $k: ID!, $q: Int!, $m: ID!) { createCloudWarehouseOrder(input: {warehouseId: $w,
            logisticsMethodId: $m, lines: [{skuId: $k, quantity: $q}]}) { order { id } userErrors { code field message } } }""",
            {"w": cloud_id, "k": cat["skus"]["TEE-R-M"], "q": quantity, "m": cat["method"]},
            token=a.token,
        )
        orders[name] = made["order"]["id"]
        await ok(client, pay, {"o": [orders[name]]}, token=a.token)
        await ok(client, ship, {"o": orders[name], "n": f"C-{name}"}, token=s.token)
    await ok(
        client,
        "mutation($o: ID!) { receiveStock(orderId: $o) { userErrors { code field message } } }",
        {"o": orders["stocked"]},
        token=s.token,
    )
    [item] = (await client.data("{ inventory { nodes { id } } }", token=a.token))["inventory"][
        "nodes"
    ]
    [wallet] = [
        w
        for w in (await client.data("{ wallets { nodes { id supplierId } } }", token=a.token))[
            "wallets"
        ]["nodes"]
        if w["supplierId"] == s.gid
    ]
    spare_token = await ok(
        client,
        'mutation { createApiToken(input: {name: "spare"}) { token { id } userErrors { code } } }',
        token=a.token,
    )
    # a year on, every service-level deadline has passed: the pair has breaches of its own
    from datetime import UTC, datetime, timedelta

    from domain.sla import commands as sla

    await sla.sweep(now=datetime.now(UTC) + timedelta(days=365))
    return World(
        a=a,
        s=s,
        b=b,
        t=t,
        u=u,
        members=members,
        catalogue=cat,
        spare_product=spare["product"]["id"],
        store=store_id,
        store_product=product["id"],
        variants=variants,
        second_product=second["id"],
        connection=connected["productLink"]["id"],
        quotes=quotes,
        orders=orders,
        lines=lines,
        deputes=deputes,
        partnership=partnership,
        pending_partnership=pending["partnership"]["id"],
        distribution_warehouse=accepted["partnership"]["warehouseId"],
        third_party={
            "main": main["thirdPartyWarehouse"]["id"],
            "spare": spare_wms["thirdPartyWarehouse"]["id"],
        },
        after_sales=after_sales,
        withdrawals=withdrawals,
        cloud_warehouse=cloud_id,
        stock_item=item["id"],
        wallet=wallet["id"],
        spare_token=spare_token["token"]["id"],
        first_event=gid("Event", 0),  # A is new: its replay from the start is its own events
        store_url=shop.url,
        warehouse_url=wh.url,
    )


# -- the pair's state, as A and S read it ------------------------------------------------------------

A_VIEW = (
    """{ me { organisation { id name } } users(first: 100) { nodes { id email role isActive } } apiTokens(first: 100) { nodes { id revokedAt } }
    stores(first: 100) { nodes { id name lastSyncedAt } } quotes(first: 100) { nodes { id status productId } } wallets(first: 100) { nodes { id supplierId balance } }
    partnerships(first: 100) { nodes { id status warehouseId } } withdrawals(first: 100) { nodes { id status resolution } }
    inventory(first: 100) { nodes { id onHand reserved inTransit lowStockThreshold } } }""",
    """{ orders(first: 100) { edges { node { id status paidAmount refundedAmount carrier trackingNumber
    abnormalReason logisticsMethodId lines { id skuId quantity } deputes { id status }
    distribution { pushStatus withdrawalStatus } } } } }""",
    "{ afterSalesOrders(first: 100) { edges { node { id status pushStatus withdrawalStatus } } } }",
    """query($s: ID!, $p: ID!, $w: ID!, $i: ID!) { storeProducts(storeId: $s, first: 100) { nodes { id productLink { id status } } }
    distributionWarehouses(partnershipId: $p, first: 100) { nodes { id name thirdPartyWarehouseId } }
    walletEntries(walletId: $w, first: 100) { nodes { id amount } } stockMovements(stockItemId: $i) { edges { node { id } } } }""",
)
S_VIEW = (
    """query($s: ID!) { me { organisation { id name } } users(first: 100) { nodes { id email role isActive } }
    apiTokens(first: 100) { nodes { id revokedAt } } products(first: 100) { nodes { id status skus { id unitPrice weightGrams isActive attributes } } }
    logisticsMethods(first: 100) { nodes { id name } } thirdPartyWarehouses(first: 100) { nodes { id isActive lastTestOk lastTestedAt } }
    distributionSettings { chargeOnPush autoPushReturns } cloudWarehouses(supplierId: $s, first: 100) { nodes { id name } } }""",
)


async def pair_state(client: GraphQLHttp, w: World) -> dict[str, Any]:
    """What A and S read of their own state (A's wallets with every supplier: no outsider may
    open one)."""
    state: dict[str, Any] = {}
    a_vars = {"s": w.store, "p": w.partnership, "w": w.wallet, "i": w.stock_item}
    for document in A_VIEW:
        state.update(
            {f"A.{k}": v for k, v in (await client.data(document, a_vars, token=w.a.token)).items()}
        )
    for document in S_VIEW:
        data = await client.data(document, {"s": w.s.gid}, token=w.s.token)
        state.update({f"S.{k}": v for k, v in data.items()})
    return state


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            found += differences(before.get(key), after.get(key), f"{path}.{key}".lstrip("."))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            found += differences(x, y, f"{path}[{i}]")
        return found
    if before != after:
        return [f"{path}: {json.dumps(before)[:160]} -> {json.dumps(after)[:160]}"]
    return []


def identities(body: Any) -> set[tuple[str, str]]:
    """(``__typename``, ``id``) of every object in a response that has both."""
    found: set[tuple[str, str]] = set()
    for _key, holder, _value in walk(body):
        if isinstance(holder.get("__typename"), str) and isinstance(holder.get("id"), str):
            found.add((holder["__typename"], holder["id"]))
    return found


async def every_object_resolves_as_a_node(
    client: GraphQLHttp, actor: Actor, objects: set[tuple[str, str]]
) -> None:
    """``nodes(ids:)`` gives each object back to the caller that read it, as the same type."""
    wanted = sorted(objects)
    for start in range(0, len(wanted), MAX_NODES):
        chunk = wanted[start : start + MAX_NODES]
        data = await client.data(
            "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
            {"ids": [object_id for _, object_id in chunk]},
            token=actor.token,
        )
        got = [(n["__typename"], n["id"]) if n else None for n in data["nodes"]]
        assert got == chunk, (
            actor.label,
            [(w, g) for w, g in zip(chunk, got, strict=True) if w != g],
        )


# -- callers and verdicts ----------------------------------------------------------------------------


@dataclass
class Actor:
    label: str
    category: str  # unauthenticated | outsider | lesser | right
    token: str | None = None
    socket: GraphQLWebSocket | None = None
    member: Member | None = None


@dataclass
class Finding:
    operation: str
    actor: str
    what: str
    response: str


@dataclass
class Matrix:
    """Everything tried, and what went wrong."""

    tried: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    cells: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    leaks: list[Finding] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

    def record(self, op_name: str, actor: str, summary: str) -> None:
        self.tried[actor].add(op_name)
        grouped = actor.startswith(("right role", "lesser role", "domain only"))
        column = actor.split(" (")[0] if grouped else actor
        cell = self.cells[op_name].get(column)
        self.cells[op_name][column] = summary if cell in (None, summary) else f"{cell}|{summary}"

    def figure(self, field_count: int, kinds: dict[str, int]) -> str:
        runs = sum(len(ops) for ops in self.tried.values())
        cells = {(x.operation, x.actor) for x in self.leaks if x.operation != STATE}
        changed = {x.actor for x in self.leaks if x.operation == STATE}
        lines = [
            "authorisation matrix",
            f"  fields: {field_count} ({kinds['query']} queries, {kinds['mutation']} mutations, "
            f"{kinds['subscription']} subscriptions), read from the live schema",
            f"  callers: {len(self.tried)}; field x caller runs: {runs}",
        ]
        for actor in sorted(self.tried):
            leaking = sum(1 for cell in cells if cell[1] == actor)
            note = "; changed the pair's state" if actor in changed else ""
            lines.append(f"    {actor}: {len(self.tried[actor])} fields, {leaking} leaking{note}")
        lines.append(
            f"  leaks found: {len(cells)} field x caller cells, {len(changed)} callers changed "
            f"the pair's state ({len(self.leaks)} findings)"
        )
        for leak in self.leaks:
            lines.append(f"    LEAK {leak.operation} as {leak.actor}: {leak.what}")
            if leak.response:
                lines.append(f"         response: {leak.response}")
        lines.append(f"  other problems: {len(self.problems)}")
        for problem in self.problems:
            lines.append(f"    {problem.operation} as {problem.actor}: {problem.what}")
            if problem.response:
                lines.append(f"         response: {problem.response}")
        return "\n".join(lines)

    def table(self) -> str:
        columns = sorted({c for row in self.cells.values() for c in row})
        rows = [" | ".join(["field", *columns])]
        for op_name, row in self.cells.items():
            rows.append(" | ".join([op_name, *(row.get(c, "-") for c in columns)]))
        return "\n".join(rows)


def summary(outcome: Outcome) -> str:
    codes = outcome.codes
    if codes:
        return ",".join(sorted(set(codes)))
    value = outcome.value
    if isinstance(value, dict) and value.get("edges") == []:
        return "empty"  # a connection's empty page
    return "ok" if value not in (None, []) else "empty"


def judge(
    actor: Actor,
    op: Operation,
    access: Access,
    outcome: Outcome,
    secrets: Secrets,
    pair_view: Secrets,
) -> tuple[list[str], list[str]]:
    """(leaks, other problems) of one response."""
    leaks: list[str] = []
    problems: list[str] = []
    # what a lookup by id answers is never an echo of its argument
    seen = find_leaks(outcome.body, secrets if op.name in LOOKUPS else secrets.without(op.refs))
    if seen:
        leaks.append("sees " + ", ".join(seen[:10]))
    codes = outcome.codes
    if any(code in INPUT_CODES for code in codes):
        problems.append(f"the document or its arguments were refused: {codes}")
    if "INTERNAL_SERVER_ERROR" in codes:
        problems.append("server error")
    if actor.category == "unauthenticated":
        if outcome.value is not None or "UNAUTHENTICATED" not in outcome.error_codes:
            leaks.append(f"not refused as unauthenticated ({summary(outcome)})")
    elif actor.category == "outsider" and op.refs:
        if op.kind == "mutation" and outcome.succeeded and op.name not in OPEN_TO_OUTSIDERS:
            leaks.append("acted on " + ", ".join(f"{r.kind} {r.id}" for r in op.refs))
        telling = [c for c in codes if c not in OPAQUE_REFUSALS | INPUT_CODES]
        telling = [c for c in telling if c != "INTERNAL_SERVER_ERROR"]
        if telling and not outcome.succeeded:
            leaks.append(f"answered {telling} about the pair's object: its existence shows")
    elif actor.category == "lesser" and not access.scoped:
        if not codes or not all(code in OPAQUE_REFUSALS for code in codes):
            leaks.append(f"a {access.lesser_role} was not refused ({summary(outcome)})")
    elif actor.category == "right":
        wrong = [c for c in codes if c in WRONG_REFUSALS]
        if wrong:
            problems.append(f"the right role was refused: {codes}")
        elif (
            op.kind == "query"
            and op.name not in NO_PRIVATE_DATA
            and not find_leaks(outcome.body, pair_view)
        ):
            problems.append("the right role saw nothing of the pair: the table misses it")
    return leaks, problems


def empty(value: Any) -> bool:
    """An answer that holds nothing: null, a list of nulls, or a connection's empty page."""
    if value is None:
        return True
    if isinstance(value, list):
        return all(item is None for item in value)
    if isinstance(value, dict) and ("edges" in value or "nodes" in value):
        return not value.get("edges") and not value.get("nodes")
    return False


def judge_domain(op: Operation, outcome: Outcome, secrets: Secrets) -> list[str]:
    """(leaks) of the domain's answer, with the API's check off, to a caller the field's
    declaration refuses: it must refuse them too (FORBIDDEN or NOT_FOUND), or, for a query,
    answer nothing."""
    leaks: list[str] = []
    seen = find_leaks(outcome.body, secrets if op.name in LOOKUPS else secrets.without(op.refs))
    if seen:
        leaks.append("sees " + ", ".join(seen[:10]))
    codes = outcome.codes
    refused = bool(codes) and all(code in OPAQUE_REFUSALS for code in codes)
    if not refused and not (op.kind == "query" and not codes and empty(outcome.value)):
        leaks.append(f"the domain serves a caller its declaration refuses ({summary(outcome)})")
    return leaks


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["plain", "response-cache"])
def response_cache(request: pytest.FixtureRequest) -> bool:
    """Run the matrix without and with the response cache (its own token cache and pages)."""
    return bool(request.param)


@pytest.fixture
async def server(make_server: ServerFactory, response_cache: bool) -> RunningServer:
    """The app with a fast warehouse worker; with Redis when REDIS_URL answers."""
    overrides: dict[str, Any] = {**FAST_WAREHOUSE, "response_cache": response_cache}
    url = redis_url()
    if url and answers(url, 6379):
        overrides["redis_url"] = url
    return await make_server(**overrides)


@pytest.fixture
async def shop() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token=STORE_TOKEN, webhook_secret=STORE_SECRET)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10, limits=IDLE_SAFE) as control,
    ):
        yield Sim(url=url, control=control)


@pytest.fixture
async def wh() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


# -- the matrix ---------------------------------------------------------------------------------------


class Listener:
    """One socket's subscriptions, read in the background."""

    def __init__(self, actor: Actor, ws: GraphQLWebSocket) -> None:
        self.actor = actor
        self.ws = ws
        self.operations: dict[str, Operation] = {}
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.task: asyncio.Task[None] | None = None
        self.closed: int | None = None

    async def subscribe(self, op: Operation) -> None:
        self.operations[await self.ws.subscribe(op.document, op.variables)] = op

    def served(self, op_id: str) -> int:
        """Results with data this subscription received."""
        field_name = self.operations[op_id].field
        return sum(
            1
            for m in self.received[op_id]
            if m["type"] == "next" and ((m["payload"] or {}).get("data") or {}).get(field_name)
        )

    def refused(self, op_id: str) -> bool:
        """Whether the server refused this subscription (an error, or a closed socket)."""
        return self.closed is not None or any(
            m["type"] == "error" or (m["type"] == "next" and (m["payload"] or {}).get("errors"))
            for m in self.received[op_id]
        )

    def start(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                message = await self.ws.receive(timeout=3600)
                if message["type"] == "ping":
                    await self.ws.send({"type": "pong"})
                elif message.get("id") in self.operations:
                    self.received[message["id"]].append(message)
        except websockets.ConnectionClosed as closed:
            self.closed = closed.rcvd.code if closed.rcvd else 1006
        except TimeoutError:
            return

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def wait_for_live(self, op_id: str, after: int, timeout: float = 15) -> list[int]:
        """``live_events``, once there is one (or after ``timeout``: none)."""

        async def read() -> list[int]:
            return self.live_events(op_id, after)

        try:
            return await eventually(read, bool, timeout=timeout)
        except AssertionError:
            return []

    def live_events(self, op_id: str, after: int) -> list[int]:
        """Event ids above ``after`` this subscription received."""
        ids = []
        for message in self.received[op_id]:
            value = ((message.get("payload") or {}).get("data") or {}).get(
                self.operations[op_id].field
            )
            if isinstance(value, dict):
                event_id = value.get("eventId", value.get("id"))
                if event_id is not None and seq_of(event_id) > after:
                    ids.append(seq_of(event_id))
        return ids


async def refused_socket(url: str, token: str | None, op: Operation) -> str | None:
    """None if the server closes the socket at ``connection_init`` (4401/4403), else what
    happened (a leak)."""
    ws = await GraphQLWebSocket.connect(url, token=token)
    try:
        message = await ws.receive(timeout=5)
        if message["type"] != "connection_ack":
            return f"answered {message}"
        await ws.subscribe(op.document, op.variables)
        return f"acknowledged, then {await ws.receive(timeout=2)}"
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        return None if code in (4401, 4403) else f"closed with {code}"
    except TimeoutError:
        return "acknowledged and subscribed"
    finally:
        await ws.close()


async def numbered() -> int:
    """The highest event id, once every committed event has one."""

    async def pending() -> bool:
        return await Event.filter(seq__isnull=True).exists()

    await eventually(pending, lambda waiting: not waiting, timeout=10)
    last = await Event.filter(seq__isnull=False).order_by("-seq").first()
    return int(last.seq) if last and last.seq is not None else 0


def placeholder_world() -> World:
    """A world of made-up ids: enough to build every operation without a server."""
    values: dict[str, Any] = {}
    for world_field in dataclasses.fields(World):
        if world_field.type == "Member":
            values[world_field.name] = Member(1, 1, "x@example.test", "sg_x", 1)
        elif str(world_field.type).startswith("dict"):
            values[world_field.name] = defaultdict(lambda: "1")
        else:
            values[world_field.name] = "1"
    values["catalogue"] = {"product": "1", "skus": defaultdict(lambda: "1"), "method": "1"}
    return World(**values)


def test_the_tables_cover_every_root_field() -> None:
    """Without a server: every root field declares who may use it and has fillable arguments."""
    schema = create_schema()._schema
    declared = declared_access(schema)
    missing = [name for name, access in declared.items() if access is None]
    assert missing == [], f"declare who may use these (`requires(...)`): {missing}"
    for name, side in ARGUMENT_SIDES.items():
        access = declared.get(name)
        assert access is not None and access.side in (BOTH, side), (name, access)
    table = arguments(placeholder_world())
    for kind, name in root_fields(schema):
        build_operation(schema, kind, name, table)


@pytest.mark.slow
async def test_authorisation_matrix(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    ws_connect: Callable[..., Awaitable[GraphQLWebSocket]],
    shop: Sim,
    wh: WarehouseSim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.monotonic()
    w = await build_world(server, client, make_member, shop, wh)
    schema = create_schema()._schema
    fields = root_fields(schema)
    table = arguments(w)

    def operation(kind: Kind, name: str) -> Operation:
        """Built for each run: values that must not repeat are fresh every time."""
        return build_operation(schema, kind, name, table)

    queries = [name for kind, name in fields if kind == "query"]
    mutations = [name for kind, name in fields if kind == "mutation"]
    subscriptions = [name for kind, name in fields if kind == "subscription"]

    # a token of A's owner: it reads every query (warming any cache), gets three sockets (one
    # subscribed), then is revoked through the API
    made = await ok(
        client,
        'mutation { createApiToken(input: {name: "to revoke"}) { token { id } secret userErrors { code } } }',
        token=w.a.token,
    )
    revoked = made["secret"]
    for name in queries:
        if "buyer" in sides(qualified("query", name)):
            op = operation("query", name)
            body = await client.post(op.document, op.variables, token=revoked)
            assert "errors" not in body, (name, body)
    idle = await ws_connect(revoked)
    await idle.acknowledged()
    idle_for_subscriptions = await ws_connect(revoked)
    await idle_for_subscriptions.acknowledged()
    subscribed = await ws_connect(revoked)
    await subscribed.acknowledged()
    await subscribed.subscribe("subscription { events { id } }")
    await server.wait_for_subscribers(1)
    await ok(
        client,
        "mutation($i: ID!) { revokeApiToken(input: {id: $i}) { userErrors { code } } }",
        {"i": made["token"]["id"]},
        token=w.a.token,
    )
    ended = await subscribed.receive()
    assert ended["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", ended

    matrix = Matrix()
    anonymous = Actor("anonymous", "unauthenticated")
    revoked_http = Actor("revoked token (HTTP)", "unauthenticated", token=revoked)
    revoked_idle = Actor(
        "revoked token (socket opened before, idle)", "unauthenticated", socket=idle
    )
    revoked_sub = Actor(
        "revoked token (socket opened before, subscribed)", "unauthenticated", socket=subscribed
    )
    buyer_b = Actor("buyer B (other organisation)", "outsider", token=w.b.token, member=w.b)
    supplier_t = Actor(
        "supplier T (not the orders' supplier)", "outsider", token=w.t.token, member=w.t
    )
    right = {
        "buyer": Actor("right role (OWNER of A)", "right", token=w.a.token, member=w.a),
        "supplier": Actor("right role (OWNER of S)", "right", token=w.s.token, member=w.s),
    }

    def rights(op_name: str) -> list[Actor]:
        """A member with exactly the declared role, on each side: a domain guard that wants
        more than the declaration refuses them."""
        role = access_of(op_name).minimum
        actors = []
        for side in sides(op_name):
            owner = right[side]
            if role == "OWNER":
                actors.append(owner)
                continue
            assert owner.member is not None
            member = w.members[(owner.member.organisation_id, role)]
            label = f"right role ({role} of {'A' if side == 'buyer' else 'S'})"
            actors.append(Actor(label, "right", member.token, member=member))
        return actors

    def lesser(op_name: str) -> list[Actor]:
        access = access_of(op_name)
        role = access.lesser_role
        if role is None:
            return []
        actors = []
        for side in sides(op_name):
            owner = w.a if side == "buyer" else w.s
            member = w.members[(owner.organisation_id, role)]
            label = f"lesser role ({role} of {'A' if side == 'buyer' else 'S'})"
            actors.append(Actor(label, "lesser", member.token, member=member))
        return actors

    def refused_by_declaration(op_name: str) -> list[Actor]:
        """The callers the declaration refuses, for the pass without the API's check: the
        member one role below (unless scoped), and the right role of the wrong kind."""
        access = access_of(op_name)
        actors = [
            dataclasses.replace(actor, label=f"domain only: {actor.label}", category="domain")
            for actor in ([] if access.scoped else lesser(op_name))
        ]
        if access.wrong_side is not None:
            owner = right[access.wrong_side]
            label = f"domain only: wrong kind ({owner.label.split('(')[1]}"
            actors.append(Actor(label, "domain", owner.token, member=owner.member))
        return actors

    async def secrets_of(actor: Actor) -> Secrets:
        if actor.category == "lesser":
            assert actor.member is not None
            return await member_secrets(actor.member.organisation_id, actor.member.user_id)
        if actor.category == "right":
            return Secrets()
        outsider = actor.member.organisation_id if actor.member else None
        return await pair_secrets(
            w.pair, public_organisations={w.s.organisation_id}, outsider=outsider
        )

    async def run(actor: Actor, kind: Kind, name: str, pair_view: Secrets) -> None:
        op = operation(kind, name)
        if actor.socket is not None:
            body = await run_over_socket(actor.socket, op.document, op.variables)
        else:
            body = await client.post(op.document, op.variables, token=actor.token)
        outcome = Outcome(body, op.field)
        if actor.category == "right" and kind == "query":
            seen_objects[actor.label].update(identities(body))
            readers[actor.label] = actor
        matrix.record(op.name, actor.label, summary(outcome))
        leaks, problems = judge(
            actor, op, access_of(op.name), outcome, await secrets_of(actor), pair_view
        )
        matrix.leaks += [Finding(op.name, actor.label, x, outcome.brief()) for x in leaks]
        matrix.problems += [Finding(op.name, actor.label, x, outcome.brief()) for x in problems]

    async def state_unchanged_by(label: str, before: dict[str, Any]) -> dict[str, Any]:
        after = await pair_state(client, w)
        for change in differences(before, after):
            matrix.leaks.append(Finding(STATE, label, "changed " + change, ""))
        return after

    seen_objects: dict[str, set[tuple[str, str]]] = defaultdict(set)
    readers: dict[str, Actor] = {}

    # 1. every query: the right roles first (so a cache holds their pages), then the others
    pair_view = await secrets_of(buyer_b)
    for name in queries:
        for actor in rights(qualified("query", name)) + lesser(qualified("query", name)):
            await run(actor, "query", name, pair_view)
    for actor in (anonymous, revoked_http, revoked_idle, revoked_sub, buyer_b, supplier_t):
        for name in queries:
            await run(actor, "query", name, pair_view)

    # every object the right roles read comes back through `nodes(ids:)`, of every node type
    for label, actor in readers.items():
        await every_object_resolves_as_a_node(client, actor, seen_objects[label])
    covered = {typename for objects in seen_objects.values() for typename, _ in objects}
    assert covered == set(NODE_TYPES), f"node types no query reached: {set(NODE_TYPES) - covered}"

    # 2. every mutation as every caller that must change nothing, the pair's state after each
    state = await pair_state(client, w)
    for actor in (anonymous, revoked_http, buyer_b, supplier_t):
        for name in mutations:
            await run(actor, "mutation", name, pair_view)
        state = await state_unchanged_by(actor.label, state)
    for name in mutations:
        for actor in lesser(qualified("mutation", name)):
            await run(actor, "mutation", name, pair_view)
    state = await state_unchanged_by("lesser roles", state)

    # 2b. the declarations against the domain's guards: the API's check off (this test only),
    #     the callers each declaration refuses must be refused by the domain too
    domain_secrets: dict[str, Secrets] = {}

    async def run_domain_only(actor: Actor, kind: Kind, name: str) -> None:
        op = operation(kind, name)
        outcome = Outcome(await client.post(op.document, op.variables, token=actor.token), op.field)
        matrix.record(op.name, actor.label, summary(outcome))
        if actor.label not in domain_secrets:
            assert actor.member is not None
            domain_secrets[actor.label] = (
                await member_secrets(actor.member.organisation_id, actor.member.user_id)
                if "lesser role" in actor.label
                else await secrets_of(actor)
            )
        for leak in judge_domain(op, outcome, domain_secrets[actor.label]):
            matrix.leaks.append(Finding(op.name, actor.label, leak, outcome.brief()))

    with monkeypatch.context() as patched:
        api_checks_off(patched)
        for kind, names in (("query", queries), ("mutation", mutations)):
            for name in names:
                for actor in refused_by_declaration(qualified(kind, name)):
                    await run_domain_only(actor, kind, name)
    state = await state_unchanged_by("callers the declarations refuse, API check off", state)

    # 3. subscriptions: refused without a valid token; outsiders hear nothing of the pair while
    #    the right roles' mutations run, and A's and S's own subscribers hear them
    for name in subscriptions:
        op = operation("subscription", name)
        for actor in (anonymous, revoked_http):
            problem = await refused_socket(server.ws_url, actor.token, op)
            matrix.record(op.name, actor.label, "closed 4403" if problem is None else "open")
            if problem is not None:
                matrix.leaks.append(Finding(op.name, actor.label, "socket not refused", problem))
    baseline = server.app.state.live.listening_subscriptions
    listeners = []
    admitted = 0  # the subscriptions the declarations let through (an outsider of the wrong
    # kind is refused its subscription at once)
    for actor, side in (
        (buyer_b, "buyer"),
        (supplier_t, "supplier"),
        (right["buyer"], "buyer"),
        (right["supplier"], "supplier"),
    ):
        ws = await ws_connect(actor.token)
        await ws.acknowledged()
        listener = Listener(actor, ws)
        for name in subscriptions:
            if actor.category == "outsider" or side in sides(qualified("subscription", name)):
                await listener.subscribe(operation("subscription", name))
                admitted += access_of(qualified("subscription", name)).side in (BOTH, side)
        listener.start()
        listeners.append(listener)
    await server.wait_for_subscribers(baseline + admitted)
    # refused at once, or (a leak) served; the idle socket's own twin, because a replay that
    # reaches the revocation event marks the socket revoked for what follows
    for actor, socket in ((revoked_idle, idle_for_subscriptions), (revoked_sub, subscribed)):
        listener = Listener(actor, socket)
        for name in subscriptions:
            await listener.subscribe(operation("subscription", name))
        listener.start()
        listeners.append(listener)
    # the wrong kind, with the API's check off while it subscribes: the domain serves it nothing
    domain_only: dict[str, Listener] = {}
    with monkeypatch.context() as patched:
        api_checks_off(patched)
        before = server.app.state.live.listening_subscriptions
        for name in subscriptions:
            for actor in refused_by_declaration(qualified("subscription", name)):
                if actor.label not in domain_only:
                    ws = await ws_connect(actor.token)
                    await ws.acknowledged()
                    domain_only[actor.label] = Listener(actor, ws)
                await domain_only[actor.label].subscribe(operation("subscription", name))
        for listener in domain_only.values():
            listener.start()
        wanted = sum(len(x.operations) for x in domain_only.values())

        async def settled() -> int:
            refused = sum(x.refused(op_id) for x in domain_only.values() for op_id in x.operations)
            return server.app.state.live.listening_subscriptions - before + refused

        await eventually(settled, lambda n: n >= wanted, timeout=10)
    listeners.extend(domain_only.values())
    marker = await numbered()

    # 4. every mutation as the right roles (the events the subscribers wait for); the state
    #    snapshot must see what they did, or it could not have seen an outsider's change either
    for name in mutations:
        for actor in rights(qualified("mutation", name)):
            await run(actor, "mutation", name, pair_view)
    if not differences(state, await pair_state(client, w)):
        matrix.problems.append(Finding(STATE, "right roles", "the snapshot saw no change", ""))

    for listener in listeners:
        if listener.actor.category != "right":
            continue
        for op_id, op in listener.operations.items():
            heard = len(await listener.wait_for_live(op_id, marker))
            matrix.record(op.name, listener.actor.label, f"heard {heard}")
            if not heard:
                matrix.problems.append(
                    Finding(op.name, listener.actor.label, "heard nothing: no trigger", "")
                )
            elif not find_leaks(listener.received[op_id], pair_view):
                matrix.problems.append(
                    Finding(op.name, listener.actor.label, "its messages name nothing private", "")
                )
    await numbered()
    await asyncio.sleep(0.5)  # outsiders get the same dispatch as A and S: give them the time too
    for listener in listeners:
        await listener.stop()
        if listener.actor.category == "right":
            continue
        secrets = await secrets_of(listener.actor)
        for op_id, op in listener.operations.items():
            messages = listener.received[op_id]
            seen = find_leaks(messages, secrets)
            if listener.actor.category == "domain":
                served = listener.served(op_id)
                matrix.record(
                    op.name, listener.actor.label, f"{served} served" if served else "nothing"
                )
                if served:
                    matrix.leaks.append(
                        Finding(
                            op.name,
                            listener.actor.label,
                            f"the domain serves a caller its declaration refuses ({served})",
                            json.dumps(messages)[:400],
                        )
                    )
            elif listener.actor.category == "unauthenticated":
                served = listener.served(op_id)
                matrix.record(
                    op.name, listener.actor.label, f"{served} served" if served else "refused"
                )
                if served or not listener.refused(op_id):
                    matrix.leaks.append(
                        Finding(
                            op.name,
                            listener.actor.label,
                            f"subscription not refused ({served} results)",
                            json.dumps(messages)[:400],
                        )
                    )
            else:
                matrix.record(op.name, listener.actor.label, f"{len(messages)} of its own")
            if seen:
                matrix.leaks.append(
                    Finding(
                        op.name,
                        listener.actor.label,
                        "heard " + ", ".join(seen[:10]),
                        json.dumps(messages)[:400],
                    )
                )

    # 5. the sockets opened before the revocation, for mutations too; last, because if they
    #    act, they act as A's owner
    state = await pair_state(client, w)
    for actor in (revoked_idle, revoked_sub):
        for name in mutations:
            await run(actor, "mutation", name, pair_view)
        state = await state_unchanged_by(actor.label, state)

    kinds = {"query": len(queries), "mutation": len(mutations), "subscription": len(subscriptions)}
    figure = matrix.figure(len(fields), kinds)
    print()
    print(matrix.table())
    print(figure)
    print(f"  time: {time.monotonic() - started:.1f}s")
    assert not matrix.leaks and not matrix.problems, figure
