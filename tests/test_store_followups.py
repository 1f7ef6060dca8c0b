"""Tracking pushes retried after store failures, the quote subscription, disconnecting products,
and store credentials sealed at rest."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tortoise import connections

from domain import secrets
from domain.orders.models import Order
from domain.stores.models import Store
from domain.work_due import next_tracking_due
from integrations.stores.sync import TrackingPusher
from schema.global_ids import key_of
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import (
    ORDER,
    connect_red_tee,
    connect_store,
    ok,
    sim,
    supplier_catalogue,
    top_up_and_pay,
)
from tests.test_store_integration import Sim

__all__ = ["sim"]


async def connected_order(
    client: GraphQLHttp, server: RunningServer, supplier: Member, buyer: Member, sim: Sim
) -> tuple[dict, dict, dict]:
    """A store whose Red/M variant is connected, and one webhook order for it (catalogue,
    store payload, order)."""
    cat = await supplier_catalogue(client, supplier)
    store, red, connected = await connect_red_tee(client, buyer, sim, cat)
    assert connected["userErrors"] == [], connected
    store["red"] = red
    store["link"] = connected["productLink"]
    made = await sim.order(red["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    assert made["webhook_status"] == 202
    await server.store_inbox_drained()
    return cat, store, made


async def order_by_store_number(client: GraphQLHttp, buyer: Member, name: str) -> dict:
    edges = (
        await client.data(
            "{ orders(first: 50) { edges { node { id status storeOrderNumber } } } }",
            token=buyer.token,
        )
    )["orders"]["edges"]
    [order] = [e["node"] for e in edges if e["node"]["storeOrderNumber"] == name]
    return order


async def paid_store_order(
    client: GraphQLHttp, server: RunningServer, supplier: Member, buyer: Member, sim: Sim
) -> dict:
    """A store order for a connected variant (``connected_order``), paid from the buyer's
    wallet, which the supplier tops up first."""
    _, _, made = await connected_order(client, server, supplier, buyer, sim)
    order = await order_by_store_number(client, buyer, made["order"]["name"])
    await top_up_and_pay(client, supplier, buyer, order["id"])
    return order


async def ship(client: GraphQLHttp, supplier: Member, order: dict, tracking_number: str) -> None:
    """The supplier ships ``order`` by DHL with ``tracking_number``: its push to the store is due."""
    await ok(
        client,
        'mutation($o: ID!, $t: String!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: $t) { userErrors { code } } }',
        {"o": order["id"], "t": tracking_number},
        token=supplier.token,
    )


async def test_tracking_push_is_retried_after_store_failures_and_lands_once(
    make_server: ServerFactory, make_member: MakeMember, sim: Sim
) -> None:
    server = await make_server(tracking_retry_delay=0.2, tracking_max_attempts=3)
    client = GraphQLHttp(server.url)
    try:
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        order = await paid_store_order(client, server, supplier, buyer, sim)
        # each push is 1 call + 3 client retries: 8 failures fail the first two pushes
        await sim.faults(fail_next=8, status=503)
        await ship(client, supplier, order, "JD9")
        for _ in range(300):
            state = (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"]
            if state["trackingSync"] == "SYNCED":
                break
            await asyncio.sleep(0.05)
        assert state["trackingSync"] == "SYNCED"
        detail = (
            await client.data(
                "query($o: ID!) { order(id: $o) { trackingSyncAttempts trackingSyncError } }",
                {"o": order["id"]},
                token=buyer.token,
            )
        )["order"]
        assert detail == {"trackingSyncAttempts": 3, "trackingSyncError": None}
        syncs = (
            await client.data(
                "{ events(types: [ORDER_TRACKING_SYNC]) { edges { node { payload } } } }",
                token=buyer.token,
            )
        )["events"]["edges"]
        states = [e["node"]["payload"] for e in syncs]
        assert [s["trackingSync"] for s in states] == ["FAILED", "FAILED", "SYNCED"]
        assert "503" in states[0]["error"]
        [fulfillment] = await sim.fulfillments()
        assert fulfillment["tracking_number"] == "JD9"
    finally:
        await client.close()


async def test_tracking_push_gives_up_after_max_attempts_with_the_error_visible(
    make_server: ServerFactory, make_member: MakeMember, sim: Sim
) -> None:
    server = await make_server(tracking_retry_delay=0.1, tracking_max_attempts=2)
    client = GraphQLHttp(server.url)
    try:
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        order = await paid_store_order(client, server, supplier, buyer, sim)
        await sim.faults(fail_next=1000, status=502)
        await ship(client, supplier, order, "JD8")
        query = "query($o: ID!) { order(id: $o) { trackingSync trackingSyncAttempts trackingSyncError } }"
        for _ in range(300):
            state = (await client.data(query, {"o": order["id"]}, token=buyer.token))["order"]
            if state["trackingSyncAttempts"] == 2:
                break
            await asyncio.sleep(0.05)
        await server.app.state.tracking.push_due()  # nothing is due any more
        await asyncio.sleep(0.5)
        state = (await client.data(query, {"o": order["id"]}, token=buyer.token))["order"]
        assert state["trackingSync"] == "FAILED" and state["trackingSyncAttempts"] == 2
        assert "502" in state["trackingSyncError"]
        assert await sim.fulfillments() == []
    finally:
        await client.close()


async def test_two_instances_push_a_tracking_number_to_a_slow_store_once(
    make_server: ServerFactory, make_member: MakeMember, sim: Sim
) -> None:
    """Another instance's tracking pusher (same database) looks for due pushes again and again
    while this one's push waits on a store that takes a second to answer: the order is claimed
    by one of them, and the store receives one fulfillment request, counted at the store (not
    only one fulfillment deduplicated by its idempotency key)."""
    server = await make_server()
    client = GraphQLHttp(server.url)
    other = TrackingPusher(poll_interval=3600)  # never started: driven by hand below
    try:
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        order = await paid_store_order(client, server, supplier, buyer, sim)
        await sim.faults(delay=1.0)
        await ship(client, supplier, order, "JD7")
        query = "query($o: ID!) { order(id: $o) { trackingSync trackingSyncAttempts } }"
        for _ in range(200):
            await other.push_due()
            state = (await client.data(query, {"o": order["id"]}, token=buyer.token))["order"]
            if state["trackingSync"] == "SYNCED":
                break
            await asyncio.sleep(0.05)
        assert state == {"trackingSync": "SYNCED", "trackingSyncAttempts": 1}
        await other.push_due()  # nothing is due any more
        await server.app.state.tracking.push_due()
        posts = await sim.fulfillment_posts()
        assert posts == [f"supplygraph-{key_of(order['id'])}-JD7"], posts
        assert len(await sim.fulfillments()) == 1
    finally:
        await sim.faults(reset=True)
        await client.close()


async def test_a_tracking_push_held_by_an_instance_that_died_is_made_when_its_lease_runs_out(
    make_server: ServerFactory, make_member: MakeMember, sim: Sim
) -> None:
    """The first push fails; its retry is claimed by an instance that dies before making it
    (its lease set by hand). Nobody pushes while the lease runs, the pusher sleeps until it
    ends (``next_tracking_due``), then the push is made once."""
    server = await make_server(tracking_retry_delay=0.5, tracking_max_attempts=3)
    client = GraphQLHttp(server.url)
    try:
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        order = await paid_store_order(client, server, supplier, buyer, sim)
        await sim.faults(fail_next=4, status=503)  # the first push: a call and 3 retries
        await ship(client, supplier, order, "JD6")
        query = "query($o: ID!) { order(id: $o) { trackingSync trackingSyncAttempts } }"
        for _ in range(300):
            state = (await client.data(query, {"o": order["id"]}, token=buyer.token))["order"]
            if state["trackingSyncAttempts"] == 1:
                break
            await asyncio.sleep(0.02)
        assert state == {"trackingSync": "FAILED", "trackingSyncAttempts": 1}
        lease_end = datetime.now(UTC) + timedelta(seconds=1.5)
        await Order.filter(id=key_of(order["id"])).update(tracking_lease_until=lease_end)
        assert await next_tracking_due(base_delay=0.5, max_attempts=3) == lease_end
        for _ in range(300):
            state = (await client.data(query, {"o": order["id"]}, token=buyer.token))["order"]
            if state["trackingSync"] == "SYNCED":
                break
            await asyncio.sleep(0.05)
        assert state == {"trackingSync": "SYNCED", "trackingSyncAttempts": 2}
        [fulfillment] = await sim.fulfillments()
        assert datetime.fromisoformat(fulfillment["created_at"]) >= lease_end
        assert await sim.fulfillment_posts() == [f"supplygraph-{key_of(order['id'])}-JD6"]
    finally:
        await client.close()


async def test_quote_updated_reaches_buyer_and_supplier_and_no_one_else(
    server, client: GraphQLHttp, make_member: MakeMember, ws_connect, sim: Sim
) -> None:
    supplier, buyer, stranger = (
        await make_member("SUPPLIER"),
        await make_member("BUYER"),
        await make_member("BUYER"),
    )
    sockets = {}
    for name, member in (("buyer", buyer), ("supplier", supplier), ("stranger", stranger)):
        ws = await ws_connect(member.token)
        await ws.acknowledged()
        await ws.subscribe(
            "subscription { quoteUpdated { quoteId status quote { id status message } } }"
        )
        sockets[name] = ws
    await server.wait_for_subscribers(3)
    store = await connect_store(client, buyer, sim)
    await sim.product("Tee")
    await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code field message } } }",
        {"s": store["store"]["id"]},
        token=buyer.token,
    )
    [product] = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id } } }",
            {"s": store["store"]["id"]},
            token=buyer.token,
        )
    )["storeProducts"]["nodes"]
    cat = await supplier_catalogue(client, supplier)
    quote = await ok(
        client,
        'mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p, note: "x"}) { quote { id } userErrors { code } } }',
        {"s": supplier.gid, "p": product["id"]},
        token=buyer.token,
    )
    quote_id = quote["quote"]["id"]
    await ok(
        client,
        'mutation($q: ID!, $p: ID!, $k: ID!) { answerQuote(input: {quoteId: $q, productId: $p, prices: [{skuId: $k, unitPrice: "6.00"}], message: "ok"}) { userErrors { code } } }',
        {"q": quote_id, "p": cat["product"], "k": cat["skus"]["TEE-R-M"]},
        token=supplier.token,
    )
    await ok(
        client,
        "mutation($q: ID!) { declineQuote(quoteId: $q) { userErrors { code } } }",
        {"q": quote_id},
        token=buyer.token,
    )
    for name in ("buyer", "supplier"):
        seen = [(await sockets[name].next_data())["quoteUpdated"] for _ in range(3)]
        assert [(q["quoteId"], q["status"]) for q in seen] == [
            (quote_id, "REQUESTED"),
            (quote_id, "QUOTED"),
            (quote_id, "DECLINED"),
        ]
        assert seen[-1]["quote"] == {"id": quote_id, "status": "DECLINED", "message": "ok"}
    with pytest.raises(TimeoutError):
        await sockets["stranger"].next_data(timeout=0.5)
    # a declined quote cannot be accepted afterwards
    refused = (
        await client.data(
            "mutation($q: ID!) { acceptQuote(quoteId: $q) { userErrors { code } } }",
            {"q": quote_id},
            token=buyer.token,
        )
    )["acceptQuote"]["userErrors"]
    assert refused == [{"code": "ILLEGAL_TRANSITION"}]


async def test_disconnect_product_applies_to_future_orders_only(
    server, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    _, store, first = await connected_order(client, server, supplier, buyer, sim)
    link_id = store["link"]["id"]
    other = await make_member("BUYER")
    mutation = "mutation($c: ID!) { disconnectProduct(productLinkId: $c) { productLink { id status } userErrors { code field } } }"
    foreign = (await client.data(mutation, {"c": link_id}, token=other.token))["disconnectProduct"]
    assert foreign["userErrors"] == [{"code": "NOT_FOUND", "field": "productLinkId"}]
    done = await ok(client, mutation, {"c": link_id}, token=buyer.token)
    assert done["productLink"]["status"] == "DISCONNECTED"
    again = (await client.data(mutation, {"c": link_id}, token=buyer.token))["disconnectProduct"]
    assert again["userErrors"] == [{"code": "ILLEGAL_TRANSITION", "field": "productLinkId"}]

    second = await sim.order(
        store["red"]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}"
    )
    await server.store_inbox_drained()
    before = await order_by_store_number(client, buyer, first["order"]["name"])
    after = await order_by_store_number(client, buyer, second["order"]["name"])
    assert before["status"] == "AWAITING_PAYMENT"
    assert after["status"] == "UNRECOGNIZED"


async def test_store_credentials_are_sealed_in_the_database(
    server, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    rows = await connections.get("default").execute_query_dict(
        "SELECT access_token, webhook_secret FROM store WHERE id = "
        + str(key_of(store["store"]["id"]))
    )
    [row] = rows
    assert row["access_token"].startswith("sealed:v1:") and "sim-token" not in row["access_token"]
    assert row["webhook_secret"].startswith("sealed:v1:")
    loaded = await Store.get(id=key_of(store["store"]["id"]))
    assert (loaded.access_token, loaded.webhook_secret) == ("sim-token", "sim-webhook-secret")
    # the API never returns them after connectStore
    fields = (
        await client.data('{ __type(name: "Store") { fields { name } } }', token=buyer.token)
    )["__type"]["fields"]
    assert not {"accessToken", "webhookSecret"} & {f["name"] for f in fields}
    # and the sealed store still syncs with the decrypted token
    await ok(
        client,
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code field message } } }",
        {"s": store["store"]["id"]},
        token=buyer.token,
    )


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "supplygraph.key"
    key = secrets.load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.load_or_create_key(path) == key
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="url-safe base64"):
        secrets.load_or_create_key(path)


def test_a_value_sealed_with_another_key_does_not_open() -> None:
    current = secrets._fernet
    try:
        secrets.configure(secrets.generate_key())
        sealed = secrets.seal("hunter2")
        assert sealed != secrets.seal("hunter2")  # a fresh IV every time
        assert secrets.open_sealed(sealed) == "hunter2"
        assert secrets.open_sealed("plain, from before sealing") == "plain, from before sealing"
        secrets.configure(secrets.generate_key())
        with pytest.raises(secrets.SecretsNotConfigured, match="SECRETS_KEY"):
            secrets.open_sealed(sealed)
    finally:
        secrets._fernet = current
