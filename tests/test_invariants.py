"""Invariants under concurrent load, against a real server over HTTP.

A supplier, four partnered distributors (three with cloud-warehouse stock, one nearly without
money), a third-party warehouse simulator and about a hundred unpaid orders; then four waves,
about 600 concurrent operations (at most ``CONCURRENCY`` in flight), a seeded random mix:
payments from the wallet (some short of money) and from stock (some short of stock, some split),
several orders paid at once, cancels, top-ups, pushes, withdraws (retried, closed), ships,
abnormal holds and resolutions, deputes and their refunds (some beyond what was paid), warehouse
callbacks and deliveries, with pairs of conflicting operations sent at the same moment on the
same order. Each wave aims most operations at orders whose state (read when the wave starts)
they fit, the rest at any order. Then, reading the database through the models:

- every wallet's balance equals the sum of its ledger, and replaying the entries in id order
  never takes it below zero (entries are written while the wallet row is locked, so id order is
  the order the balance changed in);
- every stock item's on hand, reserved, available and in transit equal the sums of its movements
  and never go below zero in the replay; the reserved units equal the held reservations;
- every order's timeline (``OrderTransition`` rows in id order) starts at creation and is a path
  of the state machine of ``domain.order_status.ALLOWED`` ending at the order's status;
- no order is paid twice (one PAYMENT entry at most, one payment transition per entry, and
  ``paidAmount`` equal to it) and refunds never exceed what was paid (``refundedAmount`` equals
  the REFUND entries).

Violations fail the test, and so does any GraphQL or HTTP error answered to a mutation (a
conflict must be a ``userError``). Shown but not failed, as they break none of these invariants:
warehouse callbacks answered other than 200, withdraw tasks that failed with an internal error,
orders cancelled after they shipped, orders with two deputes open at once. The figures
(operations by outcome; wallets, stock items and orders checked; violations) are printed
(``pytest -s`` shows them). On PostgreSQL (``DATABASE_URL=postgres://...``) requests
really run concurrently on the connection pool; on SQLite transactions are serialised.
It runs once per seed of ``SEEDS`` (``INVARIANTS_SEED=1,2`` changes them): one seed once missed a
deadlock between paying from stock and a refund releasing that stock that others found.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from domain.distribution.models import (
    PushStatus,
    TaskState,
    WarehouseOrder,
    WarehouseTask,
    WithdrawalStatus,
)
from domain.orders.models import Depute, DeputeStatus, Order, OrderStatus, OrderTransition
from domain.orders.status import ALLOWED
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.stock.models import ReservationState, StockItem, StockMovement, StockReservation
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    Distribution,
    WarehouseSim,
    eventually,
    partnered,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_cloud_stock import stock_up, warehouse
from tests.test_order_flow import ok

SEEDS = [int(s) for s in os.environ.get("INVARIANTS_SEED", "20240611,3,7").split(",") if s.strip()]
CONCURRENCY = 32
DISTRIBUTORS = 4
STOCKED = 3  # the first three distributors hold cloud-warehouse stock
STOCK_UNITS = 12
ORDERS_PER_DISTRIBUTOR = 24
# statuses an order is created in: store orders UNRECOGNIZED or AWAITING_PAYMENT, manual ones
# AWAITING_PAYMENT (see createManualOrder / syncStoreOrders)
CREATED_IN = frozenset({OrderStatus.UNRECOGNIZED, OrderStatus.AWAITING_PAYMENT})
HELD_BY = frozenset({OrderStatus.AWAITING_SHIPPING, OrderStatus.ABNORMAL})
CENTS = Decimal("0.01")


@pytest.fixture
async def warehouse_sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app with a fast warehouse worker (short timeouts and retry delays)."""
    return await make_server(**FAST_WAREHOUSE)


# --------------------------------------------------------------------------- the operations

ERRORS = "userErrors { code message }"
PAY = f"mutation($o: [ID!]!) {{ payOrders(orderIds: $o) {{ {ERRORS} }} }}"
PAY_STOCK = f"""mutation($o: [ID!]!, $w: ID!, $s: Boolean!) {{ payOrders(orderIds: $o,
  stockWarehouseId: $w, splitWhenShort: $s) {{ {ERRORS} }} }}"""
CANCEL = f'mutation($o: [ID!]!) {{ cancelOrders(orderIds: $o, reason: "load") {{ {ERRORS} }} }}'
TOP_UP = f"""mutation($b: ID!, $a: Decimal!) {{ topUpWallet(buyerId: $b, amount: $a,
  currency: "USD") {{ {ERRORS} }} }}"""
SHIP = f"""mutation($o: ID!) {{ shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "L1")
  {{ {ERRORS} }} }}"""
DELIVER = f"mutation($o: ID!) {{ markDelivered(orderId: $o) {{ {ERRORS} }} }}"
HOLD = f'mutation($o: ID!) {{ holdOrderAbnormal(orderId: $o, reason: "check") {{ {ERRORS} }} }}'
RESOLVE = f'mutation($o: ID!) {{ resolveOrderAbnormal(orderId: $o, note: "ok") {{ {ERRORS} }} }}'
DEPUTE = f"""mutation($o: ID!) {{ openDepute(input: {{orderId: $o, type: DAMAGED, reason: "torn",
  expectedOutcome: REFUND}}) {{ {ERRORS} }} }}"""
REFUND = f"""mutation($d: ID!, $a: Decimal!) {{ refundDepute(deputeId: $d, amount: $a,
  note: "load") {{ {ERRORS} }} }}"""
RESOLVE_DEPUTE = f"""mutation($d: ID!, $r: Boolean!) {{ resolveDepute(deputeId: $d, reship: $r,
  note: "load") {{ {ERRORS} }} }}"""
WITHDRAW = f'mutation($o: ID!) {{ withdrawOrder(orderId: $o, reason: "load") {{ {ERRORS} }} }}'
RETRY = f"mutation($w: ID!) {{ retryWithdrawal(withdrawalId: $w) {{ {ERRORS} }} }}"
CLOSE = f'mutation($w: ID!) {{ closeWithdrawal(withdrawalId: $w, note: "load") {{ {ERRORS} }} }}'
PUSH = f"mutation($o: [ID!]!) {{ pushOrders(orderIds: $o) {{ {ERRORS} }} }}"
LOOK = """query($o: ID!) { order(id: $o) { paidAmount refundedAmount deputes { id status }
  withdrawals { id status resolution } } }"""

# Each wave: (weights of the single operations, pairs of conflicting operations sent together
# on one order, number of single operations). Operations aim at orders whose state (at the
# start of the wave) they fit, one in five at any order.
Wave = tuple[dict[str, int], list[tuple[str, str]], int]
WAVES: list[Wave] = [
    (
        {"pay": 30, "pay_stock": 15, "pay_many": 6, "cancel": 6, "top_up": 8, "hold": 4},
        [
            ("pay", "cancel"),
            ("pay", "pay_stock"),
            ("pay", "pay"),
            ("pay_many", "cancel"),
            ("pay", "hold"),
        ],
        110,
    ),
    (
        {
            "push": 25,
            "depute": 15,
            "ship": 10,
            "withdraw": 10,
            "pay": 10,
            "hold": 6,
            "pay_stock": 5,
            "top_up": 5,
            "resolve": 4,
            "cancel": 3,
        },
        [
            ("withdraw", "ship"),
            ("withdraw", "depute"),
            ("depute", "depute"),
            ("push", "withdraw"),
            ("hold", "ship"),
            ("withdraw", "withdraw"),
            ("push", "push"),
            ("pay", "pay_stock"),
        ],
        130,
    ),
    (
        {
            "advance": 25,
            "withdraw": 12,
            "refund": 12,
            "ship": 8,
            "resolve": 8,
            "deliver": 6,
            "depute": 6,
            "resolve_depute": 4,
            "hold": 4,
        },
        [
            ("advance", "withdraw"),
            ("refund", "withdraw"),
            ("refund", "refund"),
            ("ship", "refund"),
            ("resolve", "withdraw"),
            ("advance", "refund"),
            ("advance", "advance"),
        ],
        130,
    ),
    (
        {
            "refund": 12,
            "retry": 12,
            "advance": 12,
            "deliver": 10,
            "withdraw": 8,
            "resolve": 8,
            "close": 6,
            "ship": 6,
            "pay": 6,
            "resolve_depute": 4,
            "top_up": 4,
        },
        [
            ("retry", "close"),
            ("deliver", "refund"),
            ("refund", "withdraw"),
            ("retry", "retry"),
            ("advance", "withdraw"),
            ("resolve", "ship"),
        ],
        120,
    ),
]
PAIRS_PER_WAVE = 16
ON_TARGET = 0.8  # share of operations aimed at an order whose state they fit


@dataclass(frozen=True)
class Op:
    kind: str
    order: int  # index into Load.orders
    chance: float  # a uniform draw for amounts and flags, fixed by the seed


@dataclass
class Load:
    client: GraphQLHttp
    sim: WarehouseSim
    supplier_token: str
    warehouse_id: str
    distributions: list[Distribution]
    orders: list[tuple[str, int]]  # (order id, distributor index)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal: list[str] = field(default_factory=list)  # GraphQL errors, HTTP errors
    refused_callbacks: list[str] = field(default_factory=list)  # answered other than 200
    seed: int = 0

    def buyer(self, order: int) -> Distribution:
        return self.distributions[self.orders[order][1]]

    def order_id(self, order: int) -> str:
        return self.orders[order][0]

    def same_buyer(self, order: int, count: int, rng: random.Random) -> list[str]:
        who = self.orders[order][1]
        mine = [oid for oid, d in self.orders if d == who and oid != self.order_id(order)]
        return [self.order_id(order), *rng.sample(mine, min(count - 1, len(mine)))]

    async def send(self, query: str, variables: dict[str, Any], token: str) -> str:
        """The outcome of one mutation: ok, its first userError code, or an internal error."""
        response = await self.client.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            self.internal.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return f"HTTP {response.status_code}"
        body = response.json()
        if body.get("errors"):
            self.internal.append(str(body["errors"])[:300])
            return "GRAPHQL_ERROR"
        payload = next(iter(body["data"].values()))
        errors = payload.get("userErrors") or []
        return errors[0]["code"] if errors else "ok"

    async def look(self, order: int) -> dict[str, Any]:
        body = await self.client.data(LOOK, {"o": self.order_id(order)}, token=self.supplier_token)
        return body["order"]


async def run_op(load: Load, op: Op) -> str:
    """Carry out one operation; returns its outcome."""
    d = load.buyer(op.order)
    buyer, supplier = d.distributor.token, load.supplier_token
    oid = load.order_id(op.order)
    rng = random.Random(f"{load.seed}-{op.kind}-{op.order}-{op.chance}")
    match op.kind:
        case "pay":
            return await load.send(PAY, {"o": [oid]}, buyer)
        case "pay_many":
            ids = load.same_buyer(op.order, 2 + int(op.chance * 2), rng)
            return await load.send(PAY, {"o": ids}, buyer)
        case "pay_stock":
            variables = {"o": [oid], "w": load.warehouse_id, "s": op.chance < 0.5}
            return await load.send(PAY_STOCK, variables, buyer)
        case "cancel":
            ids = load.same_buyer(op.order, 2, rng) if op.chance < 0.2 else [oid]
            return await load.send(CANCEL, {"o": ids}, buyer)
        case "top_up":
            amount = Decimal(5 + int(op.chance * 55)).quantize(CENTS)
            variables = {"b": d.distributor.gid, "a": str(amount)}
            return await load.send(TOP_UP, variables, supplier)
        case "ship":
            return await load.send(SHIP, {"o": oid}, supplier)
        case "deliver":
            return await load.send(DELIVER, {"o": oid}, supplier)
        case "hold":
            return await load.send(HOLD, {"o": oid}, supplier)
        case "resolve":
            return await load.send(RESOLVE, {"o": oid}, supplier)
        case "depute":
            return await load.send(DEPUTE, {"o": oid}, buyer)
        case "withdraw":
            return await load.send(WITHDRAW, {"o": oid}, buyer)
        case "push":
            return await load.send(PUSH, {"o": [oid]}, supplier)
        case "refund" | "resolve_depute":
            state = await load.look(op.order)
            if not state["deputes"]:
                return "no depute"
            open_ones = [x for x in state["deputes"] if x["status"] == "OPEN"]
            depute = (open_ones or state["deputes"])[-1]["id"]
            if op.kind == "resolve_depute":
                return await load.send(
                    RESOLVE_DEPUTE, {"d": depute, "r": op.chance < 0.5}, supplier
                )
            paid = Decimal(state["paidAmount"]) - Decimal(state["refundedAmount"])
            # one in five asks for more than can be refunded
            share = Decimal(str(round(0.2 + op.chance, 2)))
            amount = max(CENTS, (paid * share).quantize(CENTS))
            return await load.send(REFUND, {"d": depute, "a": str(amount)}, supplier)
        case "retry" | "close":
            state = await load.look(op.order)
            failed = [w for w in state["withdrawals"] if w["status"] == "WITHDRAW_FAILED"]
            if not failed:
                return "no failed withdrawal"
            query, token = (RETRY, buyer) if op.kind == "retry" else (CLOSE, supplier)
            return await load.send(query, {"w": failed[-1]["id"]}, token)
        case "advance":
            status = (
                "SHIPPED" if op.chance < 0.4 else "PICKING" if op.chance < 0.85 else "EXCEPTION"
            )
            response = await load.sim.control.post(
                f"/_sim/outbound/{oid}/advance", json={"status": status}
            )
            if response.status_code != 200:
                return f"warehouse {response.status_code}"
            answered = response.json()["callback_status"]
            if answered != 200:
                load.refused_callbacks.append(f"{status} callback of order {oid}: {answered}")
            return f"callback {answered}"
    raise AssertionError(f"unknown operation {op.kind}")


@dataclass
class Snapshot:
    """What the orders look like at the start of a wave (by index into ``Load.orders``)."""

    status: dict[int, OrderStatus]
    pushed: set[int]
    failed_withdrawal: set[int]
    open_depute: set[int]

    def fits(self, kind: str, order: int) -> bool:
        status = self.status[order]
        unpaid = status is OrderStatus.AWAITING_PAYMENT
        match kind:
            case "pay" | "pay_many" | "pay_stock" | "cancel":
                return unpaid
            case "ship":
                return status is OrderStatus.AWAITING_SHIPPING
            case "push":
                return status is OrderStatus.AWAITING_SHIPPING and order not in self.pushed
            case "hold":
                return status in (
                    OrderStatus.AWAITING_PAYMENT,
                    OrderStatus.AWAITING_SHIPPING,
                    OrderStatus.SHIPPED,
                )
            case "resolve":
                return status is OrderStatus.ABNORMAL
            case "deliver":
                return status is OrderStatus.SHIPPED
            case "depute":
                return status in (OrderStatus.AWAITING_SHIPPING, OrderStatus.SHIPPED)
            case "withdraw":
                return status in HELD_BY
            case "refund" | "resolve_depute":
                return order in self.open_depute
            case "retry" | "close":
                return order in self.failed_withdrawal
            case "advance":
                return order in self.pushed
        return True


async def snapshot(load: Load) -> Snapshot:
    index = {key_of(oid): i for i, (oid, _) in enumerate(load.orders)}
    ids = list(index)
    status = {index[o.id]: o.status for o in await Order.filter(id__in=ids)}
    records = await WarehouseOrder.filter(order_id__in=ids)
    deputes = await Depute.filter(order_id__in=ids, status=DeputeStatus.OPEN)
    return Snapshot(
        status=status,
        pushed={index[r.order_id] for r in records if r.push_status is PushStatus.PUSHED},
        failed_withdrawal={
            index[r.order_id]
            for r in records
            if r.withdrawal_status is WithdrawalStatus.WITHDRAW_FAILED
        },
        open_depute={index[d.order_id] for d in deputes},
    )


def plan_wave(wave: Wave, state: Snapshot, rng: random.Random) -> list[list[Op]]:
    """The wave's operations: single ones, and pairs sent together on one order."""
    weights, pairs, count = wave
    orders = sorted(state.status)

    def target(kind: str) -> int:
        fitting = [o for o in orders if state.fits(kind, o)]
        if fitting and rng.random() < ON_TARGET:
            return rng.choice(fitting)
        return rng.choice(orders)

    groups = [
        [Op(kind, target(kind), rng.random())]
        for kind in rng.choices(list(weights), weights=list(weights.values()), k=count)
    ]
    for _ in range(PAIRS_PER_WAVE):
        first, second = rng.choice(pairs)
        order = target(first)
        groups.append([Op(first, order, rng.random()), Op(second, order, rng.random())])
    rng.shuffle(groups)
    return groups


async def bounded(jobs: list[Callable[[], Awaitable[None]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


async def run_wave(load: Load, groups: list[list[Op]]) -> None:
    async def group_job(group: list[Op]) -> None:
        results = await asyncio.gather(*(run_op(load, op) for op in group))
        for op, outcome in zip(group, results, strict=True):
            load.outcomes[(op.kind, outcome)] += 1

    await bounded([lambda g=g: group_job(g) for g in groups], CONCURRENCY)


async def tasks_settled(order_ids: list[int], timeout: float = 60.0) -> int:
    """Wait until no warehouse task of these orders is pending; how many are still pending."""

    async def pending() -> int:
        return await WarehouseTask.filter(order_id__in=order_ids, state=TaskState.PENDING).count()

    try:
        await eventually(pending, lambda n: n == 0, timeout=timeout)
    except AssertionError:
        return await pending()
    return 0


# --------------------------------------------------------------------------- setting up


async def create_order(client: GraphQLHttp, d: Distribution, rng: random.Random) -> str:
    """An unpaid manual order: 1-8 TEE-R-M, and in a third of them 1-3 TEE-B-L (never stocked)."""
    lines = [{"skuId": d.catalogue["skus"]["TEE-R-M"], "quantity": rng.randint(1, 8)}]
    if rng.random() < 0.33:
        lines.append({"skuId": d.catalogue["skus"]["TEE-B-L"], "quantity": rng.randint(1, 3)})
    made = await ok(
        client,
        """mutation($l: [ManualOrderLineInput!]!, $m: ID!) { createManualOrder(input: {lines: $l,
        logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St",
        city: "London", zip: "N1", countryCode: "GB"}}) { order { id } userErrors { code field message } } }""",
        {"l": lines, "m": d.catalogue["method"]},
        token=d.distributor.token,
    )
    return made["order"]["id"]


async def set_up(
    client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim, rng: random.Random
) -> Load:
    first = await partnered(client, make_member, sim)
    supplier = first.supplier
    distributions = [first]
    for _ in range(DISTRIBUTORS - 1):  # more distributors of the same catalogue and warehouse
        distributor = await make_member("BUYER")
        applied = await ok(
            client,
            "mutation($s: ID!) { applyForPartnership(supplierId: $s) { partnership { id } userErrors { code field message } } }",
            {"s": supplier.gid},
            token=distributor.token,
        )
        partnership_id = applied["partnership"]["id"]
        accepted = await ok(
            client,
            "mutation($p: ID!) { decidePartnership(partnershipId: $p, accept: true) { partnership { warehouseId } userErrors { code field message } } }",
            {"p": partnership_id},
            token=supplier.token,
        )
        warehouse_of = accepted["partnership"]["warehouseId"]
        await ok(
            client,
            "mutation($p: ID!, $w: ID!, $c: ID) { selectDistributionWarehouse(partnershipId: $p, warehouseId: $w, thirdPartyWarehouseId: $c) { partnership { warehouseId } userErrors { code field message } } }",
            {"p": partnership_id, "w": warehouse_of, "c": first.third_party_warehouse_id},
            token=supplier.token,
        )
        distributions.append(
            Distribution(
                supplier,
                distributor,
                first.catalogue,
                partnership_id,
                warehouse_of,
                first.third_party_warehouse_id,
            )
        )
    warehouse_id = await warehouse(client, supplier)
    for d in distributions[:STOCKED]:  # 500.00 topped up, a stocking order paid and received
        await stock_up(client, supplier, d.distributor, d.catalogue, warehouse_id, STOCK_UNITS)
    await ok(
        client,
        'mutation($b: ID!) { topUpWallet(buyerId: $b, amount: "25.00", currency: "USD") { userErrors { code } } }',
        {"b": distributions[-1].distributor.gid},
        token=supplier.token,
    )
    plan = [i for i in range(DISTRIBUTORS) for _ in range(ORDERS_PER_DISTRIBUTOR)]
    rng.shuffle(plan)
    rngs = [random.Random(rng.random()) for _ in plan]
    ids = await asyncio.gather(
        *(create_order(client, distributions[i], r) for i, r in zip(plan, rngs, strict=True))
    )
    return Load(
        client=client,
        sim=sim,
        supplier_token=supplier.token,
        warehouse_id=warehouse_id,
        distributions=distributions,
        orders=list(zip(ids, plan, strict=True)),
    )


# --------------------------------------------------------------------------- the checks


def cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())


@dataclass
class Report:
    wallets: int = 0
    wallet_entries: int = 0
    stock_items: int = 0
    movements: int = 0
    orders: int = 0
    transitions: int = 0
    paid_orders: int = 0
    refunded_orders: int = 0
    violations: list[str] = field(default_factory=list)
    # rules outside the four invariants: shown, not failed
    shipped_then_cancelled: list[str] = field(default_factory=list)
    deputes_open_together: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.violations.append(problem)


async def check_wallets(report: Report, buyer_ids: list[int]) -> None:
    signs = {EntryKind.TOP_UP: 1, EntryKind.REFUND: 1, EntryKind.PAYMENT: -1}
    for wallet in await Wallet.filter(buyer_id__in=buyer_ids).order_by("id"):
        report.wallets += 1
        running = 0
        for entry in await WalletEntry.filter(wallet_id=wallet.id).order_by("id"):
            report.wallet_entries += 1
            amount = cents(entry.amount)
            report.expect(
                amount * signs[entry.kind] > 0,
                f"wallet {wallet.id}: entry {entry.id} {entry.kind} of {entry.amount}",
            )
            running += amount
            report.expect(
                running >= 0, f"wallet {wallet.id}: {running / 100:.2f} after entry {entry.id}"
            )
        report.expect(
            wallet.balance_cents == running,
            f"wallet {wallet.id}: balance {wallet.balance} but ledger sums to {running / 100:.2f}",
        )


async def check_stock(report: Report, buyer_ids: list[int], statuses: dict[int, Any]) -> None:
    for item in await StockItem.filter(buyer_id__in=buyer_ids).order_by("id"):
        report.stock_items += 1
        on_hand = reserved = in_transit = 0
        for move in await StockMovement.filter(stock_item_id=item.id).order_by("id"):
            report.movements += 1
            on_hand += move.on_hand_delta
            reserved += move.reserved_delta
            in_transit += move.in_transit_delta
            report.expect(
                min(on_hand, reserved, in_transit, on_hand - reserved) >= 0,
                f"stock item {item.id}: on hand {on_hand}, reserved {reserved}, in transit "
                f"{in_transit} after movement {move.id} ({move.kind})",
            )
        figures = (item.on_hand, item.reserved, item.in_transit, item.available)
        report.expect(
            figures == (on_hand, reserved, in_transit, on_hand - reserved),
            f"stock item {item.id}: (on hand, reserved, in transit, available) {figures} but "
            f"the ledger gives {(on_hand, reserved, in_transit, on_hand - reserved)}",
        )
        held = await StockReservation.filter(stock_item_id=item.id, state=ReservationState.HELD)
        report.expect(
            sum(r.quantity for r in held) == item.reserved,
            f"stock item {item.id}: reserved {item.reserved} but held reservations sum to "
            f"{sum(r.quantity for r in held)}",
        )
        for r in held:
            report.expect(
                statuses.get(r.order_id) in HELD_BY,
                f"reservation {r.id} still held by order {r.order_id} {statuses.get(r.order_id)}",
            )


async def check_orders(report: Report, orders: list[Order]) -> None:
    ids = [o.id for o in orders]
    timelines: dict[int, list[OrderTransition]] = defaultdict(list)
    for t in await OrderTransition.filter(order_id__in=ids).order_by("id"):
        timelines[t.order_id].append(t)
    entries: dict[int, list[WalletEntry]] = defaultdict(list)
    for e in await WalletEntry.filter(order_id__in=ids).order_by("id"):
        entries[e.order_id].append(e)
    for order in orders:
        report.orders += 1
        timeline = timelines[order.id]
        report.transitions += len(timeline)
        name = f"order {order.id} ({order.number})"
        path = " -> ".join(t.to_status.value for t in timeline)
        if not timeline:
            report.violations.append(f"{name}: no timeline")
            continue
        created = timeline[0]
        report.expect(
            created.from_status is None and created.to_status in CREATED_IN,
            f"{name}: created as {created.from_status} -> {created.to_status}",
        )
        for before, after in pairwise(timeline):
            report.expect(
                after.from_status is before.to_status,
                f"{name}: transition {after.id} starts at {after.from_status}, the order was "
                f"{before.to_status} ({path})",
            )
            report.expect(
                after.from_status is not None and after.to_status in ALLOWED[after.from_status],
                f"{name}: illegal {after.from_status} -> {after.to_status} ({path})",
            )
        report.expect(
            timeline[-1].to_status is order.status,
            f"{name}: is {order.status} but its timeline ends at {timeline[-1].to_status}",
        )
        payments = [e for e in entries[order.id] if e.kind is EntryKind.PAYMENT]
        refunds = [e for e in entries[order.id] if e.kind is EntryKind.REFUND]
        paid_steps = [
            t
            for t in timeline
            if (t.from_status, t.to_status)
            == (OrderStatus.AWAITING_PAYMENT, OrderStatus.AWAITING_SHIPPING)
        ]
        report.paid_orders += bool(payments)
        report.refunded_orders += bool(refunds)
        report.expect(len(payments) <= 1, f"{name}: paid {len(payments)} times")
        report.expect(
            len(paid_steps) == len(payments),
            f"{name}: {len(paid_steps)} payment transitions, {len(payments)} payments",
        )
        paid = -sum((e.amount for e in payments), Decimal("0"))
        refunded = sum((e.amount for e in refunds), Decimal("0"))
        report.expect(
            order.paid_amount == paid,
            f"{name}: paidAmount {order.paid_amount}, wallet payments {paid}",
        )
        report.expect(
            order.refunded_amount == refunded,
            f"{name}: refundedAmount {order.refunded_amount}, wallet refunds {refunded}",
        )
        report.expect(refunded <= paid, f"{name}: refunded {refunded} of {paid} paid")
        reached = [t.to_status for t in timeline]
        if OrderStatus.SHIPPED in reached and order.status is OrderStatus.CANCELLED:
            report.shipped_then_cancelled.append(f"{name}: {path}, refunded {refunded}")
    for order_id, spans in await depute_spans(ids):
        for (_, closed), (later, _) in pairwise(sorted(spans, key=lambda span: span[0])):
            if closed is None or later < closed:
                report.deputes_open_together.append(f"order {order_id}: {len(spans)} deputes")
                break


async def depute_spans(order_ids: list[int]) -> list[tuple[int, list[tuple[Any, Any]]]]:
    """(order id, [(opened, resolved or None)]) of the orders with several deputes."""
    spans: dict[int, list[tuple[Any, Any]]] = defaultdict(list)
    for depute in await Depute.filter(order_id__in=order_ids).order_by("id"):
        spans[depute.order_id].append((depute.created_at, depute.resolved_at))
    return [(o, s) for o, s in spans.items() if len(s) > 1]


# --------------------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
async def test_invariants_hold_under_concurrent_load(
    seed: int,
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    warehouse_sim: WarehouseSim,
) -> None:
    rng = random.Random(seed)
    started = time.perf_counter()
    load = await set_up(client, make_member, warehouse_sim, rng)
    load.seed = seed
    order_ids = [key_of(oid) for oid, _ in load.orders]
    set_up_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for wave in WAVES:
        await run_wave(load, plan_wave(wave, await snapshot(load), rng))
        # pushes and withdraws reach the warehouse before the next wave acts on them
        await tasks_settled(order_ids)
    pending = await tasks_settled(order_ids)
    load_seconds = time.perf_counter() - started

    buyer_ids = [d.distributor.organisation_id for d in load.distributions]
    orders = await Order.filter(buyer_id__in=buyer_ids).order_by("id")
    report = Report()
    await check_wallets(report, buyer_ids)
    await check_stock(report, buyer_ids, {o.id: o.status for o in orders})
    await check_orders(report, orders)
    failed_tasks = await WarehouseTask.filter(
        order_id__in=order_ids, last_error__startswith="internal error"
    ).values_list("id", "kind", "last_error", "order_id")

    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for (kind, outcome), count in load.outcomes.items():
        by_kind[kind][outcome] += count
    total = sum(load.outcomes.values())
    print(
        f"\ninvariants ({'PostgreSQL' if not server.settings.is_sqlite else 'SQLite'}, seed "
        f"{seed}): {total} operations in {load_seconds:.1f} s, at most {CONCURRENCY} at once "
        f"(set-up {set_up_seconds:.1f} s)"
    )
    for kind in sorted(by_kind):
        outcomes = ", ".join(f"{o} {n}" for o, n in by_kind[kind].most_common())
        print(f"  {kind:<15} {sum(by_kind[kind].values()):>4}: {outcomes}")
    final = Counter(o.status.value for o in orders)
    print(f"  orders by final status: {dict(sorted(final.items()))}")
    print(
        f"  checked: {report.wallets} wallets ({report.wallet_entries} entries), "
        f"{report.stock_items} stock items ({report.movements} movements), {report.orders} "
        f"orders ({report.transitions} transitions, {report.paid_orders} paid, "
        f"{report.refunded_orders} refunded)"
    )
    print(
        f"  internal errors: {len(load.internal)}; warehouse tasks failed by an internal error: "
        f"{len(failed_tasks)}; tasks still pending: {pending}"
    )
    print(
        f"  warehouse callbacks answered other than 200: {len(load.refused_callbacks)}; orders "
        f"cancelled (and refunded) after shipping: {len(report.shipped_then_cancelled)}; orders "
        f"with two deputes open at once: {len(report.deputes_open_together)}"
    )
    for finding in (
        load.refused_callbacks[:5]
        + report.shipped_then_cancelled[:5]
        + report.deputes_open_together[:5]
    ):
        print(f"    {finding}")
    print(f"  violations: {len(report.violations)}")
    for problem in report.violations[:40]:
        print(f"    {problem}")
    for problem in load.internal[:10]:
        print(f"    internal: {problem}")
    statuses = {o.id: o.status.value for o in orders}
    for task_id, kind, error, order_id in failed_tasks[:10]:
        print(f"    task {task_id} {kind} of order {order_id} ({statuses[order_id]}): {error}")

    assert report.violations == [], "\n".join(report.violations[:40])
    assert load.internal == [], "\n".join(load.internal[:10])
    # once bugs this test found: a shipped order withdrawn and refunded (through ABNORMAL), two
    # deputes opened at once, a callback racing a change answered 500 (now 409 for the
    # warehouse to retry), a withdraw overtaken by a ship failed as an "internal error"
    assert report.shipped_then_cancelled == [], report.shipped_then_cancelled[:5]
    assert report.deputes_open_together == [], report.deputes_open_together[:5]
    server_errors = [c for c in load.refused_callbacks if c.rsplit(": ", 1)[-1].startswith("5")]
    assert server_errors == [], server_errors[:5]
    assert failed_tasks == [], failed_tasks[:5]
    assert pending == 0
    assert total >= 400
