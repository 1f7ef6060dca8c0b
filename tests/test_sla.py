"""Service-level breaches: each rule opens at its deadline and not a second before, once per
episode, clears when its subject moves on, and is seen only by the organisations concerned.

Time is injected: the sweep is called in this process with the moment it should believe it is
(``now``), a year ahead of the wall clock so nothing the served instance does meanwhile is due.
The served instance's own sweep is off (``SLA_SWEEP_INTERVAL=0``); its worker still settles a
subject as soon as an event says it changed, which is what the API test relies on.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.distribution.models import (
    PushStatus,
    WarehouseOrder,
    Withdrawal,
    WithdrawalResolution,
    WithdrawalStatus,
)
from domain.leases import NamedLease
from domain.orders.models import Order, OrderStatus, Quote, QuoteStatus, TrackingSync
from domain.sla import commands as sla
from domain.sla.models import SlaBreach, SlaRule, SweepLease
from domain.sla.rules import RULES
from domain.stock.models import CloudWarehouse, StockItem
from integrations.sla import MIN_QUIET_PAUSE, QUIET_INTERVALS, SlaWorker
from schema.global_ids import gid, key_of
from tests.conftest import MakeMember
from tests.support.distribution import Distribution, eventually, paid_order, partnered
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import Sim, connect_store, ok
from tests.test_order_flow import sim as sim

T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=365)
SECOND = timedelta(seconds=1)

BREACHES = """query($f: SlaBreachFilter) { slaBreaches(filter: $f) { nodes {
  id rule orderId withdrawalId quoteId stockItemId buyerId supplierId dueAt isOpen clearReason } } }"""


@dataclass
class World:
    d: Distribution
    orders: list[int]  # paid manual orders of the distributor, AWAITING_SHIPPING
    unrecognized: int  # a store order of the distributor's store
    quote: int  # the distributor's quote request to the supplier
    stock: int  # a stock item of the distributor at the supplier's cloud warehouse


@pytest.fixture
async def world(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> World:
    d = await partnered(client, make_member, None)
    orders = [key_of(await paid_order(client, d)) for _ in range(4)]
    store = await connect_store(client, d.distributor, sim)
    tee = await sim.product("Tee")
    await sim.order(tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}")
    await server.store_inbox_drained()
    [unrecognized] = await Order.filter(
        buyer_id=d.distributor.organisation_id, status=OrderStatus.UNRECOGNIZED
    ).values_list("id", flat=True)
    products = (
        await client.data(
            "query($s: ID!) { storeProducts(storeId: $s) { nodes { id } } }",
            {"s": store["store"]["id"]},
            token=d.distributor.token,
        )
    )["storeProducts"]["nodes"]
    quote = await ok(
        client,
        'mutation($s: ID!, $p: ID!) { requestQuote(input: {supplierId: $s, storeProductId: $p, note: "x"}) { quote { id } userErrors { code } } }',
        {"s": d.supplier.gid, "p": products[0]["id"]},
        token=d.distributor.token,
    )
    warehouse = await CloudWarehouse.create(
        supplier_id=d.supplier.organisation_id, name="Cloud", callback_secret="s"
    )
    item = await StockItem.create(
        buyer_id=d.distributor.organisation_id,
        warehouse_id=warehouse.id,
        sku_id=key_of(d.catalogue["skus"]["TEE-R-M"]),
    )  # empty: no movement to account for (tests/test_cloud_stock.py checks every ledger)
    # the served worker settles what the events above named a moment later (``SETTLE_AFTER``):
    # done before a test changes those subjects behind its back and settles or sweeps itself
    await server.sla_settled()
    return World(d, orders, unrecognized, key_of(quote["quote"]["id"]), item.id)


@dataclass
class Case:
    """Put a subject into the rule's watched state since T0, and take it out again."""

    subject: Callable[[World], int]
    arrange: Callable[[World], Awaitable[Any]]
    leave: Callable[[World], Awaitable[Any]]


async def _withdrawal(w: World, status: WithdrawalStatus, since: str) -> int:
    made = await Withdrawal.create(
        order_id=w.orders[3],
        distributor_id=w.d.distributor.organisation_id,
        supplier_id=w.d.supplier.organisation_id,
        status=status,
        reason="test",
    )
    await Withdrawal.filter(id=made.id).update(**{since: T0})
    return made.id


WITHDRAWALS: dict[SlaRule, int] = {}


async def _stuck(w: World) -> None:
    WITHDRAWALS[SlaRule.WITHDRAW_STUCK] = await _withdrawal(
        w, WithdrawalStatus.WITHDRAWING, "created_at"
    )


async def _failed(w: World) -> None:
    WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED] = await _withdrawal(
        w, WithdrawalStatus.WITHDRAW_FAILED, "updated_at"
    )


CASES: dict[SlaRule, Case] = {
    SlaRule.PAID_NOT_SHIPPED: Case(
        lambda w: w.orders[0],
        lambda w: Order.filter(id=w.orders[0]).update(paid_at=T0),
        lambda w: Order.filter(id=w.orders[0]).update(status=OrderStatus.SHIPPED),
    ),
    SlaRule.SHIPPED_NOT_DELIVERED: Case(
        lambda w: w.orders[1],
        lambda w: Order.filter(id=w.orders[1]).update(status=OrderStatus.SHIPPED, shipped_at=T0),
        lambda w: Order.filter(id=w.orders[1]).update(status=OrderStatus.FULFILLED),
    ),
    SlaRule.TRACKING_NOT_SYNCED: Case(
        lambda w: w.orders[2],
        lambda w: Order.filter(id=w.orders[2]).update(
            status=OrderStatus.SHIPPED, shipped_at=T0, tracking_sync=TrackingSync.FAILED
        ),
        lambda w: Order.filter(id=w.orders[2]).update(tracking_sync=TrackingSync.SYNCED),
    ),
    SlaRule.WAREHOUSE_SILENT: Case(
        lambda w: w.orders[3],
        lambda w: WarehouseOrder.create(
            order_id=w.orders[3],
            supplier_id=w.d.supplier.organisation_id,
            reference=f"SLA-{w.orders[3]}",
            push_status=PushStatus.PUSHED,
            pushed_at=T0,
        ),
        lambda w: WarehouseOrder.filter(order_id=w.orders[3]).update(checked_at=T0),
    ),
    SlaRule.WITHDRAW_STUCK: Case(
        lambda w: WITHDRAWALS[SlaRule.WITHDRAW_STUCK],
        _stuck,
        lambda w: Withdrawal.filter(id=WITHDRAWALS[SlaRule.WITHDRAW_STUCK]).update(
            status=WithdrawalStatus.WITHDRAWN
        ),
    ),
    SlaRule.WITHDRAW_FAILED_UNRESOLVED: Case(
        lambda w: WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED],
        _failed,
        lambda w: Withdrawal.filter(id=WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED]).update(
            resolution=WithdrawalResolution.CLOSED
        ),
    ),
    SlaRule.UNRECOGNIZED_ORDER: Case(
        lambda w: w.unrecognized,
        lambda w: Order.filter(id=w.unrecognized).update(created_at=T0),
        lambda w: Order.filter(id=w.unrecognized).update(status=OrderStatus.CANCELLED),
    ),
    SlaRule.QUOTE_UNANSWERED: Case(
        lambda w: w.quote,
        lambda w: Quote.filter(id=w.quote).update(created_at=T0),
        lambda w: Quote.filter(id=w.quote).update(status=QuoteStatus.QUOTED),
    ),
    SlaRule.STOCK_BELOW_THRESHOLD: Case(
        lambda w: w.stock,
        lambda w: StockItem.filter(id=w.stock).update(low_stock_threshold=1, updated_at=T0),
        lambda w: StockItem.filter(id=w.stock).update(low_stock_threshold=None),
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(SlaRule) == set(RULES)


async def _of(
    rule: SlaRule, subject_id: int, organisation_id: int | None = None
) -> list[SlaBreach]:
    spec = RULES[rule]
    mine = {} if organisation_id is None else {"organisation_id": organisation_id}
    return await SlaBreach.filter(
        rule=rule, subject_type=spec.subject_type, subject_id=subject_id, **mine
    ).order_by("id")


@pytest.mark.parametrize("rule", list(SlaRule))
async def test_a_rule_opens_at_its_deadline_once_and_clears_when_its_subject_moves_on(
    world: World, rule: SlaRule
) -> None:
    case, spec = CASES[rule], RULES[rule]
    await case.arrange(world)
    subject = case.subject(world)
    deadline = T0 + timedelta(minutes=spec.default_minutes)

    await sla.sweep(now=deadline - SECOND)
    assert await _of(rule, subject) == []

    opened, _ = await sla.sweep(now=deadline)
    breaches = await _of(rule, subject)
    assert {b.id for b in breaches} <= {b.id for b in opened}
    # one breach per party of the subject, each seen by that party alone
    parties = {world.d.distributor.organisation_id, world.d.supplier.organisation_id}
    if spec.columns.supplier is None:
        parties = {world.d.distributor.organisation_id}
    assert {b.organisation_id for b in breaches} == parties and len(breaches) == len(parties)
    for breach in breaches:
        assert breach.due_at == deadline and breach.since == T0 and breach.cleared_at is None
        assert breach.buyer_id == world.d.distributor.organisation_id

    await sla.sweep(now=deadline + timedelta(hours=1))
    assert len(await _of(rule, subject)) == len(parties)  # raised once

    await case.leave(world)
    cleared = await sla.settle(
        subject_type=spec.subject_type, subject_id=subject, now=deadline + 2 * SECOND
    )
    assert sorted(b.id for b in cleared) == sorted(b.id for b in breaches)
    for after in await _of(rule, subject):
        assert after.cleared_at == deadline + 2 * SECOND and after.clear_reason == spec.cleared
    assert await sla.settle(subject_type=spec.subject_type, subject_id=subject, now=deadline) == []

    await sla.sweep(now=deadline + timedelta(days=30))
    assert len(await _of(rule, subject)) == len(parties)  # moved on: nothing new


async def test_an_idle_sweeper_sweeps_at_the_next_deadline_and_an_event_brings_it_back(
    world: World,
) -> None:
    """A worker whose clock is far ahead of every deadline in the database: once a sweep finds
    nothing, with no event heard meanwhile, the next comes at the next deadline or
    ``QUIET_INTERVALS`` intervals later; an event brings the interval back, and the sweep
    after it finds the deadline the change set, and the breach opens on time."""
    now = [T0 + timedelta(days=1000)]
    every = timedelta(seconds=30)
    worker = SlaWorker(sweep_interval=every.total_seconds(), clock=lambda: now[0])

    async def at_next_sweep() -> datetime:
        assert worker.next_sweep is not None
        now[0] = max(now[0], worker.next_sweep)
        await worker.round()
        return now[0]

    try:
        await worker.round()  # the first sweep opens what is due
        assert worker.next_sweep == now[0] + every
        for _ in range(30):  # until a sweep finds nothing (500 rows of a rule per round)
            swept = await at_next_sweep()
            assert worker.next_sweep is not None
            if worker.next_sweep - swept > every:
                break
        else:
            pytest.fail("the sweeps never went quiet")
        deadline = await sla.next_deadline(now=swept)
        expected = swept + every * QUIET_INTERVALS
        if deadline is not None:
            expected = min(expected, max(deadline, swept + MIN_QUIET_PAUSE))
        assert worker.next_sweep == expected
        assert worker.interval() == (expected - now[0]).total_seconds()

        # an order paid so that its deadline falls 100 s from now, and the event of the change;
        # beside it one whose breach was cleared while it stays as it was (that episode had its
        # breach: past its deadline, and never opened again, it must not make the sweeps spin)
        order = world.orders[0]
        await SlaBreach.filter(order_id__in=world.orders[:2], rule=SlaRule.PAID_NOT_SHIPPED).update(
            cleared_at=now[0], clear_reason="test"
        )
        minutes = RULES[SlaRule.PAID_NOT_SHIPPED].default_minutes
        due = now[0] + timedelta(seconds=100)
        await Order.filter(id=order).update(paid_at=due - timedelta(minutes=minutes))
        worker.on_event(None)
        await worker.round()
        assert worker.next_sweep == swept + every  # an interval after the last sweep again
        await at_next_sweep()  # nothing to open yet: quiet, and the order's deadline is next
        assert worker.next_sweep == due
        await at_next_sweep()
        breaches = await SlaBreach.filter(
            order_id=order, rule=SlaRule.PAID_NOT_SHIPPED, cleared_at__isnull=True
        )
        assert len(breaches) == 2  # the buyer's and the supplier's, on time
        assert all(b.due_at == due and b.opened_at == due for b in breaches)
    finally:
        await SweepLease.filter(holder=worker.holder).delete()


async def test_a_sweep_clears_what_settling_missed(world: World) -> None:
    await Order.filter(id=world.orders[0]).update(paid_at=T0)
    deadline = T0 + timedelta(minutes=RULES[SlaRule.PAID_NOT_SHIPPED].default_minutes)
    await sla.sweep(now=deadline)
    await Order.filter(id=world.orders[0]).update(status=OrderStatus.CANCELLED)
    _, cleared = await sla.sweep(now=deadline + SECOND)
    assert world.orders[0] in {b.subject_id for b in cleared}
    breaches = await _of(SlaRule.PAID_NOT_SHIPPED, world.orders[0])
    assert len(breaches) == 2 and {b.cleared_at for b in breaches} == {deadline + SECOND}


async def test_each_organisation_has_its_own_deadline_and_switch(
    world: World, client: GraphQLHttp
) -> None:
    supplier, buyer = world.d.supplier, world.d.distributor
    set_rule = """mutation($i: SlaRuleInput!) { setSlaRule(input: $i) {
      setting { rule minutes defaultMinutes enabled customised }
      userErrors { code field } } }"""
    done = await ok(
        client, set_rule, {"i": {"rule": "PAID_NOT_SHIPPED", "minutes": 60}}, token=buyer.token
    )
    assert done["setting"] == {
        "rule": "PAID_NOT_SHIPPED",
        "minutes": 60,
        "defaultMinutes": 2880,
        "enabled": True,
        "customised": True,
    }
    # a supplier has no unrecognized orders; bad minutes are refused
    for token, rule, minutes, field in (
        (supplier.token, "UNRECOGNIZED_ORDER", 5, "input.rule"),
        (supplier.token, "PAID_NOT_SHIPPED", -1, "input.minutes"),
        (buyer.token, "PAID_NOT_SHIPPED", 525_601, "input.minutes"),
    ):
        refused = (
            await client.data(set_rule, {"i": {"rule": rule, "minutes": minutes}}, token=token)
        )["setSlaRule"]
        assert refused["userErrors"] == [{"code": "INVALID", "field": field}]

    # the buyer expects it in an hour: its breach opens then; the supplier's at 48 h
    await Order.filter(id=world.orders[0]).update(paid_at=T0)
    await sla.sweep(now=T0 + timedelta(minutes=60) - SECOND)
    assert await _of(SlaRule.PAID_NOT_SHIPPED, world.orders[0]) == []
    await sla.sweep(now=T0 + timedelta(minutes=60))
    [early] = await _of(SlaRule.PAID_NOT_SHIPPED, world.orders[0])
    assert early.organisation_id == buyer.organisation_id
    assert early.due_at == T0 + timedelta(minutes=60)
    await sla.sweep(now=T0 + timedelta(hours=48))
    late = await _of(SlaRule.PAID_NOT_SHIPPED, world.orders[0], supplier.organisation_id)
    assert [b.due_at for b in late] == [T0 + timedelta(hours=48)]

    # switched off: the supplier's next episodes raise nothing for it
    await ok(
        client,
        set_rule,
        {"i": {"rule": "SHIPPED_NOT_DELIVERED", "enabled": False}},
        token=supplier.token,
    )
    await Order.filter(id=world.orders[1]).update(status=OrderStatus.SHIPPED, shipped_at=T0)
    await sla.sweep(now=T0 + timedelta(days=100))
    [only] = await _of(SlaRule.SHIPPED_NOT_DELIVERED, world.orders[1])
    assert only.organisation_id == buyer.organisation_id
    rules = (await client.data("{ slaRules { rule minutes enabled } }", token=supplier.token))[
        "slaRules"
    ]
    assert len(rules) == 7 and len(
        (await client.data("{ slaRules { rule } }", token=buyer.token))["slaRules"]
    ) == len(SlaRule)
    assert {"rule": "SHIPPED_NOT_DELIVERED", "minutes": 14400, "enabled": False} in rules


@pytest.fixture
async def outsider(make_member: MakeMember) -> Any:
    return await make_member("BUYER")


async def test_through_the_api_seen_by_the_two_organisations_only_and_live(
    world: World, client: GraphQLHttp, ws_connect: Any, outsider: Any, server: RunningServer
) -> None:
    supplier, buyer = world.d.supplier, world.d.distributor
    order = world.orders[0]
    socket = await ws_connect(token=supplier.token)
    await socket.acknowledged()
    await socket.subscribe(
        "subscription { slaBreachChanged(rules: [PAID_NOT_SHIPPED]) { eventId opened breach { id rule orderId isOpen } } }"
    )
    await server.wait_for_subscribers(1)

    await Order.filter(id=order).update(paid_at=T0)
    await sla.sweep(now=T0 + timedelta(days=2))

    wanted = gid("Order", order)

    async def next_change() -> dict[str, Any]:
        """The next change of this order's breach (the sweep opened others too)."""
        while True:
            change = (await socket.next_data())["slaBreachChanged"]
            if change["breach"]["orderId"] == wanted:
                return change

    opened = await next_change()
    assert opened["opened"] is True and opened["breach"]["rule"] == "PAID_NOT_SHIPPED"
    seen = {}
    for member in (supplier, buyer, outsider):
        nodes = (
            await client.data(
                BREACHES, {"f": {"open": True, "rules": ["PAID_NOT_SHIPPED"]}}, token=member.token
            )
        )["slaBreaches"]["nodes"]
        seen[member.token] = [n for n in nodes if n["orderId"] == opened["breach"]["orderId"]]
    assert len(seen[supplier.token]) == len(seen[buyer.token]) == 1
    assert seen[supplier.token][0]["id"] != seen[buyer.token][0]["id"]  # each its own
    assert seen[outsider.token] == []
    for member in (outsider, buyer):  # not even the buyer sees the supplier's breach
        node = (
            await client.data(
                "query($i: ID!) { node(id: $i) { id } }",
                {"i": opened["breach"]["id"]},
                token=member.token,
            )
        )["node"]
        assert node is None

    # the supplier ships it: the event settles the breach at once, and the stream says so
    await ok(
        client,
        'mutation($o: ID!) { shipOrder(orderId: $o, carrier: "UPS", trackingNumber: "1Z") { userErrors { code message } } }',
        {"o": opened["breach"]["orderId"]},
        token=supplier.token,
    )
    cleared = await next_change()
    assert cleared["opened"] is False and cleared["breach"]["isOpen"] is False
    assert cleared["breach"]["id"] == opened["breach"]["id"]
    still = await eventually(
        lambda: client.data(
            BREACHES, {"f": {"open": True, "rules": ["PAID_NOT_SHIPPED"]}}, token=buyer.token
        ),
        lambda data: (
            not [
                n
                for n in data["slaBreaches"]["nodes"]
                if n["orderId"] == opened["breach"]["orderId"]
            ]
        ),
    )
    assert still is not None


async def test_a_change_about_an_order_settles_the_breaches_of_its_withdrawals(
    world: World,
) -> None:
    """A retried withdraw records the new withdrawal's event, which names the order: the failed
    withdrawal's breach ends with it (``settle(order_id=...)``, what the worker runs)."""
    await _failed(world)
    failed = WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED]
    deadline = T0 + timedelta(minutes=RULES[SlaRule.WITHDRAW_FAILED_UNRESOLVED].default_minutes)
    await sla.sweep(now=deadline)
    assert len(await _of(SlaRule.WITHDRAW_FAILED_UNRESOLVED, failed)) == 2
    await Withdrawal.filter(id=failed).update(resolution=WithdrawalResolution.RETRIED)
    cleared = await sla.settle(order_id=world.orders[3], now=deadline + SECOND)
    assert {b.subject_id for b in cleared} == {failed}
    assert all(b.cleared_at for b in await _of(SlaRule.WITHDRAW_FAILED_UNRESOLVED, failed))


async def test_settling_many_reads_orders_and_subjects_of_every_type_together(
    world: World,
) -> None:
    """``settle_many`` (the worker's round after a burst of events): breaches about an order
    subject and about a withdrawal, found by subject and by the order they concern, in one
    read; only those whose subject moved on clear."""
    await _failed(world)
    failed = WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED]
    await Order.filter(id=world.orders[0]).update(paid_at=T0)
    await Order.filter(id=world.orders[1]).update(status=OrderStatus.SHIPPED, shipped_at=T0)
    await sla.sweep(now=T0 + timedelta(days=30))
    await Order.filter(id=world.orders[0]).update(status=OrderStatus.SHIPPED)  # moved on
    await Withdrawal.filter(id=failed).update(resolution=WithdrawalResolution.CLOSED)
    cleared = await sla.settle_many(
        now=T0 + timedelta(days=31),
        subjects=[("Order", world.orders[0]), ("Order", world.orders[1])],
        order_ids=[world.orders[3]],
    )
    assert {(b.rule, b.subject_id) for b in cleared} == {
        (SlaRule.PAID_NOT_SHIPPED, world.orders[0]),
        (SlaRule.WITHDRAW_FAILED_UNRESOLVED, failed),
    }
    assert len(cleared) == 4  # each for both parties
    still = await _of(SlaRule.SHIPPED_NOT_DELIVERED, world.orders[1])
    assert len(still) == 2 and not any(b.cleared_at for b in still)


async def test_closing_a_failed_withdraw_through_the_api_clears_its_breaches_at_once(
    world: World, client: GraphQLHttp
) -> None:
    await _failed(world)
    failed = WITHDRAWALS[SlaRule.WITHDRAW_FAILED_UNRESOLVED]
    await sla.sweep(now=T0 + timedelta(days=2))
    mine = await _of(SlaRule.WITHDRAW_FAILED_UNRESOLVED, failed, world.d.supplier.organisation_id)
    assert len(mine) == 1 and mine[0].cleared_at is None
    await ok(
        client,
        'mutation($w: ID!) { closeWithdrawal(withdrawalId: $w, note: "handled by phone") { userErrors { code message } } }',
        {"w": gid("Withdrawal", failed)},
        token=world.d.supplier.token,
    )
    # the served instance's worker heard the event and settled the withdrawal: no sweep ran
    breaches = await eventually(
        lambda: _of(SlaRule.WITHDRAW_FAILED_UNRESOLVED, failed),
        lambda found: all(b.cleared_at is not None for b in found),
        timeout=5,
    )
    assert {b.clear_reason for b in breaches} == {"the failed withdraw was resolved"}


async def test_one_instance_holds_the_sweep_until_its_lease_runs_out(server: RunningServer) -> None:
    name, at = f"test-{uuid.uuid4().hex[:8]}", T0
    a, b = NamedLease(name, "a"), NamedLease(name, "b")
    assert await a.take_until(at + timedelta(seconds=90), now=at)
    assert not await b.take_until(at + timedelta(seconds=179), now=at + timedelta(seconds=89))
    assert await a.take_until(at + timedelta(seconds=150), now=at + timedelta(seconds=60))
    # a's renewal runs to +150 s: b waits for that, then takes over
    assert not await b.take_until(at + timedelta(seconds=239), now=at + timedelta(seconds=149))
    assert await b.take_until(at + timedelta(seconds=241), now=at + timedelta(seconds=151))
    assert not await a.take_until(at + timedelta(seconds=242), now=at + timedelta(seconds=152))
    # given back, it is free at once
    assert await b.release() == 1
    assert await a.take_until(at + timedelta(seconds=243), now=at + timedelta(seconds=153))
