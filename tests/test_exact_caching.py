"""Exact caching: a change one organisation makes reaches every other organisation's cached
answers that show it, at once on the instance that made it and with the broadcast's latency on
another, never after ``RESPONSE_CACHE_TTL``.

Each scenario has a reader whose answer is cached (a second read is a hit) before a writer of
another organisation changes what it shows; the reader's next answer must show the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.distribution import partnered
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer, app_process
from tests.support.services import require_postgres, require_redis
from tests.test_cloud_stock import INVENTORY, top_up, warehouse
from tests.test_order_flow import ok, supplier_catalogue
from tests.test_redis_instances import NO_SAFETY_POLL
from tests.test_response_cache import hold_publisher, send

Change = Callable[[GraphQLHttp], Awaitable[Any]]


@dataclass
class Scenario:
    reader: Member
    query: str
    variables: dict[str, Any]
    change: Change  # the writer's mutation, through the client it is given
    shows: Callable[[dict[str, Any]], bool]  # whether the reader's data shows the change


SOCKS = """mutation { createProduct(input: {title: "Socks", skus: [{code: "SOCK-1",
  attributes: {size: "M"}, weightGrams: 50, unitPrice: "2.00"}]}) { userErrors { code } } }"""
SEA = """mutation { createLogisticsMethod(input: {name: "Sea", minDays: 20, maxDays: 40, rules: [
  {countryCode: "FR", firstWeightGrams: 1000, firstPrice: "1.00", stepGrams: 1000, stepPrice: "0.50"}
  ]}) { userErrors { code } } }"""
MANUAL_ORDER = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {
  lines: [{skuId: $k, quantity: 1}], logisticsMethodId: $m,
  shippingAddress: {name: "Shop", address1: "1 Road", city: "Paris", countryCode: "FR"}})
  { order { id } userErrors { code field message } } }"""


async def _mutate(client: GraphQLHttp, query: str, variables: dict[str, Any], token: str) -> None:
    await ok(client, query, variables, token=token)


async def product_created(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await supplier_catalogue(client, supplier)
    return Scenario(
        buyer,
        "query($s: ID!) { products(supplierId: $s) { nodes { title } } }",
        {"s": supplier.gid},
        lambda c: _mutate(c, SOCKS, {}, supplier.token),
        lambda data: "Socks" in [p["title"] for p in data["products"]["nodes"]],
    )


async def price_changed(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    """The new price shows in the catalogue and through the buyer's order lines."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    catalogue = await supplier_catalogue(client, supplier)
    sku = catalogue["skus"]["TEE-R-M"]
    made = await ok(client, MANUAL_ORDER, {"k": sku, "m": catalogue["method"]}, token=buyer.token)

    def shows(data: dict[str, Any]) -> bool:
        [product] = data["products"]["nodes"]
        listed = {s["code"]: s["unitPrice"] for s in product["skus"]}["TEE-R-M"]
        [line] = data["order"]["lines"]
        return listed == line["sku"]["unitPrice"] == "7.50"

    return Scenario(
        buyer,
        """query($s: ID!, $o: ID!) { products(supplierId: $s) { nodes { skus { code unitPrice } } }
          order(id: $o) { lines { sku { unitPrice } } } }""",
        {"s": supplier.gid, "o": made["order"]["id"]},
        lambda c: _mutate(
            c,
            'mutation($k: ID!) { updateSku(input: {skuId: $k, unitPrice: "7.50"}) { userErrors { code } } }',
            {"k": sku},
            supplier.token,
        ),
        shows,
    )


async def estimate_changed(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    """An unpaid order's prices are the SKU's price now: a new price shows in them, although
    the reader selects no SKU."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    catalogue = await supplier_catalogue(client, supplier)
    sku = catalogue["skus"]["TEE-R-M"]
    made = await ok(client, MANUAL_ORDER, {"k": sku, "m": catalogue["method"]}, token=buyer.token)

    def shows(data: dict[str, Any]) -> bool:
        order = data["order"]
        return order["goodsAmount"] == order["lines"][0]["unitPrice"] == "7.50"

    return Scenario(
        buyer,
        "query($o: ID!) { order(id: $o) { goodsAmount pricesEstimated lines { unitPrice } } }",
        {"o": made["order"]["id"]},
        lambda c: _mutate(
            c,
            'mutation($k: ID!) { updateSku(input: {skuId: $k, unitPrice: "7.50"}) { userErrors { code } } }',
            {"k": sku},
            supplier.token,
        ),
        shows,
    )


async def stock_received(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    """A stocking order in transit; the supplier records its arrival."""
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    catalogue = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    made = await ok(
        client,
        """mutation($w: ID!, $k: ID!, $m: ID!) { createCloudWarehouseOrder(input: {warehouseId: $w,
          logisticsMethodId: $m, lines: [{skuId: $k, quantity: 4}]}) { order { id } userErrors { code } } }""",
        {"w": warehouse_id, "k": catalogue["skus"]["TEE-R-M"], "m": catalogue["method"]},
        token=buyer.token,
    )
    order_id = made["order"]["id"]
    await top_up(client, supplier, buyer, "500.00")
    await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
        {"o": order_id},
        token=buyer.token,
    )
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "COSCO", trackingNumber: "C1") { userErrors { code } } }',
        {"o": order_id},
        token=supplier.token,
    )
    return Scenario(
        buyer,
        INVENTORY,
        {},
        lambda c: _mutate(
            c,
            "mutation($o: ID!) { receiveStock(orderId: $o) { userErrors { code } } }",
            {"o": order_id},
            supplier.token,
        ),
        lambda data: (
            [(i["onHand"], i["inTransit"]) for i in data["inventory"]["nodes"]] == [(4, 0)]
        ),
    )


async def cloud_warehouse_created(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await warehouse(client, supplier)
    return Scenario(
        buyer,
        "query($s: ID!) { cloudWarehouses(supplierId: $s) { nodes { id } } }",
        {"s": supplier.gid},
        lambda c: warehouse(c, supplier),
        lambda data: len(data["cloudWarehouses"]["nodes"]) == 2,
    )


async def logistics_method_created(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    await supplier_catalogue(client, supplier)
    return Scenario(
        buyer,
        "query($s: ID!) { logisticsMethods(supplierId: $s) { nodes { name rules { countryCode } } } }",
        {"s": supplier.gid},
        lambda c: _mutate(c, SEA, {}, supplier.token),
        lambda data: (
            {"name": "Sea", "rules": [{"countryCode": "FR"}]} in data["logisticsMethods"]["nodes"]
        ),
    )


async def partnership_decided(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    supplier, distributor = await make_member("SUPPLIER"), await make_member("BUYER")
    applied = await ok(
        client,
        "mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id } userErrors { code } } }",
        {"s": supplier.gid},
        token=distributor.token,
    )
    return Scenario(
        distributor,
        "{ partnerships { nodes { status } } }",
        {},
        lambda c: _mutate(
            c,
            "mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: true) { userErrors { code } } }",
            {"p": applied["partnership"]["id"]},
            supplier.token,
        ),
        lambda data: data["partnerships"]["nodes"] == [{"status": "ACCEPTED"}],
    )


async def distribution_warehouse_added(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    d = await partnered(client, make_member, None)
    return Scenario(
        d.supplier,
        "query($p: ID!) { distributionWarehouses(partnershipId: $p) { nodes { name } } }",
        {"p": d.partnership_id},
        lambda c: _mutate(
            c,
            """mutation($p: ID!) { addDistributionWarehouse(input: {partnershipId: $p, name: "North",
              address: {name: "North", address1: "1 Quay", city: "Leeds", countryCode: "GB"}})
              { userErrors { code } } }""",
            {"p": d.partnership_id},
            d.distributor.token,
        ),
        lambda data: "North" in [w["name"] for w in data["distributionWarehouses"]["nodes"]],
    )


async def distributor_renamed(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    """A name the reader sees through its partnership, not its own organisation's."""
    d = await partnered(client, make_member, None)
    return Scenario(
        d.supplier,
        "{ partnerships { nodes { distributorName } } }",
        {},
        lambda c: _mutate(
            c,
            'mutation { renameOrganisation(input: {name: "Renamed Distribution"}) { userErrors { code } } }',
            {},
            d.distributor.token,
        ),
        lambda data: data["partnerships"]["nodes"] == [{"distributorName": "Renamed Distribution"}],
    )


async def order_moved_to_another_supplier(client: GraphQLHttp, make_member: MakeMember) -> Scenario:
    """The buyer connects its unpaid order's only line to another supplier's SKU: the first
    supplier no longer sees the order, though no event of the order names it any more."""
    first, second = await make_member("SUPPLIER"), await make_member("SUPPLIER")
    buyer = await make_member("BUYER")
    ours, theirs = await supplier_catalogue(client, first), await supplier_catalogue(client, second)
    made = await ok(
        client,
        "mutation($k: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}], "
        'shippingAddress: {name: "Shop", address1: "1 Road", city: "Paris", countryCode: "FR"}})'
        " { order { id lines { id } } userErrors { code } } }",
        {"k": ours["skus"]["TEE-R-M"]},
        token=buyer.token,
    )
    order = made["order"]
    return Scenario(
        first,
        "{ orders { edges { node { id } } } }",
        {},
        lambda c: _mutate(
            c,
            "mutation($o: ID!, $l: ID!, $k: ID!) { connectOrderSku(orderId: $o, lineId: $l, skuId: $k) { userErrors { code } } }",
            {"o": order["id"], "l": order["lines"][0]["id"], "k": theirs["skus"]["TEE-R-M"]},
            buyer.token,
        ),
        lambda data: data["orders"]["edges"] == [],
    )


SCENARIOS = [
    product_created,
    price_changed,
    estimate_changed,
    stock_received,
    cloud_warehouse_created,
    logistics_method_created,
    partnership_decided,
    distribution_warehouse_added,
    distributor_renamed,
    order_moved_to_another_supplier,
]


async def _cached(client: GraphQLHttp, scenario: Scenario) -> httpx.Response:
    """The reader's answer, read twice: the second time from the cache, not showing the change."""
    first = await send(client, scenario.query, scenario.variables, token=scenario.reader.token)
    assert not scenario.shows(first.json()["data"]), first.text
    again = await send(client, scenario.query, scenario.variables, token=scenario.reader.token)
    assert again.headers["x-cache"] == "hit" and again.content == first.content
    return again


@pytest.mark.parametrize("build", SCENARIOS, ids=lambda build: build.__name__)
async def test_the_next_read_on_the_same_instance_shows_another_organisations_change(
    build: Callable[[GraphQLHttp, MakeMember], Awaitable[Scenario]],
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = await build(client, make_member)
    await _cached(client, scenario)
    release = hold_publisher(server, monkeypatch)  # only the reader's settle can dispatch it
    await scenario.change(client)
    after = await send(client, scenario.query, scenario.variables, token=scenario.reader.token)
    assert after.headers["x-cache"] == "miss"
    assert scenario.shows(after.json()["data"]), after.text
    release.set()


async def test_a_change_on_another_instance_reaches_every_cached_reader(
    make_server: ServerFactory, make_member: MakeMember, database_url: str
) -> None:
    """Changes made through B, read through A: A's entries live 300 s and A does not poll the
    outbox in that time, so only the events B broadcasts can make A's next answers fresh."""
    redis_url = require_redis("redis: exact caching across instances")
    require_postgres("redis: exact caching across instances")
    a: RunningServer = await make_server(
        redis_url=redis_url, event_resync_interval=NO_SAFETY_POLL, response_cache_ttl=300.0
    )
    b = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRETS_KEY": a.settings.secrets_key,  # B opens what A sealed (a warehouse's secret)
        "EVENT_RESYNC_INTERVAL": str(NO_SAFETY_POLL),
    }
    async with app_process(b) as b_url:
        on_a, on_b = GraphQLHttp(a.url), GraphQLHttp(b_url)
        try:
            for build in SCENARIOS:
                scenario = await build(on_a, make_member)
                await _cached(on_a, scenario)
                await scenario.change(on_b)
                seen = await _until_shown(on_a, scenario)
                assert seen.headers["x-cache"] == "miss", build.__name__
        finally:
            await on_a.close()
            await on_b.close()


async def _until_shown(client: GraphQLHttp, scenario: Scenario, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await send(
            client, scenario.query, scenario.variables, token=scenario.reader.token
        )
        if scenario.shows(response.json()["data"]):
            return response
        assert loop.time() < deadline, response.text
        await asyncio.sleep(0.02)
