"""Setting up distribution scenarios through the API: a supplier, a partnered distributor, a
third-party warehouse simulator served over real HTTP, and paid distribution orders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from integrations.warehouses.simulator import create_warehouse_simulator
from schema.global_ids import split as split_gid
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, serve
from tests.test_order_flow import ok, supplier_catalogue

WAREHOUSE_KEY = "wh-key"

# fast worker timings for tests: (timeout, client retries, task runs, retry delay)
FAST_WAREHOUSE = {
    "warehouse_timeout": 1.0,
    "warehouse_retries": 1,
    "warehouse_task_attempts": 2,
    "warehouse_retry_delay": 0.2,
    "warehouse_reconcile_after": 3600.0,
}


def warehouse_reference(reference: str) -> str:
    """The reference an order was pushed under (its key), given the order's API id or the
    reference itself."""
    parts = split_gid(reference)
    if parts is None:
        return reference
    return f"R{parts[1]}" if parts[0] == "AfterSalesOrder" else str(parts[1])


@dataclass
class WarehouseSim:
    url: str
    control: httpx.AsyncClient

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.control.post(path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    async def configure(self, callback_secret: str) -> None:
        await self._post("/_sim/config", {"callback_secret": callback_secret})

    async def advance(self, reference: str, status: str, **body: Any) -> dict[str, Any]:
        """Move an outbound order on; ``reference`` may be the order's API id."""
        path = f"/_sim/outbound/{warehouse_reference(reference)}/advance"
        return await self._post(path, {"status": status, **body})

    async def receive(self, reference: str, **body: Any) -> dict[str, Any]:
        return await self._post(f"/_sim/returns/{warehouse_reference(reference)}/receive", body)

    async def redeliver(self, event_id: str, **body: Any) -> httpx.Response:
        return await self.control.post(f"/_sim/redeliver/{event_id}", json=body)

    async def faults(self, **body: Any) -> None:
        await self._post("/_sim/faults", body)

    async def effects(self) -> dict[str, int]:
        return (await self.control.get("/_sim/effects")).json()

    async def requests(self) -> list[dict[str, Any]]:
        return (await self.control.get("/_sim/requests")).json()["requests"]

    async def state(self) -> dict[str, Any]:
        return (await self.control.get("/_sim/state")).json()


async def warehouse_simulator() -> AsyncIterator[WarehouseSim]:
    app = create_warehouse_simulator(api_key=WAREHOUSE_KEY, callback_secret="not-yet-issued")
    async with serve(app) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
        yield WarehouseSim(url=url, control=control)


@dataclass
class Distribution:
    supplier: Member
    distributor: Member
    catalogue: dict[str, Any]
    partnership_id: str
    warehouse_id: str
    third_party_warehouse_id: str | None


async def partnered(
    client: GraphQLHttp,
    make_member: MakeMember,
    sim: WarehouseSim | None,
    *,
    supplier: Member | None = None,
) -> Distribution:
    """A supplier with a catalogue, an accepted distributor, and (with ``sim``) the
    partnership's warehouse run by the simulator."""
    supplier = supplier or await make_member("SUPPLIER")
    distributor = await make_member("BUYER")
    catalogue = await supplier_catalogue(client, supplier)
    applied = await ok(
        client,
        'mutation($s: ID!) { applyForPartnership(supplierId: $s, message: "hi") { partnership { id status } userErrors { code field message } } }',
        {"s": supplier.gid},
        token=distributor.token,
    )
    assert applied["partnership"]["status"] == "PENDING"
    partnership_id = applied["partnership"]["id"]
    accepted = await ok(
        client,
        "mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: true) { partnership { status warehouseId } userErrors { code field message } } }",
        {"p": partnership_id},
        token=supplier.token,
    )
    assert accepted["partnership"]["status"] == "ACCEPTED"
    warehouse_id = accepted["partnership"]["warehouseId"]
    third_party_warehouse_id = None
    if sim is not None:
        authorised = await ok(
            client,
            'mutation($u: String!) { authoriseThirdPartyWarehouse(input: {provider: "SimWMS", name: "Sim", apiUrl: $u, apiKey: "wh-key"}) { thirdPartyWarehouse { id } callbackSecret userErrors { code field message } } }',
            {"u": sim.url},
            token=supplier.token,
        )
        third_party_warehouse_id = authorised["thirdPartyWarehouse"]["id"]
        await sim.configure(authorised["callbackSecret"])
        await ok(
            client,
            "mutation($p: ID!, $w: ID!, $c: ID) { selectDistributionWarehouse(partnershipId: $p, warehouseId: $w, thirdPartyWarehouseId: $c) { partnership { warehouseId } userErrors { code field message } } }",
            {"p": partnership_id, "w": warehouse_id, "c": third_party_warehouse_id},
            token=supplier.token,
        )
    return Distribution(
        supplier, distributor, catalogue, partnership_id, warehouse_id, third_party_warehouse_id
    )


async def manual_order(client: GraphQLHttp, d: Distribution, *, quantity: int = 1) -> str:
    made = await ok(
        client,
        """mutation($k: ID!, $m: ID!, $q: Int!) { createManualOrder(input: {lines: [{skuId: $k, quantity: $q}],
        logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St", city: "London", zip: "N1", countryCode: "GB"}})
        { order { id } userErrors { code field message } } }""",
        {"k": d.catalogue["skus"]["TEE-R-M"], "m": d.catalogue["method"], "q": quantity},
        token=d.distributor.token,
    )
    return made["order"]["id"]


async def top_up(client: GraphQLHttp, d: Distribution, amount: str) -> None:
    await ok(
        client,
        'mutation($b: ID!, $a: Decimal!) { topUpWallet(buyerId: $b, amount: $a, currency: "USD") { userErrors { code } } }',
        {"b": d.distributor.gid, "a": amount},
        token=d.supplier.token,
    )


async def paid_order(client: GraphQLHttp, d: Distribution) -> str:
    """A distribution order paid by the distributor: 5.00 goods + 3.00 freight to GB."""
    order_id = await manual_order(client, d)
    await top_up(client, d, "8.00")
    await ok(
        client,
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
        {"o": order_id},
        token=d.distributor.token,
    )
    return order_id


async def push(client: GraphQLHttp, d: Distribution, *order_ids: str) -> dict[str, Any]:
    return (
        await client.data(
            "mutation($o: [ID!]!) { pushOrders(orderIds: $o) { orders { id } userErrors { code field message } } }",
            {"o": list(order_ids)},
            token=d.supplier.token,
        )
    )["pushOrders"]


ORDER_STATE = """query($o: ID!) { order(id: $o) { id number status paidAmount refundedAmount carrier trackingNumber
  abnormalReason distribution { pushStatus pushError warehouseOrderId warehouseStatus withdrawalStatus }
  withdrawals { id status failure resolution } warehouseAttempts { kind ok outcome } } }"""


async def order_state(client: GraphQLHttp, token: str, order_id: str) -> dict[str, Any]:
    return (await client.data(ORDER_STATE, {"o": order_id}, token=token))["order"]


async def eventually(
    read: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    *,
    timeout: float = 15.0,
) -> Any:
    """Poll ``read`` until ``done`` holds for its value; return that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await read()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.05)
