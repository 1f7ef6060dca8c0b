"""``python main.py simulate``: a stream of realistic traffic against a running server, so that
the live dashboard moves. Needs the demo organisations (``make seed``).

It drives the server as client teams would, through the public GraphQL API over HTTP (httpx),
with a token per demo owner (issued by the caller, revoked at exit). At start it serves the
warehouse simulator (``integrations/warehouses/simulator.py``) in this process on a free local
port; the supplier authorises it as a third-party warehouse, hands it the callback secret and
has it run the distributor's distribution warehouse. With ``demo_deadlines`` the three
organisations' deadlines for the rules the traffic can break are shortened to minutes
(``DEMO_DEADLINES``), so breaches open and clear while one watches; they are put back at exit.

Then, every ``interval`` seconds, one action picked at random (weights in ``ACTIONS``; the first
steps follow ``OPENING``, which shows every kind of change once), one printed line each: the
seller or the distributor places a manual order and (mostly) pays it, topping up its wallet
when short; the supplier ships a paid order or marks a shipped one delivered; the supplier
pushes a distributor's paid order to the warehouse, which moves pushed orders on (PICKING,
SHIPPED) and calls the server back; the distributor withdraws a paid order (sometimes while the
warehouse refuses every cancel, so the withdraw ends WITHDRAW_FAILED with its reason), retries
or closes a failed withdraw, returns an item of a delivered order (pushed to the warehouse and
stocked in later), or cancels an unpaid order. An action that fails is printed and the loop
goes on. Actions touch the orders this run placed, and those it takes over at start: the demo
buyers' open orders of the last day (``ADOPT_WITHIN``: older ones, such as the ones ``make seed``
backdates, stay late on purpose), except orders waiting at the warehouse of an earlier run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from integrations.warehouses.simulator import create_warehouse_simulator
from schema.global_ids import gid, key_of
from service import demo
from service.embedded_server import serving

Out = Callable[[str], None]

UNPAID_SHARE = 0.15  # orders left unpaid (to pay later, or to cancel)
REFUSE_SHARE = 0.4  # withdraws of pushed orders made while the warehouse refuses cancels
OUTCOME_WAIT = 20.0  # seconds to wait for a push's or a withdraw's outcome
POLL = 0.1
MAX_TRACKED = 300
ADOPT_WITHIN = timedelta(days=1)
OPEN = ("AWAITING_PAYMENT", "AWAITING_SHIPPING", "SHIPPED")
TOP_UP = "300.00"
# short deadlines (minutes) for the rules the traffic can break, so breaches come and go
DEMO_DEADLINES = {
    "PAID_NOT_SHIPPED": 2,
    "SHIPPED_NOT_DELIVERED": 4,
    "WAREHOUSE_SILENT": 3,
    "WITHDRAW_FAILED_UNRESOLVED": 1,
}
CARRIERS = (("Royal Mail", "RM"), ("DHL Express", "JD"), ("UPS", "1Z"), ("DPD", "15"))
WITHDRAW_REASONS = (
    "the customer cancelled",
    "duplicate order",
    "address could not be verified",
    "the customer found it cheaper elsewhere",
)
RETURN_REASONS = ("wrong size", "not as pictured", "arrived damaged", "changed their mind")
# idle connections are dropped before uvicorn's 5 s keep-alive ends them
IDLE_SAFE = httpx.Limits(keepalive_expiry=2)


class Party(StrEnum):
    SUPPLIER = "supplier"
    SELLER = "seller"
    DISTRIBUTOR = "distributor"


class SimulationError(Exception):
    """An answer with errors, a mutation's ``userErrors``, or a refusal of the simulator."""

    def __init__(self, message: str, *, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.codes = codes


# --- the API, as a client team calls it -----------------------------------------------------


class Api:
    """GraphQL over HTTP with one bearer token per party."""

    def __init__(self, http: httpx.AsyncClient, tokens: dict[Party, str]) -> None:
        self.http = http
        self.tokens = tokens

    async def query(
        self, party: Party, document: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql",
            json={"query": document, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.tokens[party]}"},
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            messages = [e.get("message", "?") for e in body.get("errors") or []]
            raise SimulationError(f"HTTP {response.status_code}: {'; '.join(messages)}")
        return body["data"]

    async def mutate(
        self, party: Party, document: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The mutation's payload; its ``userErrors`` raised as a ``SimulationError``."""
        data = await self.query(party, document, variables)
        payload = next(iter(data.values()))
        errors = payload.get("userErrors") or []
        if errors:
            text = "; ".join(f"{e['code']}: {e['message']}" for e in errors)
            raise SimulationError(text, codes=tuple(e["code"] for e in errors))
        return payload


ME = "{ me { organisation { id } } }"
PRODUCTS = "{ products(first: 100) { nodes { title skus { id code currency isActive } } } }"
METHODS = "{ logisticsMethods(first: 100) { nodes { id name } } }"
PARTNERSHIPS = "{ partnerships(first: 100) { nodes { id distributorId status warehouseId } } }"
AUTHORISE = """mutation($u: String!, $k: String!, $n: String!) {
  authoriseThirdPartyWarehouse(input: {provider: "SimWMS", name: $n, apiUrl: $u, apiKey: $k}) {
    thirdPartyWarehouse { id } callbackSecret userErrors { code field message } } }"""
SELECT = """mutation($p: ID!, $w: ID!, $c: ID) {
  selectDistributionWarehouse(partnershipId: $p, warehouseId: $w, thirdPartyWarehouseId: $c) {
    partnership { id } userErrors { code field message } } }"""
REVOKE_WAREHOUSE = """mutation($id: ID!) { revokeThirdPartyWarehouse(id: $id) {
  thirdPartyWarehouse { id } userErrors { code field message } } }"""
REVOKE_TOKEN = """mutation($id: ID!) { revokeApiToken(input: {id: $id}) {
  userErrors { code field message } } }"""
SLA_RULES = "{ slaRules { rule minutes enabled customised } }"
SET_SLA_RULE = """mutation($i: SlaRuleInput!) { setSlaRule(input: $i) {
  setting { rule minutes } userErrors { code field message } } }"""
CREATE_ORDER = """mutation($i: CreateManualOrderInput!) { createManualOrder(input: $i) {
  order { id number status } userErrors { code field message } } }"""
PAY = """mutation($o: [ID!]!) { payOrders(orderIds: $o) {
  charged { total currency } userErrors { code field message } } }"""
TOP_UP_WALLET = """mutation($b: ID!, $a: Decimal!, $c: String!) {
  topUpWallet(buyerId: $b, amount: $a, currency: $c, note: "simulated bank transfer") {
    wallet { balance } userErrors { code field message } } }"""
SHIP = """mutation($o: ID!, $c: String!, $t: String!) {
  shipOrder(orderId: $o, carrier: $c, trackingNumber: $t) {
    order { status } userErrors { code field message } } }"""
DELIVER = """mutation($o: ID!) { markDelivered(orderId: $o) {
  order { status } userErrors { code field message } } }"""
CANCEL = """mutation($o: [ID!]!, $r: String!) { cancelOrders(orderIds: $o, reason: $r) {
  orders { status } userErrors { code field message } } }"""
PUSH = """mutation($o: [ID!]!) { pushOrders(orderIds: $o) {
  orders { id } userErrors { code field message } } }"""
WITHDRAW = """mutation($o: ID!, $r: String!) { withdrawOrder(orderId: $o, reason: $r) {
  withdrawal { id status } userErrors { code field message } } }"""
RETRY = """mutation($w: ID!) { retryWithdrawal(withdrawalId: $w) {
  withdrawal { id status } userErrors { code field message } } }"""
CLOSE = """mutation($w: ID!, $n: String!) { closeWithdrawal(withdrawalId: $w, note: $n) {
  withdrawal { id status } userErrors { code field message } } }"""
RETURN = """mutation($i: CreateAfterSalesOrderInput!) { createAfterSalesOrder(input: $i) {
  afterSalesOrder { id number } userErrors { code field message } } }"""
PUSH_RETURNS = """mutation($a: [ID!]!) { pushReturns(afterSalesIds: $a) {
  afterSalesOrders { id } userErrors { code field message } } }"""
ORDERS = """query($ids: [ID!]!) { nodes(ids: $ids) { ... on Order { id number status
  lines { id quantity }
  distribution { pushStatus pushError warehouseOrderId warehouseStatus withdrawalStatus }
  withdrawals { id status resolution } } } }"""
PUSH_STATE = """query($o: ID!) { order(id: $o) { distribution {
  pushStatus pushError warehouseOrderId } } }"""
WITHDRAWAL_STATE = """query($w: ID!) { node(id: $w) { ... on Withdrawal { status failure } } }"""
RETURN_STATE = """query($a: ID!) { afterSalesOrder(id: $a) { status pushStatus pushError } }"""
OPEN_ORDERS = """query($f: OrderFilterInput!) { orders(first: 100, filter: $f) {
  edges { node { id status distribution { pushStatus } } } } }"""


# --- the warehouse simulator, served in this process -----------------------------------------


@dataclass
class Warehouse:
    """The simulator's address, API key, and a client of its control endpoints (``/_sim``)."""

    url: str
    api_key: str
    control: httpx.AsyncClient

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.control.post(path, json=body)
        if response.status_code >= 300:
            raise SimulationError(f"warehouse {path}: {response.status_code} {response.text}")
        return response.json()

    async def configure(self, *, callback_secret: str) -> None:
        await self.post("/_sim/config", {"callback_secret": callback_secret})

    async def refuse_cancels(self, *, refuse: bool) -> None:
        await self.post("/_sim/faults", {"refuse_cancel": refuse})

    async def advance(self, *, reference: str, status: str) -> dict[str, Any]:
        return await self.post(f"/_sim/outbound/{reference}/advance", {"status": status})

    async def receive(self, *, reference: str) -> dict[str, Any]:
        return await self.post(f"/_sim/returns/{reference}/receive", {})


@contextlib.asynccontextmanager
async def warehouse_simulator(*, host: str = "127.0.0.1") -> AsyncIterator[Warehouse]:
    """The warehouse simulator served by uvicorn in this event loop on a free port of ``host``
    (a socket bound before it starts: no race for the port); shut down on the way out."""
    api_key = secrets.token_urlsafe(16)
    app = create_warehouse_simulator(
        api_key=api_key, callback_secret=secrets.token_urlsafe(16), name="Demo warehouse"
    )
    sock = socket.socket()
    sock.bind((host, 0))
    url = f"http://{host}:{sock.getsockname()[1]}"
    async with (
        serving(app, sock, lifespan="off", graceful=3),
        httpx.AsyncClient(base_url=url, timeout=10, limits=IDLE_SAFE) as control,
    ):
        yield Warehouse(url=url, api_key=api_key, control=control)


# --- what the simulation knows ---------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """The demo organisations and catalogue, as the API names them."""

    ids: dict[Party, str]
    sku_ids: tuple[str, ...]
    sku_codes: dict[str, str]
    currency: str
    method_id: str
    partnership_id: str
    warehouse_id: str


@dataclass(frozen=True)
class OrderView:
    """One tracked order as the supplier sees it now."""

    id: str
    number: str
    party: Party
    status: str
    line_ids: tuple[str, ...]
    push_status: str | None
    warehouse_status: str | None
    withdrawal_status: str | None
    failed_withdrawal_id: str | None  # an open WITHDRAW_FAILED one

    @classmethod
    def of(cls, node: dict[str, Any], party: Party) -> OrderView:
        shown = node.get("distribution") or {}
        failed = [
            w["id"]
            for w in node["withdrawals"]
            if w["status"] == "WITHDRAW_FAILED" and w["resolution"] is None
        ]
        return cls(
            id=node["id"],
            number=node["number"],
            party=party,
            status=node["status"],
            line_ids=tuple(line["id"] for line in node["lines"]),
            push_status=shown.get("pushStatus"),
            warehouse_status=shown.get("warehouseStatus"),
            withdrawal_status=shown.get("withdrawalStatus"),
            failed_withdrawal_id=failed[-1] if failed else None,
        )

    @property
    def reference(self) -> str:
        """The order's reference at the warehouse (its key)."""
        return str(key_of(self.id))


@dataclass
class World:
    """What the simulation acts through, and on: the orders it tracks (placed, or taken over
    at start), the returns waiting at the warehouse, and what it did (for its report)."""

    api: Api
    warehouse: Warehouse
    shop: Shop
    rng: random.Random
    orders: dict[str, Party] = field(default_factory=dict)  # tracked, oldest first
    returns: dict[str, str] = field(default_factory=dict)  # pushed returns: id -> number
    placed: list[str] = field(default_factory=list)
    touched: dict[str, None] = field(default_factory=dict)  # placed or acted on, in order
    withdrawals: list[str] = field(default_factory=list)

    def track(self, order_id: str, party: Party) -> None:
        self.orders[order_id] = party
        self.placed.append(order_id)
        self.touched[order_id] = None
        while len(self.orders) > MAX_TRACKED:
            del self.orders[next(iter(self.orders))]

    def forget(self, order_id: str) -> None:
        self.orders.pop(order_id, None)

    async def views(self) -> list[OrderView]:
        """The tracked orders as they are now (those that are done are forgotten)."""
        ids = list(self.orders)
        found: list[OrderView] = []
        for start in range(0, len(ids), 100):
            data = await self.api.query(Party.SUPPLIER, ORDERS, {"ids": ids[start : start + 100]})
            found += [OrderView.of(n, self.orders[n["id"]]) for n in data["nodes"] if n]
        for view in found:
            if view.status in ("CANCELLED", "REFUNDED") or (
                view.status == "FULFILLED" and view.party is Party.SELLER
            ):
                self.forget(view.id)
        return found

    def pick(self, views: list[OrderView]) -> OrderView:
        """Mostly the oldest (the queue's head), sometimes any."""
        chosen = views[0] if self.rng.random() < 0.6 else self.rng.choice(views)
        self.touched[chosen.id] = None
        return chosen


def said(actor: str, text: str) -> str:
    return f"{actor:<11} {text}"


async def until(
    read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], *, seconds: float
) -> Any:
    """Poll ``read`` until ``done`` holds for its value (or ``seconds`` pass); the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await read()
        if done(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(POLL)


# --- setting up: the shop, the warehouse, the deadlines ---------------------------------------


async def discover(api: Api) -> Shop:
    """Find the demo catalogue and partnership through the API (``make seed`` made them)."""
    ids = {p: (await api.query(p, ME))["me"]["organisation"]["id"] for p in Party}
    products = (await api.query(Party.SUPPLIER, PRODUCTS))["products"]["nodes"]
    skus = [
        s
        for p in products
        if p["title"] == demo.PRODUCT_TITLE
        for s in p["skus"]
        if s["code"] in demo.SKU_CODES and s["isActive"]
    ]
    methods = (await api.query(Party.SUPPLIER, METHODS))["logisticsMethods"]["nodes"]
    method = next((m["id"] for m in methods if m["name"] == demo.METHOD_NAME), None)
    partnerships = (await api.query(Party.SUPPLIER, PARTNERSHIPS))["partnerships"]["nodes"]
    partnership = next(
        (
            p
            for p in partnerships
            if p["distributorId"] == ids[Party.DISTRIBUTOR] and p["status"] == "ACCEPTED"
        ),
        None,
    )
    if not skus or method is None or partnership is None or not partnership["warehouseId"]:
        raise SimulationError("the demo catalogue or partnership is missing: run `make seed`")
    return Shop(
        ids=ids,
        sku_ids=tuple(s["id"] for s in skus),
        sku_codes={s["id"]: s["code"] for s in skus},
        currency=skus[0]["currency"],
        method_id=method,
        partnership_id=partnership["id"],
        warehouse_id=partnership["warehouseId"],
    )


async def settle_up(out: Out, what: str, work: Awaitable[Any]) -> None:
    """Clean-up work that must not stop the rest of the clean-up: a failure is printed."""
    try:
        await work
    except (SimulationError, httpx.HTTPError, ValueError) as error:
        out(f"could not {what}: {error}")


@contextlib.asynccontextmanager
async def connected_warehouse(
    api: Api, warehouse: Warehouse, shop: Shop, *, out: Out
) -> AsyncIterator[str]:
    """The supplier authorises the simulator and has it run the distributor's distribution
    warehouse; revoked on the way out. Yields the third-party warehouse's id."""
    name = f"Demo warehouse simulator ({warehouse.url.rsplit(':', 1)[-1]})"
    authorised = await api.mutate(
        Party.SUPPLIER, AUTHORISE, {"u": warehouse.url, "k": warehouse.api_key, "n": name}
    )
    third_party_warehouse_id = authorised["thirdPartyWarehouse"]["id"]
    try:
        await warehouse.configure(callback_secret=authorised["callbackSecret"])
        variables = {
            "p": shop.partnership_id,
            "w": shop.warehouse_id,
            "c": third_party_warehouse_id,
        }
        await api.mutate(Party.SUPPLIER, SELECT, variables)
        yield third_party_warehouse_id
    finally:
        revoke = api.mutate(Party.SUPPLIER, REVOKE_WAREHOUSE, {"id": third_party_warehouse_id})
        await settle_up(out, "revoke the simulated warehouse", revoke)


async def _set_rule(api: Api, party: Party, rule: str, minutes: int | None, enabled: bool) -> None:
    variables = {"i": {"rule": rule, "minutes": minutes, "enabled": enabled}}
    await api.mutate(party, SET_SLA_RULE, variables)


async def _shorten_deadlines(
    api: Api, party: Party, before: list[tuple[Party, dict[str, Any]]]
) -> None:
    """Set ``party``'s ``DEMO_DEADLINES``, noting in ``before`` each rule's setting as it was
    (before changing it)."""
    for rule in (await api.query(party, SLA_RULES))["slaRules"]:
        if rule["rule"] in DEMO_DEADLINES:
            before.append((party, rule))
            await _set_rule(api, party, rule["rule"], DEMO_DEADLINES[rule["rule"]], True)


@contextlib.asynccontextmanager
async def demo_deadlines(api: Api, *, enabled: bool, out: Out) -> AsyncIterator[None]:
    """With ``enabled``: every party's ``DEMO_DEADLINES`` while inside, put back afterwards
    (a deadline still at its demo value, left by a run that was killed, goes back to the
    default)."""
    before: list[tuple[Party, dict[str, Any]]] = []
    try:
        for party in Party if enabled else ():
            await _shorten_deadlines(api, party, before)
        yield
    finally:
        for party, rule in before:
            kept = rule["customised"] and rule["minutes"] != DEMO_DEADLINES[rule["rule"]]
            minutes = rule["minutes"] if kept else None
            restore = _set_rule(api, party, rule["rule"], minutes, rule["enabled"])
            await settle_up(out, f"put back the {party}'s {rule['rule']} deadline", restore)


async def adopt(world: World, *, since: datetime) -> int:
    """Take over the demo buyers' open orders created since ``since`` (oldest first), except
    those waiting at a warehouse (an earlier run's simulator, gone now). How many."""
    taken = 0
    for party in (Party.SELLER, Party.DISTRIBUTOR):
        variables = {"f": {"statuses": list(OPEN), "createdFrom": since.isoformat()}}
        edges = (await world.api.query(party, OPEN_ORDERS, variables))["orders"]["edges"]
        for node in reversed([e["node"] for e in edges]):
            pushed = (node["distribution"] or {}).get("pushStatus") in ("PUSHING", "PUSHED")
            if not (pushed and node["status"] == "AWAITING_SHIPPING"):
                world.orders[node["id"]] = party
                taken += 1
    return taken


# --- the actions ----------------------------------------------------------------------------


def _address(rng: random.Random) -> dict[str, str]:
    chosen = rng.choice(demo.ADDRESSES)
    keys = {"country_code": "countryCode"}
    return {keys.get(k, k): v for k, v in chosen.items()}


async def _top_up(world: World, party: Party) -> None:
    variables = {"b": world.shop.ids[party], "a": TOP_UP, "c": world.shop.currency}
    await world.api.mutate(Party.SUPPLIER, TOP_UP_WALLET, variables)


async def _pay(world: World, party: Party, order_id: str) -> str:
    """Pay one order, topping the wallet up first when it is short; what it cost."""
    note = ""
    try:
        paid = await world.api.mutate(party, PAY, {"o": [order_id]})
    except SimulationError as error:
        if "INSUFFICIENT_FUNDS" not in error.codes:
            raise
        await _top_up(world, party)
        note = f" (wallet topped up {TOP_UP} {world.shop.currency})"
        paid = await world.api.mutate(party, PAY, {"o": [order_id]})
    charged = paid["charged"]
    return f"{charged['total']} {charged['currency']}{note}"


async def place(world: World, *, party: Party | None = None, pay: bool | None = None) -> str:
    """A buyer places a manual order of one or two SKUs, and pays it (mostly)."""
    rng = world.rng
    party = party or rng.choices((Party.SELLER, Party.DISTRIBUTOR), weights=(3, 2))[0]
    skus = rng.sample(world.shop.sku_ids, k=rng.choice((1, 1, 2)))
    lines = [{"skuId": sku, "quantity": rng.randint(1, 3)} for sku in skus]
    order_input = {
        "lines": lines,
        "shippingAddress": _address(rng),
        "logisticsMethodId": world.shop.method_id,
    }
    order = (await world.api.mutate(party, CREATE_ORDER, {"i": order_input}))["order"]
    world.track(order["id"], party)
    what = ", ".join(f"{ln['quantity']} x {world.shop.sku_codes[ln['skuId']]}" for ln in lines)
    if not (pay if pay is not None else rng.random() >= UNPAID_SHARE):
        return said(party, f"placed {order['number']} ({what}) -> AWAITING_PAYMENT")
    cost = await _pay(world, party, order["id"])
    return said(party, f"placed and paid {order['number']} ({what}) for {cost}")


async def ship(world: World) -> str | None:
    """The supplier ships one of the seller's paid orders."""
    views = [
        v
        for v in await world.views()
        if v.party is Party.SELLER and v.status == "AWAITING_SHIPPING"
    ]
    if not views:
        return None
    order = world.pick(views)
    carrier, prefix = world.rng.choice(CARRIERS)
    tracking = f"{prefix}{world.rng.randrange(10**9):09d}"
    await world.api.mutate(Party.SUPPLIER, SHIP, {"o": order.id, "c": carrier, "t": tracking})
    return said("supplier", f"shipped {order.number} with {carrier} {tracking} -> SHIPPED")


async def deliver(world: World) -> str | None:
    """The supplier marks a shipped order delivered."""
    views = [v for v in await world.views() if v.status == "SHIPPED"]
    if not views:
        return None
    order = world.pick(views)
    await world.api.mutate(Party.SUPPLIER, DELIVER, {"o": order.id})
    return said("supplier", f"{order.number} delivered -> FULFILLED")


async def _push_outcome(world: World, order_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        data = await world.api.query(Party.SUPPLIER, PUSH_STATE, {"o": order_id})
        return data["order"]["distribution"] or {}

    return await until(
        read, lambda d: d.get("pushStatus") not in ("PUSHING", None), seconds=OUTCOME_WAIT
    )


async def push(world: World) -> str | None:
    """The supplier pushes one of the distributor's paid orders to the warehouse."""
    views = [
        v
        for v in await world.views()
        if v.party is Party.DISTRIBUTOR
        and v.status == "AWAITING_SHIPPING"
        and v.push_status in (None, "NOT_PUSHED", "PUSH_FAILED")
        and v.withdrawal_status is None
    ]
    if not views:
        return None
    order = world.pick(views)
    await world.api.mutate(Party.SUPPLIER, PUSH, {"o": [order.id]})
    shown = await _push_outcome(world, order.id)
    outcome = shown.get("pushStatus")
    detail = shown.get("warehouseOrderId") or shown.get("pushError") or ""
    return said("supplier", f"pushed {order.number} to the warehouse -> {outcome} {detail}")


async def advance(world: World) -> str | None:
    """The warehouse moves a pushed order on (RECEIVED -> PICKING or SHIPPED, PICKING ->
    SHIPPED) and calls the server back."""
    views = [
        v
        for v in await world.views()
        if v.status == "AWAITING_SHIPPING"
        and v.push_status == "PUSHED"
        and v.warehouse_status in ("RECEIVED", "PICKING")
        and v.withdrawal_status != "WITHDRAWING"
    ]
    if not views:
        return None
    order = world.pick(views)
    target = "SHIPPED"
    if order.warehouse_status == "RECEIVED" and world.rng.random() < 0.5:
        target = "PICKING"
    moved = await world.warehouse.advance(reference=order.reference, status=target)
    carried = moved["order"]
    tracking = (
        f" with {carried['carrier']} {carried['tracking_number']}" if carried["carrier"] else ""
    )
    return said(
        "warehouse",
        f"{order.number} {order.warehouse_status} -> {target}{tracking} "
        f"(callback answered {moved['callback_status']})",
    )


async def _withdrawal_outcome(world: World, withdrawal_id: str) -> str:
    async def read() -> dict[str, Any]:
        data = await world.api.query(Party.DISTRIBUTOR, WITHDRAWAL_STATE, {"w": withdrawal_id})
        return data["node"] or {}

    shown = await until(read, lambda w: w.get("status") != "WITHDRAWING", seconds=OUTCOME_WAIT)
    failure = shown.get("failure")
    return f"{shown.get('status')}" + (f": {failure}" if failure else "")


async def withdraw(world: World, *, refuse: bool | None = None) -> str | None:
    """The distributor withdraws a paid order, at the warehouse (mostly) or not pushed yet;
    sometimes while the warehouse refuses every cancel (reset afterwards)."""
    views = [
        v
        for v in await world.views()
        if v.party is Party.DISTRIBUTOR
        and v.status == "AWAITING_SHIPPING"
        and v.withdrawal_status is None
        and v.push_status != "PUSHING"
    ]
    if not views:
        return None
    pushed = [v for v in views if v.push_status == "PUSHED"]
    if refuse is None:
        refuse = world.rng.random() < REFUSE_SHARE
    refuse = refuse and bool(pushed)
    order = world.pick(pushed or views)
    where = "at the warehouse" if order.push_status == "PUSHED" else "not pushed yet"
    if refuse:
        await world.warehouse.refuse_cancels(refuse=True)
        where = "at the warehouse, which refuses cancels"
    try:
        made = await world.api.mutate(
            Party.DISTRIBUTOR, WITHDRAW, {"o": order.id, "r": world.rng.choice(WITHDRAW_REASONS)}
        )
        world.withdrawals.append(made["withdrawal"]["id"])
        outcome = await _withdrawal_outcome(world, made["withdrawal"]["id"])
    finally:
        if refuse:
            await world.warehouse.refuse_cancels(refuse=False)
    return said("distributor", f"withdrew {order.number} ({where}) -> {outcome}")


async def resolve_failed(world: World) -> str | None:
    """A failed withdraw is retried (by the distributor, while the order has not shipped) or
    closed (by either side)."""
    views = [v for v in await world.views() if v.failed_withdrawal_id is not None]
    if not views:
        return None
    order = world.pick(views)
    failed = order.failed_withdrawal_id
    if order.status == "AWAITING_SHIPPING" and world.rng.random() < 0.6:
        made = await world.api.mutate(Party.DISTRIBUTOR, RETRY, {"w": failed})
        world.withdrawals.append(made["withdrawal"]["id"])
        outcome = await _withdrawal_outcome(world, made["withdrawal"]["id"])
        return said("distributor", f"retried the withdraw of {order.number} -> {outcome}")
    closer = world.rng.choice((Party.DISTRIBUTOR, Party.SUPPLIER))
    note = "agreed by phone: the parcel ships as planned"
    await world.api.mutate(closer, CLOSE, {"w": failed, "n": note})
    return said(closer, f"closed the failed withdraw of {order.number}: {note}")


async def cancel_unpaid(world: World) -> str | None:
    """A buyer cancels one of its unpaid orders."""
    views = [v for v in await world.views() if v.status == "AWAITING_PAYMENT"]
    if not views:
        return None
    order = world.pick(views)
    await world.api.mutate(order.party, CANCEL, {"o": [order.id], "r": "ordered by mistake"})
    return said(order.party, f"cancelled unpaid {order.number} -> CANCELLED")


async def _return_pushed(world: World, after_sales_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        data = await world.api.query(Party.SUPPLIER, RETURN_STATE, {"a": after_sales_id})
        return data["afterSalesOrder"] or {}

    return await until(
        read, lambda r: r.get("pushStatus") not in ("PUSHING", None), seconds=OUTCOME_WAIT
    )


async def return_items(world: World) -> str | None:
    """The distributor returns an item of a delivered (or shipped) order; the supplier pushes
    the return to the warehouse, which stocks it in later (``stock_in``)."""
    views = [
        v
        for v in await world.views()
        if v.party is Party.DISTRIBUTOR and v.status in ("FULFILLED", "SHIPPED") and v.line_ids
    ]
    if not views:
        return None
    order = world.pick(views)
    reason = world.rng.choice(RETURN_REASONS)
    items = [{"lineId": order.line_ids[0], "quantity": 1, "reason": reason}]
    variables = {"i": {"orderId": order.id, "items": items, "reason": f"customer: {reason}"}}
    made = (await world.api.mutate(Party.DISTRIBUTOR, RETURN, variables))["afterSalesOrder"]
    world.forget(order.id)  # one return per order
    await world.api.mutate(Party.SUPPLIER, PUSH_RETURNS, {"a": [made["id"]]})
    shown = await _return_pushed(world, made["id"])
    if shown.get("pushStatus") == "PUSHED":
        world.returns[made["id"]] = made["number"]
    return said(
        "distributor",
        f"returned 1 item of {order.number} ({reason}) as {made['number']}; "
        f"pushed -> {shown.get('pushStatus')}",
    )


async def stock_in(world: World) -> str | None:
    """The warehouse receives a pushed return and calls back: STOCKED_IN."""
    if not world.returns:
        return None
    after_sales_id = world.rng.choice(list(world.returns))
    number = world.returns.pop(after_sales_id)
    received = await world.warehouse.receive(reference=f"R{key_of(after_sales_id)}")
    return said(
        "warehouse",
        f"received return {number} -> STOCKED_IN (callback answered {received['callback_status']})",
    )


@dataclass(frozen=True)
class Action:
    name: str
    weight: int
    run: Callable[[World], Awaitable[str | None]]


ACTIONS = (
    Action("place", 24, place),
    Action("ship", 16, ship),
    Action("deliver", 9, deliver),
    Action("push", 12, push),
    Action("advance", 11, advance),
    Action("withdraw", 9, withdraw),
    Action("resolve", 6, resolve_failed),
    Action("cancel", 5, cancel_unpaid),
    Action("return", 5, return_items),
    Action("stock-in", 4, stock_in),
)


def _placing(party: Party, *, pay: bool) -> Action:
    async def run(world: World) -> str:
        return await place(world, party=party, pay=pay)

    return Action("place", 0, run)


def _withdrawing(*, refuse: bool) -> Action:
    async def run(world: World) -> str | None:
        return await withdraw(world, refuse=refuse)

    return Action("withdraw", 0, run)


# every kind of change once, first: both withdraw outcomes, a shipment, a warehouse move
OPENING = (
    _placing(Party.DISTRIBUTOR, pay=True),
    Action("push", 0, push),
    _withdrawing(refuse=False),
    _placing(Party.DISTRIBUTOR, pay=True),
    Action("push", 0, push),
    _withdrawing(refuse=True),
    _placing(Party.SELLER, pay=True),
    Action("ship", 0, ship),
    _placing(Party.SELLER, pay=False),
    _placing(Party.DISTRIBUTOR, pay=True),
    Action("push", 0, push),
    Action("advance", 0, advance),
)


# --- the loop -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    steps: int
    failures: int
    orders: tuple[str, ...]  # placed by this run
    touched: tuple[str, ...]  # placed or acted on by this run
    withdrawals: tuple[str, ...]  # requested by this run


def _random_action(rng: random.Random) -> Action:
    return rng.choices(ACTIONS, weights=[a.weight for a in ACTIONS])[0]


async def _step(world: World, action: Action) -> tuple[str, bool]:
    """Run one action; when it finds nothing to do, up to two others picked at random, then
    placing an order. (line, failed)"""
    tries = (action, _random_action(world.rng), _random_action(world.rng), ACTIONS[0])
    for current in tries:
        try:
            done = await current.run(world)
        except Exception as error:
            reason = str(error) or type(error).__name__
            return said(current.name, f"failed: {reason}"), True
        if done is not None:
            return done, False
    raise AssertionError("placing an order always does something")


def _actions(rng: random.Random, steps: int | None) -> Iterator[Action]:
    yield from OPENING[:steps]
    while True:
        yield _random_action(rng)


async def _loop(world: World, *, interval: float, steps: int | None, out: Out) -> Report:
    step = failures = 0
    try:
        for action in _actions(world.rng, steps):
            if steps is not None and step >= steps:
                break
            if step:
                await asyncio.sleep(interval)
            step += 1
            line, failed = await _step(world, action)
            failures += failed
            out(f"{step:>5} {datetime.now(UTC).astimezone():%H:%M:%S} {line}")
    finally:
        out(f"simulation stopped after {step} steps ({failures} failed)")
    return Report(
        steps=step,
        failures=failures,
        orders=tuple(world.placed),
        touched=tuple(world.touched),
        withdrawals=tuple(world.withdrawals),
    )


async def _revoke_tokens(api: Api, tokens: demo.DemoTokens, out: Out) -> None:
    for party, token in zip(Party, tokens.all(), strict=True):
        revoke = api.mutate(party, REVOKE_TOKEN, {"id": gid("ApiToken", token.token_id)})
        await settle_up(out, f"revoke the {party}'s token", revoke)


async def run(
    *,
    url: str,
    tokens: demo.DemoTokens,
    interval: float = 2.0,
    steps: int | None = None,
    seed: int | None = None,
    deadlines: bool = True,
    out: Out = print,
) -> Report:
    """Simulate until ``steps`` actions are done (None: until cancelled, e.g. by Ctrl-C)
    against the server at ``url``, as the owners of ``tokens`` (revoked at exit)."""
    parties = dict(zip(Party, (t.secret for t in tokens.all()), strict=True))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=IDLE_SAFE) as http:
        api = Api(http, parties)
        try:
            shop = await discover(api)
            async with (
                warehouse_simulator() as warehouse,
                connected_warehouse(api, warehouse, shop, out=out),
                demo_deadlines(api, enabled=deadlines, out=out),
            ):
                world = World(api=api, warehouse=warehouse, shop=shop, rng=random.Random(seed))
                taken = await adopt(world, since=datetime.now(UTC) - ADOPT_WITHIN)
                out(
                    f"simulating against {url}; warehouse simulator at {warehouse.url}; "
                    f"{taken} open orders of the last day taken over"
                )
                return await _loop(world, interval=interval, steps=steps, out=out)
        finally:
            await _revoke_tokens(api, tokens, out)
