"""Cloud-warehouse stock through the API: the seed's six steps, partial receipts, releases,
short stock, concurrency without overselling, low-stock events, and ledger consistency."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from domain.stock.models import StockItem, StockMovement
from integrations.warehouses.protocol import sign_callback
from schema.global_ids import key_of
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import ORDER, ok, sim, supplier_catalogue
from tests.test_store_followups import connected_order, order_by_store_number
from tests.test_store_integration import Sim

__all__ = ["sim"]

INVENTORY = """{ inventory { nodes { id warehouseId onHand reserved available inTransit
  lowStockThreshold sku { code } } } }"""


async def warehouse_and_secret(client: GraphQLHttp, supplier: Member) -> tuple[str, str]:
    made = await ok(
        client,
        """mutation { createCloudWarehouse(input: {name: "Yuncang UK", address: {name: "Yuncang UK",
          address1: "1 Dock Rd", city: "Felixstowe", zip: "IP11", countryCode: "GB"}})
          { warehouse { id countryCode } callbackSecret userErrors { code field message } } }""",
        token=supplier.token,
    )
    return made["warehouse"]["id"], made["callbackSecret"]


async def warehouse(client: GraphQLHttp, supplier: Member) -> str:
    return (await warehouse_and_secret(client, supplier))[0]


async def top_up(client: GraphQLHttp, supplier: Member, buyer: Member, amount: str) -> None:
    await ok(
        client,
        'mutation($b: ID!, $a: Decimal!) { topUpWallet(buyerId: $b, amount: $a, currency: "USD") { userErrors { code } } }',
        {"b": buyer.gid, "a": amount},
        token=supplier.token,
    )


async def stock_up(
    client: GraphQLHttp,
    supplier: Member,
    buyer: Member,
    cat: dict,
    warehouse_id: str,
    quantity: int,
    *,
    receive: dict[str, int] | None = None,
    received_by: Callable[[str], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """A stocking order of TEE-R-M, paid, shipped and received (``receive``: line → units)."""
    made = await ok(
        client,
        """mutation($w: ID!, $k: ID!, $q: Int!, $m: ID!) { createCloudWarehouseOrder(input: {warehouseId: $w,
          logisticsMethodId: $m, lines: [{skuId: $k, quantity: $q}]}) { order { id kind status lines { id } } userErrors { code field message } } }""",
        {"w": warehouse_id, "k": cat["skus"]["TEE-R-M"], "q": quantity, "m": cat["method"]},
        token=buyer.token,
    )
    order = made["order"]
    assert (order["kind"], order["status"]) == ("CLOUD_WAREHOUSE", "AWAITING_PAYMENT")
    await top_up(client, supplier, buyer, "500.00")
    paid = await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { charged { goods freight total } userErrors { code message } } }",
        {"o": order["id"]},
        token=buyer.token,
    )
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "COSCO", trackingNumber: "C1") { order { expectedArrivalAt } userErrors { code } } }',
        {"o": order["id"]},
        token=supplier.token,
    )
    in_transit = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    if received_by is not None:  # the warehouse reports the receipt itself
        await received_by(order["id"])
        state = (await client.data(ORDER, {"id": order["id"]}, token=supplier.token))["order"]
        return {
            "order": order,
            "charged": paid["charged"],
            "in_transit": in_transit,
            "received": state,
        }
    lines = [{"lineId": order["lines"][0]["id"], "quantity": receive["units"]}] if receive else None
    received = await ok(
        client,
        "mutation($o: ID!, $l: [ReceivedLineInput!]) { receiveStock(orderId: $o, lines: $l) { order { status abnormalReason } userErrors { code field message } } }",
        {"o": order["id"], "l": lines},
        token=supplier.token,
    )
    return {
        "order": order,
        "charged": paid["charged"],
        "in_transit": in_transit,
        "received": received["order"],
    }


async def assert_ledger_matches() -> None:
    """Every stock item's figures equal the sums of its movements; none is negative."""
    for item in await StockItem.all():
        moves = await StockMovement.filter(stock_item_id=item.id)
        on_hand = sum(m.on_hand_delta for m in moves)
        reserved = sum(m.reserved_delta for m in moves)
        in_transit = sum(m.in_transit_delta for m in moves)
        assert (item.on_hand, item.reserved, item.in_transit) == (on_hand, reserved, in_transit)
        assert item.available == item.on_hand - item.reserved
        assert min(item.on_hand, item.reserved, item.available, item.in_transit) >= 0


async def test_the_seed_six_steps_stock_then_store_order_ships_from_stock(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim, ws_connect
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    ws = await ws_connect(buyer.token)
    await ws.acknowledged()
    await ws.subscribe(
        "subscription { inventoryChanged { movement item { onHand reserved available inTransit } } }"
    )
    await server.wait_for_subscribers(1)
    # 1-3: stock 10 at the tier price (4.00, not 5.00), shipped (in transit), received
    cat, _, made = await connected_order(client, server, supplier, buyer, sim)
    warehouse_id = await warehouse(client, supplier)
    stocked = await stock_up(client, supplier, buyer, cat, warehouse_id, 10)
    assert stocked["charged"]["goods"] == "40.00"
    assert stocked["in_transit"][0]["inTransit"] == 10
    assert stocked["received"]["status"] == "FULFILLED"
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["available"], item["inTransit"]) == (10, 10, 0)

    # 4: a store order for that SKU is paid from stock: freight only, 1 unit reserved
    order = await order_by_store_number(client, buyer, made["order"]["name"])
    paid = await ok(
        client,
        "mutation($o: ID!, $w: ID!) { payOrders(orderIds: [$o], stockWarehouseId: $w) { charged { goods freight } orders { lines { stockQuantity } cloudWarehouseId } userErrors { code message } } }",
        {"o": order["id"], "w": warehouse_id},
        token=buyer.token,
    )
    assert paid["charged"]["goods"] == "0.00" and paid["charged"]["freight"] != "0.00"
    assert paid["orders"][0]["lines"] == [{"stockQuantity": 1}]
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["reserved"], item["available"]) == (10, 1, 9)

    # 5: shipped from the warehouse: the reservation becomes a deduction; tracking to the store
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "Royal Mail", trackingNumber: "RM1") { userErrors { code } } }',
        {"o": order["id"]},
        token=supplier.token,
    )
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["reserved"], item["available"]) == (9, 0, 9)
    for _ in range(100):
        if await sim.fulfillments():
            break
        await asyncio.sleep(0.05)
    assert (await sim.fulfillments())[0]["tracking_number"] == "RM1"

    # 6: delivered
    await ok(
        client,
        "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code } } }",
        {"o": order["id"]},
        token=supplier.token,
    )
    assert (await client.data(ORDER, {"id": order["id"]}, token=buyer.token))["order"][
        "status"
    ] == "FULFILLED"

    seen = [(await ws.next_data())["inventoryChanged"] for _ in range(4)]
    assert [s["movement"] for s in seen] == ["IN_TRANSIT", "RECEIVED", "RESERVED", "SHIPPED"]
    assert seen[-1]["item"] == {"onHand": 9, "reserved": 0, "available": 9, "inTransit": 0}
    movements = (
        await client.data(
            "query($i: ID!) { stockMovements(stockItemId: $i) { edges { node { kind onHandDelta reservedDelta inTransitDelta orderId } } } }",
            {"i": item["id"]},
            token=buyer.token,
        )
    )["stockMovements"]["edges"]
    assert [m["node"]["kind"] for m in movements] == [
        "SHIPPED",
        "RESERVED",
        "RECEIVED",
        "IN_TRANSIT",
    ]
    await assert_ledger_matches()
    # another buyer sees none of it
    stranger = await make_member("BUYER")
    assert (await client.data(INVENTORY, token=stranger.token))["inventory"]["nodes"] == []
    foreign = await client.post(
        "query($i: ID!) { stockMovements(stockItemId: $i) { edges { node { id } } } }",
        {"i": item["id"]},
        token=stranger.token,
    )
    assert foreign["data"] is None
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_partial_receipt_records_the_shortfall_and_holds_the_order(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    stocked = await stock_up(client, supplier, buyer, cat, warehouse_id, 10, receive={"units": 7})
    assert stocked["received"]["status"] == "ABNORMAL"
    assert "TEE-R-M: 7 of 10 arrived (3 short)" in stocked["received"]["abnormalReason"]
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["available"], item["inTransit"]) == (7, 7, 0)
    kinds = [m.kind.value for m in await StockMovement.filter(stock_item_id=key_of(item["id"]))]
    assert kinds == ["IN_TRANSIT", "RECEIVED", "SHORTFALL"]
    # receiving twice is refused; markDelivered cannot skip the receipt on another order
    again = (
        await client.data(
            "mutation($o: ID!) { receiveStock(orderId: $o) { userErrors { code } } }",
            {"o": stocked["order"]["id"]},
            token=supplier.token,
        )
    )["receiveStock"]["userErrors"]
    assert again == [{"code": "ILLEGAL_TRANSITION"}]
    await assert_ledger_matches()


async def manual_order(client: GraphQLHttp, buyer: Member, cat: dict, quantity: int) -> str:
    made = await ok(
        client,
        """mutation($k: ID!, $m: ID!, $q: Int!) { createManualOrder(input: {lines: [{skuId: $k, quantity: $q}],
        logisticsMethodId: $m, shippingAddress: {name: "A", address1: "1", city: "L", countryCode: "GB"}})
        { order { id } userErrors { code } } }""",
        {"k": cat["skus"]["TEE-R-M"], "m": cat["method"], "q": quantity},
        token=buyer.token,
    )
    return made["order"]["id"]


PAY_FROM_STOCK = """mutation($o: [ID!]!, $w: ID!, $s: Boolean!) { payOrders(orderIds: $o,
  stockWarehouseId: $w, splitWhenShort: $s) { charged { goods freight }
  orders { status lines { quantity stockQuantity } } userErrors { code field message } } }"""


async def test_short_stock_is_refused_or_split_and_cancel_releases(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    await stock_up(client, supplier, buyer, cat, warehouse_id, 3)
    order_id = await manual_order(client, buyer, cat, 5)
    refused = (
        await client.data(
            PAY_FROM_STOCK, {"o": [order_id], "w": warehouse_id, "s": False}, token=buyer.token
        )
    )["payOrders"]
    assert refused["userErrors"][0]["code"] == "INSUFFICIENT_STOCK"
    assert "TEE-R-M 2 short" in refused["userErrors"][0]["message"]
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["reserved"], item["available"]) == (0, 3)

    split = (
        await client.data(
            PAY_FROM_STOCK, {"o": [order_id], "w": warehouse_id, "s": True}, token=buyer.token
        )
    )["payOrders"]
    assert split["userErrors"] == []
    assert split["orders"][0]["lines"] == [{"quantity": 5, "stockQuantity": 3}]
    assert split["charged"]["goods"] == "10.00"  # 2 supplied units at 5.00
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["reserved"], item["available"]) == (3, 3, 0)

    # withdrawing the paid order cancels it and releases the reservation
    await ok(
        client,
        "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code message } } }",
        {"o": order_id},
        token=buyer.token,
    )
    for _ in range(200):
        [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
        if item["reserved"] == 0:
            break
        await asyncio.sleep(0.05)
    assert (item["onHand"], item["reserved"], item["available"]) == (3, 0, 3)
    assert (await client.data(ORDER, {"id": order_id}, token=buyer.token))["order"][
        "status"
    ] == "CANCELLED"
    await assert_ledger_matches()


async def test_low_stock_threshold_raises_an_event(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    await stock_up(client, supplier, buyer, cat, warehouse_id, 4)
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    await ok(
        client,
        "mutation($i: ID!) { setLowStockThreshold(stockItemId: $i, threshold: 3) { item { lowStockThreshold } userErrors { code } } }",
        {"i": item["id"]},
        token=buyer.token,
    )
    for _ in range(2):  # 4 → 3 (not below), 3 → 2 (below: one event)
        order_id = await manual_order(client, buyer, cat, 1)
        await ok(
            client,
            PAY_FROM_STOCK,
            {"o": [order_id], "w": warehouse_id, "s": False},
            token=buyer.token,
        )
    low = (
        await client.data(
            "{ events(types: [STOCK_LOW]) { edges { node { payload } } } }", token=buyer.token
        )
    )["events"]["edges"]
    assert [e["node"]["payload"]["available"] for e in low] == [2]


async def test_concurrent_payments_never_reserve_more_than_the_stock(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    stock = 5
    await stock_up(client, supplier, buyer, cat, warehouse_id, stock)
    orders = [await manual_order(client, buyer, cat, 1) for _ in range(20)]
    await top_up(client, supplier, buyer, "500.00")

    async def pay(order_id: str) -> list[dict]:
        return (
            await client.data(
                PAY_FROM_STOCK,
                {"o": [order_id], "w": warehouse_id, "s": False},
                token=buyer.token,
            )
        )["payOrders"]["userErrors"]

    results = await asyncio.gather(*(pay(o) for o in orders))
    succeeded = [r for r in results if r == []]
    refused = {r[0]["code"] for r in results if r}
    assert len(succeeded) == stock, results
    assert refused <= {"INSUFFICIENT_STOCK", "CONFLICT"}
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["reserved"], item["available"]) == (stock, stock, 0)
    await assert_ledger_matches()


def test_the_reservation_benchmark_runs_and_never_oversells() -> None:
    """`make bench-stock` in small: it exits non-zero if it oversells or loses a payment."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "bench/stock_reservations.py", "--attempts", "20", "--stock", "5"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded (reserved)                                   5" in result.stdout


async def test_the_cloud_warehouse_reports_a_receipt_by_signed_callback(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id, secret = await warehouse_and_secret(client, supplier)
    url = f"{server.url}/webhooks/cloud-warehouses/{key_of(warehouse_id)}/receipts"

    async def post(body: dict | bytes, *, key: str = secret, age: int = 0) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = int(time.time()) - age
        headers = {
            "X-Warehouse-Timestamp": str(stamp),
            "X-Warehouse-Signature": sign_callback(key, stamp, raw),
            "Content-Type": "application/json",
        }
        return await client.http.post(url, content=raw, headers=headers)

    async def report(order_id: str) -> None:
        body = {
            "event_id": "evt-1",
            "reference": str(key_of(order_id)),
            "items": [{"sku": "TEE-R-M", "received_quantity": 8}],
        }
        forged = await post(body, key="not-the-secret")
        stale = await post(body, age=3600)
        # every cause answers alike (the reason is logged): nothing tells a cause or an id
        assert [(r.status_code, r.json()) for r in (forged, stale)] == [
            (401, {"status": "unauthorized"})
        ] * 2
        unknown = await post({**body, "event_id": "evt-0", "reference": "999999"})
        assert unknown.status_code == 404
        malformed = await post({"event_id": "evt-x", "reference": order_id, "items": "8"})
        assert malformed.status_code == 400
        not_json = await post(b"<receipt/>")  # in the API's words, not the parser's
        assert (not_json.status_code, not_json.json()) == (
            400,
            {"status": "invalid", "error": "the body is not JSON: a receipt object"},
        )
        # references that are no key: a Unicode digit, a number past 64 bits (were a bare 500)
        for bad in ("\u00b2", "1" * 30, "0", "-5"):
            refused = await post({**body, "event_id": f"evt-{bad}", "reference": bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["status"] == "invalid"
        applied = await post(body)
        assert applied.json() == {"status": "applied", "orderStatus": "ABNORMAL"}
        again = await post(body)
        assert again.json() == {"status": "duplicate"}

    stocked = await stock_up(client, supplier, buyer, cat, warehouse_id, 10, received_by=report)
    assert stocked["received"]["status"] == "ABNORMAL"
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["inTransit"]) == (8, 0)
    kinds = [m.kind.value for m in await StockMovement.filter(stock_item_id=key_of(item["id"]))]
    assert kinds == ["IN_TRANSIT", "RECEIVED", "SHORTFALL"]
    await assert_ledger_matches()


async def test_paying_from_stock_takes_the_wallet_before_the_stock(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """LOCK_ORDER (``domain.payments.commands``): paying from stock locks the wallet before the stock
    row, as refunds that release stock do, so the two cannot deadlock each other. With the
    wallet held elsewhere, a payment waiting for it must not be holding the stock row.
    PostgreSQL only: SQLite has one writer and no row locks."""
    if server.settings.is_sqlite:
        pytest.skip("row locks are PostgreSQL's")

    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    await stock_up(client, supplier, buyer, cat, warehouse_id, 3)
    order_id = await manual_order(client, buyer, cat, 1)
    [item] = await StockItem.filter(buyer_id=buyer.organisation_id)
    holder = await asyncpg.connect(server.settings.database_url)
    probe = await asyncpg.connect(server.settings.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(
            "SELECT 1 FROM wallet WHERE buyer_id = $1 FOR UPDATE", buyer.organisation_id
        )
        paying = asyncio.create_task(
            client.data(
                PAY_FROM_STOCK, {"o": [order_id], "w": warehouse_id, "s": False}, token=buyer.token
            )
        )
        for _ in range(400):  # until the payment waits for the wallet
            waiting = await probe.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            )
            if waiting or paying.done():
                break
            await asyncio.sleep(0.025)
        assert waiting, "the payment never waited for the wallet"
        async with probe.transaction():  # the stock row is free meanwhile
            await probe.execute("SELECT 1 FROM stock_item WHERE id = $1 FOR UPDATE NOWAIT", item.id)
        await held.commit()
        paid = (await paying)["payOrders"]
    finally:
        await holder.close()
        await probe.close()
    assert paid["userErrors"] == []
    assert paid["orders"][0]["lines"] == [{"quantity": 1, "stockQuantity": 1}]


async def test_paying_two_orders_from_stock_records_each_movement_and_one_stock_low(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """One payment taking units for two orders from one stock item: an INVENTORY_CHANGED per
    line with the figures after its own movement, and STOCK_LOW once, after the movement that
    crosses the threshold, then the orders' and the wallet's events. PostgreSQL builds the stock
    events inside the payment's statement and other engines movement by movement: the events
    are the same."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    await stock_up(client, supplier, buyer, cat, warehouse_id, 5)
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    await ok(
        client,
        "mutation($i: ID!) { setLowStockThreshold(stockItemId: $i, threshold: 3) { userErrors { code } } }",
        {"i": item["id"]},
        token=buyer.token,
    )
    first, second = [await manual_order(client, buyer, cat, 2) for _ in range(2)]
    before = (await client.data("{ events(first: 100) { edges { cursor } } }", token=buyer.token))[
        "events"
    ]["edges"][-1]["cursor"]
    paid = await ok(
        client,
        PAY_FROM_STOCK,
        {"o": [first, second], "w": warehouse_id, "s": False},
        token=buyer.token,
    )
    assert [o["lines"] for o in paid["orders"]] == [[{"quantity": 2, "stockQuantity": 2}]] * 2
    events = (
        await client.data(
            "query($a: String) { events(first: 100, after: $a) { edges { node { type payload } } } }",
            {"a": before},
            token=buyer.token,
        )
    )["events"]["edges"]
    seen = [(e["node"]["type"], e["node"]["payload"]) for e in events]
    stock = [
        (kind, p["orderId"], p["onHand"], p["reserved"], p["available"], p.get("threshold"))
        for kind, p in seen
        if kind in ("INVENTORY_CHANGED", "STOCK_LOW")
    ]
    assert stock == [
        ("INVENTORY_CHANGED", first, 5, 2, 3, None),
        ("INVENTORY_CHANGED", second, 5, 4, 1, None),
        ("STOCK_LOW", second, 5, 4, 1, 3),
    ]
    assert [kind for kind, _ in seen] == [
        "INVENTORY_CHANGED",
        "INVENTORY_CHANGED",
        "STOCK_LOW",
        "ORDER_STATUS_CHANGED",
        "ORDER_STATUS_CHANGED",
        "WALLET_CHANGED",
    ]
    [after] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (after["onHand"], after["reserved"], after["available"]) == (5, 4, 1)
    await assert_ledger_matches()
