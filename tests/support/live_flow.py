"""The whole distribution flow with a live dashboard open: what ``tests/test_live_delivery.py``
checks and ``bench/live_mix.py`` times.

``run_flow`` drives, through the API of one or more instances: a partnership, a third-party
warehouse, a store order taken in from its webhook by the inbox worker, payments, pushes and
withdraws decided by the warehouse worker, warehouse callbacks, tracking pushed to the store,
a shipment found by reconciliation, and an after-sales return pushed automatically whose
withdraw the warehouse refuses. ``Pace`` sets how long the warehouse takes to answer and the
gap between steps. The dashboard (``panels``, or ``single_panel`` for a baseline) is opened
on a quiet server before the flow starts.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from domain.events import outbox
from domain.events.models import Event
from domain.organisations import commands as organisations
from domain.organisations import tokens
from domain.organisations.models import OrganisationKind
from integrations.bus.hub import EventHub
from schema.global_ids import gid
from tests.conftest import MakeMember, Member
from tests.support.dashboard import Dashboard, Panel, of_type, status_change, withdrawal_of
from tests.support.distribution import (
    WarehouseSim,
    eventually,
    order_state,
    paid_order,
    partnered,
    push,
    top_up,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import connect_variant, ok
from tests.test_store_integration import Sim

NO_ORDER = gid("Order", 999_999_999)  # well formed, and no order has it


@dataclass(frozen=True)
class Pace:
    warehouse_delay: float  # every warehouse API answer
    gap: float  # between steps, once everything before is published
    settle_timeout: float = 15.0


ALL = "subscription { events { id type } }"
WITHDRAWALS = (
    "subscription($o: [ID!]) { withdrawalStatusChanged(orderIds: $o) { eventId orderId status } }"
)
RETURNS = "subscription { returnStatusChanged { eventId status pushStatus withdrawalStatus } }"
STATUSES = "subscription($s: [OrderStatus!]) { orderStatusChanged(statuses: $s) { eventId orderId toStatus } }"
TYPES = "subscription($t: [EventType!]) { events(types: $t) { id type } }"
RESUMED = "subscription($a: ID) { events(afterEventId: $a) { id type subjectId } }"
WITH_ORDER = "subscription { orderStatusChanged { eventId toStatus order { id status } } }"


def panels(supplier: Member, distributor: Member, stranger: Member) -> list[Panel]:
    """The dashboard: 10 subscriptions of the supplier on 6 sockets, 6 of the distributor on 4,
    2 of an unrelated buyer that must receive nothing of theirs."""
    return [
        Panel("supplier.events", supplier, "s1", ALL, lambda e: True),
        Panel("supplier.events-again", supplier, "s6", ALL, lambda e: True),
        # a panel that resumed from its last event id: a replay, then live
        Panel(
            "supplier.events-resumed",
            supplier,
            "s6",
            RESUMED,
            lambda e: True,
            {"a": gid("Event", 0)},
        ),
        Panel("supplier.statuses-with-orders", supplier, "s1", WITH_ORDER, status_change()),
        Panel("supplier.withdrawals", supplier, "s2", WITHDRAWALS, withdrawal_of()),
        Panel("supplier.returns", supplier, "s3", RETURNS, of_type("RETURN_STATUS_CHANGED")),
        Panel(
            "supplier.shipped",
            supplier,
            "s4",
            STATUSES,
            status_change("SHIPPED"),
            {"s": ["SHIPPED"]},
        ),
        Panel(
            "supplier.pushes-and-tracking",
            supplier,
            "s4",
            TYPES,
            of_type("WAREHOUSE_PUSH_CHANGED", "ORDER_TRACKING_SYNC"),
            {"t": ["WAREHOUSE_PUSH_CHANGED", "ORDER_TRACKING_SYNC"]},
        ),
        Panel(
            "supplier.withdrawals-of-nothing",
            supplier,
            "s4",
            WITHDRAWALS,
            withdrawal_of(NO_ORDER),
            {"o": [NO_ORDER]},
        ),
        Panel("supplier.statuses.legacy", supplier, "s5", STATUSES, status_change(), legacy=True),
        Panel("distributor.events", distributor, "d1", ALL, lambda e: True),
        Panel("distributor.statuses-with-orders", distributor, "d2", WITH_ORDER, status_change()),
        Panel("distributor.withdrawals", distributor, "d2", WITHDRAWALS, withdrawal_of()),
        Panel(
            "distributor.returns.legacy",
            distributor,
            "d3",
            RETURNS,
            of_type("RETURN_STATUS_CHANGED"),
            legacy=True,
        ),
        Panel(
            "distributor.cancelled",
            distributor,
            "d4",
            STATUSES,
            status_change("CANCELLED"),
            {"s": ["CANCELLED"]},
        ),
        Panel(
            "distributor.wallet",
            distributor,
            "d4",
            TYPES,
            of_type("WALLET_CHANGED"),
            {"t": ["WALLET_CHANGED"]},
        ),
        Panel("stranger.events", stranger, "x1", ALL, lambda e: True),
        Panel(
            "stranger.withdrawals.legacy", stranger, "x2", WITHDRAWALS, withdrawal_of(), legacy=True
        ),
    ]


def single_panel(supplier: Member, distributor: Member, stranger: Member) -> list[Panel]:
    """The baseline: the supplier's event stream alone."""
    return [Panel("supplier.events", supplier, "s1", ALL, lambda e: True)]


async def new_member(kind: str = "BUYER", **_: object) -> Member:
    """An organisation with its owner and a token, made through the domain as the CLI does."""
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    _, user = await organisations.create_organisation(
        name=f"Org {email}", kind=OrganisationKind(kind), owner_email=email, owner_name="Owner"
    )
    token, secret = await tokens.issue_token(user=user, name="live")
    return Member(user.organisation_id, user.id, email, secret, token.id)


# --------------------------------------------------------------------------- instances


@dataclass
class Instance:
    """A server the dashboard and the flow talk to: in this process, or another one."""

    url: str
    running: RunningServer | None = None

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    async def listening(self, count: int) -> None:
        if self.running is not None:
            await self.running.wait_for_subscribers(count)
            return
        async with httpx.AsyncClient() as http:  # the other process: its metrics, then a margin
            for _ in range(200):
                text = (await http.get(f"{self.url}/metrics", headers=metrics_headers())).text
                line = next(
                    ln
                    for ln in text.splitlines()
                    if ln.startswith("supplygraph_active_subscriptions ")
                )
                if float(line.split()[1]) >= count:
                    await asyncio.sleep(0.5)
                    return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.url}: {count} subscriptions not open")


async def settle(hub: EventHub | None, timeout: float = 15.0) -> int:
    """Wait until every committed event is published (and dispatched by ``hub``, this
    process's); the last seq."""
    deadline = time.monotonic() + timeout
    while True:
        pending = await Event.filter(published_at__isnull=True).count()
        last = await outbox.last_seq()
        if pending == 0 and (hub is None or hub.last_seq == last):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending} events unpublished")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- the flow


PanelSet = Callable[[Member, Member, Member], list[Panel]]


async def run_flow(
    *,
    instances: list[Instance],
    sim: WarehouseSim,
    shop: Sim,
    dashboard: Dashboard,
    pace: Pace,
    make_member: MakeMember = new_member,
    panel_set: PanelSet = panels,
    hub: EventHub | None = None,
) -> None:
    """The whole flow with ``panel_set`` open on ``dashboard``: its sockets and the requests
    take turns over ``instances``; ``hub`` is this process's, if one of them runs here."""
    clients = [GraphQLHttp(i.url) for i in instances]
    try:
        await _flow(clients, instances, sim, shop, dashboard, pace, make_member, panel_set, hub)
    finally:
        for c in clients:
            await c.close()


async def _flow(
    clients: list[GraphQLHttp],
    instances: list[Instance],
    sim: WarehouseSim,
    shop: Sim,
    dashboard: Dashboard,
    pace: Pace,
    make_member: MakeMember,
    panel_set: PanelSet,
    hub: EventHub | None,
) -> None:
    turn = iter(range(1_000_000))

    def client() -> GraphQLHttp:
        return clients[next(turn) % len(clients)]

    supplier = await make_member("SUPPLIER")
    distributor = await make_member("BUYER")
    stranger = await make_member("BUYER")

    # the dashboard opens first, on a fresh server, before anything happens
    await settle(hub, pace.settle_timeout)
    opened = panel_set(supplier, distributor, stranger)
    sockets = sorted({p.socket for p in opened})
    home = {s: instances[i % len(instances)] for i, s in enumerate(sockets)}
    await dashboard.open(opened, lambda p: home[p.socket].ws_url)
    for instance in instances:
        await instance.listening(sum(1 for p in opened if home[p.socket] is instance))
    dashboard.started([p.name for p in opened], await settle(hub, pace.settle_timeout))

    async def gap() -> None:
        await settle(hub, pace.settle_timeout)
        await asyncio.sleep(pace.gap)

    async def pushed(order_id: str) -> None:
        """Push, and wait for the worker's outcome."""
        await push(client(), d, order_id)
        await eventually(
            lambda: order_state(client(), supplier.token, order_id),
            lambda s: s["distribution"]["pushStatus"] == "PUSHED",
        )

    async def withdrawn(order_id: str, outcome: str) -> None:
        """Withdraw as the distributor, and wait for the worker's ``outcome``."""
        await ok(
            client(),
            "mutation($o: ID!) { withdrawOrder(orderId: $o) { withdrawal { id } userErrors { code } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
        await eventually(
            lambda: order_state(client(), supplier.token, order_id),
            lambda s: s["distribution"]["withdrawalStatus"] == outcome,
        )

    d = await partnered(client(), make_member, sim, supplier=supplier)
    assert d.distributor is not None
    await gap()
    await ok(
        client(),
        "mutation { updateDistributionSettings(autoPushReturns: true) { userErrors { code } } }",
        token=supplier.token,
    )
    await sim.faults(delay=pace.warehouse_delay)
    await gap()

    # a store order, taken in from its webhook by the inbox worker
    store = await ok(
        client(),
        """mutation($u: String!) { connectStore(input: {name: "BigShop store", platform: BIGSHOP,
          apiUrl: $u, accessToken: "bs-token", webhookSecret: "bs-secret"})
          { store { id } webhookUrlPath userErrors { code field message } } }""",
        {"u": shop.url},
        token=d.distributor.token,
    )
    tee = await shop.product("Tee")
    red = next(v for v in tee["variants"] if v["option1"] == "Red")
    await ok(
        client(),
        "mutation($s: ID!) { syncStoreOrders(storeId: $s) { userErrors { code field message } } }",
        {"s": store["store"]["id"]},
        token=d.distributor.token,
    )
    products = (
        await client().data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id variants { id externalId } } } }",
            {"s": store["store"]["id"]},
            token=d.distributor.token,
        )
    )["storeProducts"]["nodes"]
    product_id, variant = next(
        (p["id"], v["id"])
        for p in products
        for v in p["variants"]
        if v["externalId"] == str(red["id"])
    )
    connected = await connect_variant(
        client(), d.distributor, product_id, d.catalogue, variant, "TEE-R-M"
    )
    assert connected["userErrors"] == []
    await gap()
    made = await shop.order(red["id"], deliver_to=f"{instances[-1].url}{store['webhookUrlPath']}")
    assert made["webhook_status"] == 202
    number = made["order"]["name"]  # the shop may hold earlier orders: this one, by number
    found = await eventually(
        lambda: client().data(
            "{ orders(filter: {platform: BIGSHOP}) { edges { node { id storeOrderNumber } } } }",
            token=d.distributor.token,
        ),
        lambda data: any(e["node"]["storeOrderNumber"] == number for e in data["orders"]["edges"]),
    )
    store_order_id = next(
        e["node"]["id"] for e in found["orders"]["edges"] if e["node"]["storeOrderNumber"] == number
    )
    await gap()

    # a paid order pushed (the worker's outcome a warehouse delay later), then withdrawn successfully
    first_order = await paid_order(client(), d)
    await gap()
    await pushed(first_order)
    await gap()
    await withdrawn(first_order, "WITHDRAWN")
    await gap()

    # the store order paid and pushed, shipped by callback: tracking goes to the store
    await top_up(client(), d, "20.00")
    await ok(
        client(),
        "mutation($o: ID!) { payOrders(orderIds: [$o]) { userErrors { code message } } }",
        {"o": store_order_id},
        token=d.distributor.token,
    )
    await gap()
    await pushed(store_order_id)
    await gap()
    pushed_before = len(await shop.fulfillments())
    await sim.advance(store_order_id, "SHIPPED", carrier="UPS", tracking_number="1Z99")
    await eventually(shop.fulfillments, lambda f: len(f) > pushed_before)
    await gap()

    # a second order: picking has begun, so its withdraw is refused after the warehouse answers
    second_order = await paid_order(client(), d)
    await gap()
    await pushed(second_order)
    await sim.advance(second_order, "PICKING")
    await gap()
    await withdrawn(second_order, "WITHDRAW_FAILED")
    await gap()
    # shipped without a callback: reconciliation finds it. Its rounds take the stalest pushed
    # orders first, 20 at a time, and on PostgreSQL the database is the whole session's: earlier
    # tests' orders, whose warehouses are gone, come first, each failing after its retries
    await sim.advance(second_order, "SHIPPED", carrier="DHL", tracking_number="T2", deliver=False)
    await eventually(
        lambda: order_state(client(), supplier.token, second_order),
        lambda s: s["status"] == "SHIPPED",
        timeout=90,
    )
    await gap()

    # an after-sales return pushed automatically; its withdraw refused once received
    lines = (
        await client().data(
            "query($o: ID!) { order(id: $o) { lines { id } } }",
            {"o": second_order},
            token=d.distributor.token,
        )
    )["order"]["lines"]
    created = (
        await ok(
            client(),
            """mutation($o: ID!, $l: ID!) { createAfterSalesOrder(input: {orderId: $o,
              items: [{lineId: $l, quantity: 1}], reason: "wrong size"})
              { afterSalesOrder { id } userErrors { code } } }""",
            {"o": second_order, "l": lines[0]["id"]},
            token=d.distributor.token,
        )
    )["afterSalesOrder"]
    read = "query($r: ID!) { afterSalesOrder(id: $r) { pushStatus withdrawalStatus } }"
    await eventually(
        lambda: client().data(read, {"r": created["id"]}, token=supplier.token),
        lambda s: s["afterSalesOrder"]["pushStatus"] == "PUSHED",
    )
    await gap()
    await sim.receive(created["id"], deliver=False)
    await ok(
        client(),
        "mutation($r: ID!) { withdrawAfterSalesOrder(afterSalesId: $r) { withdrawal { status } userErrors { code } } }",
        {"r": created["id"]},
        token=d.distributor.token,
    )
    await eventually(
        lambda: client().data(read, {"r": created["id"]}, token=supplier.token),
        lambda s: s["afterSalesOrder"]["withdrawalStatus"] == "WITHDRAW_FAILED",
    )
    await gap()


def metrics_headers() -> dict[str, str]:
    """``/metrics``'s token as the servers of this process were given it (the test suite's, or
    the bench's when the bench runs this flow)."""
    return {"authorization": f"Bearer {os.environ['METRICS_TOKEN']}"}
