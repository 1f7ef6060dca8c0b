"""Every statement that exists once per database engine runs here on the engine of the run.

``domain.persistence`` registers each such operation as a ``DialectSwitch`` with a PostgreSQL
and an "other" (SQLite) implementation. The default suite runs this file on SQLite and CI's
second pass on PostgreSQL, so both implementations of every switch run on every change; a switch
without a scenario below, or with a single implementation, fails here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import domain.persistence
from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.events.models import Event
from domain.leases import GIVEN_BACK, NamedLease
from domain.orders.models import (
    InboxState,
    Order,
    OrderKind,
    OrderStatus,
    OrderTransition,
    WebhookReceipt,
)
from domain.organisations.models import Organisation, OrganisationKind
from domain.persistence import outbox as persisted_outbox
from domain.persistence.dialects import ENGINES, SWITCHES, calls, engine
from domain.sla.models import SweepLease
from tests.support.server import RunningServer

Scenario = Callable[[RunningServer], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(run: Scenario) -> Scenario:
        SCENARIOS[name] = run
        return run

    return register


def _load_every_switch() -> None:
    for module in pkgutil.iter_modules(domain.persistence.__path__):
        importlib.import_module(f"domain.persistence.{module.name}")


# --------------------------------------------------------------------------- scenarios


@scenario("inbox.insert_receipts")
async def _inbox(server: RunningServer) -> None:
    from domain.persistence.inbox import insert_receipts

    store = await _store()  # receipts reference a real store
    now = datetime.now(UTC)
    try:
        first = await insert_receipts([(store, "a", "{}"), (store, "b", "{}")], now)
        assert first == {(store, "a"), (store, "b")}
        again = await insert_receipts([(store, "a", "{}"), (store, "c", "{}")], now)
        assert again == {(store, "c")}  # the redelivery is skipped
        assert await WebhookReceipt.filter(store_id=store).count() == 3
    finally:
        await WebhookReceipt.filter(store_id=store).delete()


@scenario("inbox.finish_done")
async def _inbox_done(server: RunningServer) -> None:
    from domain.persistence.inbox import finish_done, insert_receipts

    store = await _store()
    now = datetime.now(UTC)
    await insert_receipts([(store, "a", "{}"), (store, "b", "{}")], now)
    a, b = await WebhookReceipt.filter(store_id=store).order_by("event_id")
    await WebhookReceipt.filter(id__in=[a.id, b.id]).update(lease_owner="me")
    order = await _store_order(store, "done")
    try:
        assert await finish_done([(a.id, "me", order.id), (b.id, "other", order.id)], now) == 1
        a, b = await WebhookReceipt.filter(store_id=store).order_by("event_id")
        assert (a.state, a.order_id, a.lease_owner) == (InboxState.DONE, order.id, None)
        assert (b.state, b.order_id, b.lease_owner) == (InboxState.PENDING, None, "me")
    finally:
        await WebhookReceipt.filter(store_id=store).delete()


@scenario("inbox.claim")
async def _inbox_claim(server: RunningServer) -> None:
    from datetime import timedelta

    from domain.persistence.inbox import claim_receipts, insert_receipts

    store = await _store()
    # due long ago, claimed as of then: no other row of the run is due as early
    then = datetime(2000, 1, 1, tzinfo=UTC)
    await insert_receipts([(store, e, "{}") for e in ("a", "b", "c")], then)
    held = await WebhookReceipt.get(store_id=store, event_id="b")
    await WebhookReceipt.filter(id=held.id).update(
        lease_owner="other", lease_until=then + timedelta(minutes=1)
    )
    worker = server.app.state.store_inbox
    await worker.stop()  # the server's own worker leaves them alone meanwhile
    try:
        claimed = await claim_receipts(owner="me", lease_seconds=30, limit=10, now=then)
        assert [r.event_id for r in claimed] == ["a", "c"]  # "b" is held by another instance
        assert all(r.lease_owner == "me" and r.attempts == 1 for r in claimed)
        assert not await claim_receipts(owner="again", lease_seconds=30, limit=10, now=then)
    finally:
        await WebhookReceipt.filter(store_id=store).delete()
        await worker.start()


async def _store_order(store_id: int, external_id: str) -> Order:
    from domain.stores.models import Store

    store = await Store.get(id=store_id)
    return await Order.create(
        number=f"P{uuid.uuid4().hex[:12]}",
        kind=OrderKind.STORE,
        status=OrderStatus.UNRECOGNIZED,
        buyer_id=store.buyer_id,
        store_id=store.id,
        store_order_id=external_id,
    )


@scenario("intake.insert_orders")
async def _intake_orders(server: RunningServer) -> None:
    from domain.persistence.intake import insert_orders
    from domain.stores.models import Store

    store = await Store.get(id=await _store())
    taken = await _store_order(store.id, "taken")

    def draft(external_id: str) -> dict[str, object]:
        return {
            "number": f"P{uuid.uuid4().hex[:12]}",
            "kind": OrderKind.STORE,
            "status": OrderStatus.UNRECOGNIZED,
            "buyer_id": store.buyer_id,
            "store_id": store.id,
            "store_order_id": external_id,
            "shipping_address": {"city": "Paris"},
        }

    inserted = await insert_orders([draft("new"), draft("taken")])
    assert [o.store_order_id for o in inserted] == ["new"]  # "taken" was taken before
    [new] = inserted
    stored = await Order.get(id=new.id)  # as the ORM reads it back, defaults filled in
    assert new.id != taken.id and new.shipping_address == stored.shipping_address
    assert (new.version, new.paid_amount, new.created_at) == (1, 0, stored.created_at)


@scenario("intake.insert_order_details")
async def _intake_details(server: RunningServer) -> None:
    from domain.events.catalogue import OrderCreated
    from domain.orders.models import OrderLine
    from domain.persistence.intake import insert_order_details

    orders = [await _store_order(await _store(), name) for name in ("one", "two")]
    async with transaction():
        await insert_order_details(
            [{"order_id": o.id, "title": "Tee", "quantity": n + 1} for n, o in enumerate(orders)],
            [{"order_id": o.id, "to_status": o.status, "reason": "in"} for o in orders],
            [OrderCreated.of(o, actor_user_id=None) for o in orders],
        )
    for n, order in enumerate(orders):
        [line] = await OrderLine.filter(order_id=order.id)
        assert (line.title, line.quantity) == ("Tee", n + 1)
        assert await OrderTransition.filter(order_id=order.id, reason="in").count() == 1
        [event] = await Event.filter(
            type="ORDER_CREATED", subject_id=str(order.id)
        ).prefetch_related("audience")
        assert event.payload["number"] == order.number
        assert [a.organisation_id for a in event.audience] == [order.buyer_id]


async def _store() -> int:
    from domain.stores.models import Store, StorePlatform

    organisation = await _organisation()
    store = await Store.create(
        buyer_id=organisation.id,
        name="Paths",
        platform=StorePlatform.OTHER,
        api_url="http://127.0.0.1:9/",
        access_token="token",
        webhook_secret="secret",
    )
    return store.id


async def _organisation() -> Organisation:
    from domain.organisations import commands as organisations

    email = f"{uuid.uuid4().hex[:12]}@example.test"
    organisation, _ = await organisations.create_organisation(
        name=f"Paths {email}", kind=OrganisationKind.BUYER, owner_email=email, owner_name="O"
    )
    return organisation


@scenario("events.insert")
async def _event(server: RunningServer) -> None:
    from domain.events import record_event
    from domain.events.catalogue import OrganisationUpdated

    organisation = await _organisation()
    async with transaction():
        await record_event(
            OrganisationUpdated.of(organisation, previous_name="before", actor_user_id=None)
        )
    [row] = await Event.filter(  # (tests/test_outbox.py's probes have subject ids 0-39)
        type="ORGANISATION_UPDATED", subject_type="Organisation", subject_id=str(organisation.id)
    ).prefetch_related("audience")
    assert row.payload == {"name": organisation.name, "previousName": "before"}
    assert [a.organisation_id for a in row.audience] == [organisation.id]


@scenario("orders.change_and_record")
async def _order_change(server: RunningServer) -> None:
    from domain.orders.status import transition

    organisation = await _organisation()
    order = await Order.create(
        number=f"P{uuid.uuid4().hex[:12]}",
        kind=OrderKind.MANUAL,
        status=OrderStatus.AWAITING_PAYMENT,
        buyer_id=organisation.id,
    )
    stale = await Order.get(id=order.id)
    async with transaction():
        await transition(order, OrderStatus.CANCELLED, actor_user_id=None, reason="paths")
    fresh = await Order.get(id=order.id)
    assert (fresh.status, fresh.version) == (OrderStatus.CANCELLED, 2)
    assert await OrderTransition.filter(order_id=order.id).count() == 1
    changed = Event.filter(type="ORDER_STATUS_CHANGED", subject_id=str(order.id))
    assert await changed.count() == 1
    # a change from a stale read writes nothing
    with pytest.raises(DomainError) as refused:
        async with transaction():
            await transition(stale, OrderStatus.CANCELLED, actor_user_id=None)
    assert refused.value.code is ErrorCode.CONFLICT
    assert await OrderTransition.filter(order_id=order.id).count() == 1
    assert await changed.count() == 1


@scenario("charges.pricing_rows")
async def _pricing(server: RunningServer) -> None:
    from decimal import Decimal

    from domain.catalogue.models import PriceTier, Product, Sku
    from domain.orders.models import OrderLine
    from domain.persistence.charges import pricing_rows
    from domain.stock.models import CloudWarehouse, StockItem

    buyer, supplier = await _organisation(), await _organisation()
    product = await Product.create(supplier_id=supplier.id, title="Tee")
    sku = await Sku.create(
        product_id=product.id,
        supplier_id=supplier.id,
        code="TEE",
        weight_grams=200,
        unit_price=Decimal("5.00"),
        currency="USD",
    )
    await PriceTier.create(sku_id=sku.id, min_quantity=10, unit_price=Decimal("4.50"))
    order = await Order.create(
        number=f"P{uuid.uuid4().hex[:12]}",
        kind=OrderKind.MANUAL,
        status=OrderStatus.AWAITING_PAYMENT,
        buyer_id=buyer.id,
        supplier_id=supplier.id,
    )
    priced = await OrderLine.create(order_id=order.id, title="Tee", quantity=2, sku_id=sku.id)
    unmapped = await OrderLine.create(order_id=order.id, title="Other", quantity=1)
    pricing = await pricing_rows(buyer.id, [order.id, order.id + 10_000], None, None)
    orders, lines, tiers = pricing.orders, pricing.lines, pricing.tiers
    assert list(orders) == [order.id]
    assert [(line.id, s.code if s else None, p.title if p else None) for line, s, p in lines] == [
        (priced.id, "TEE", "Tee"),
        (unmapped.id, None, None),
    ]
    assert [(t.min_quantity, t.unit_price) for t in tiers[sku.id]] == [(10, Decimal("4.50"))]
    assert (await pricing_rows(supplier.id, [order.id], None, None)).orders == {}  # not the buyer
    assert pricing.stock is None  # not paying from stock
    warehouse = await CloudWarehouse.create(
        supplier_id=supplier.id, name="W", address={}, callback_secret="s"
    )
    item = await StockItem.create(
        buyer_id=buyer.id, warehouse_id=warehouse.id, sku_id=sku.id, on_hand=3, available=3
    )
    try:  # an item without its movements: gone before other tests check the ledger
        stock = (await pricing_rows(buyer.id, [order.id], None, warehouse.id)).stock
        if stock is not None:  # read with the orders where the statement does (PostgreSQL)
            assert stock.warehouse_active
            assert [(s, i.id, i.available) for s, i in stock.items.items()] == [
                (sku.id, item.id, 3)
            ]
            await CloudWarehouse.filter(id=warehouse.id).update(is_active=False)
            inactive = (await pricing_rows(buyer.id, [order.id], None, warehouse.id)).stock
            assert inactive is not None and not inactive.warehouse_active
    finally:
        await item.delete()


@scenario("warehouse_tasks.claim")
async def _warehouse_claim(server: RunningServer) -> None:
    from datetime import timedelta

    from domain.distribution.models import TaskKind, WarehouseTask
    from domain.persistence.warehouse_tasks import claim_tasks

    worker = server.app.state.warehouses
    await worker.stop()  # the server's own worker leaves the tasks alone meanwhile
    # due long ago, claimed as of then: no other task of the run is due as early
    then = datetime(2000, 1, 1, tzinfo=UTC)
    until = then + timedelta(minutes=1)
    tasks = [await WarehouseTask.create(kind=TaskKind.PUSH_ORDER, due_at=then) for _ in "abcd"]
    free, held, other, running = tasks
    await WarehouseTask.filter(id=held.id).update(lease_owner="other", lease_until=until)
    as_of_then = {"until": until, "now": then, "limit": 9}
    try:
        claimed = await claim_tasks(owner="me", exclude=[running.id], **as_of_then)
        assert [t.id for t in claimed] == [free.id, other.id]  # held by another, or excluded
        assert all((t.lease_owner, t.lease_until, t.attempts) == ("me", until, 1) for t in claimed)
        assert not await claim_tasks(owner="again", exclude=[running.id], **as_of_then)
        [last] = await claim_tasks(owner="me", exclude=[], **as_of_then)
        assert last.id == running.id
    finally:
        await WarehouseTask.filter(id__in=[t.id for t in tasks]).delete()
        await worker.start()


@scenario("outbox.assign_sequence")
async def _assign(server: RunningServer) -> None:
    await _event(server)  # at least one event to number, unless the publisher was quicker
    await persisted_outbox.assign_sequence(limit=10_000)
    assert not await Event.filter(seq__isnull=True).exists()


@scenario("outbox.claim")
async def _claim(server: RunningServer) -> None:
    await _event(server)
    claimed = await persisted_outbox.claim_unpublished()
    seqs = [e.seq for e in claimed]
    assert seqs == sorted(seqs) and all(e.audience for e in claimed)
    assert not await Event.filter(seq__isnull=True).exists()


@scenario("outbox.mark_published")
async def _mark(server: RunningServer) -> None:
    await _event(server)
    await persisted_outbox.assign_sequence(limit=10_000)
    last = await Event.filter(seq__isnull=False).order_by("-seq").first()
    assert last is not None and last.seq is not None
    await persisted_outbox.mark_published([last.seq])
    await last.refresh_from_db()
    assert last.published_at is not None


@scenario("outbox.take_and_claim")
async def _take_and_claim(server: RunningServer) -> None:
    await _event(server)
    name, now = f"test-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    until = now + timedelta(seconds=60)
    try:
        first = await persisted_outbox.take_and_claim(name=name, holder="a", until=until, now=now)
        assert first.missing and not first.taken  # no row yet: the lease makes it
        assert await NamedLease(name, "a").take_until(until, now=now)
        mine = await persisted_outbox.take_and_claim(name=name, holder="a", until=until, now=now)
        seqs = [e.seq for e in mine.events]
        assert mine.taken and seqs == sorted(seqs) and all(e.audience for e in mine.events)
        theirs = await persisted_outbox.take_and_claim(name=name, holder="b", until=until, now=now)
        assert not theirs.taken and not theirs.missing and theirs.events == []
        assert theirs.held_until == until
        assert (await SweepLease.get(name=name)).holder == "a"
    finally:
        await SweepLease.filter(name=name).delete()


@scenario("outbox.release_and_look")
async def _release_and_look(server: RunningServer) -> None:
    name, now = f"test-{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    try:
        assert await NamedLease(name, "a").take_until(now + timedelta(seconds=60), now=now)
        waiting = await persisted_outbox.release_and_look(
            name=name, holder="b", given_back=GIVEN_BACK
        )
        assert isinstance(waiting, bool)
        assert (await SweepLease.get(name=name)).until > now  # another holder's: kept
        await persisted_outbox.release_and_look(name=name, holder="a", given_back=GIVEN_BACK)
        assert (await SweepLease.get(name=name)).until == GIVEN_BACK
    finally:
        await SweepLease.filter(name=name).delete()


# --------------------------------------------------------------------------- the checks


def test_every_switch_has_both_implementations_and_a_scenario() -> None:
    _load_every_switch()
    assert SWITCHES, "no dialect switch found"
    for switch in SWITCHES.values():
        assert set(switch.impls) == set(ENGINES), f"{switch.name}: {sorted(switch.impls)}"
    untested = sorted(set(SWITCHES) - set(SCENARIOS))
    assert not untested, f"dialect switches without a scenario in this file: {untested}"
    assert not set(SCENARIOS) - set(SWITCHES), "a scenario names no switch"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_the_switch_runs_on_this_engine(name: str, server: RunningServer) -> None:
    before = calls[name, engine()]
    await SCENARIOS[name](server)
    assert calls[name, engine()] > before, f"{name} did not run its {engine()} statement"


# statements are written in capitals here; prose that starts with "Create" or "Insert" is not
_SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH|CREATE|ALTER)\b")
_RUNS_SQL = {"execute_query", "execute_script", "execute_insert", "execute_many"}
_NOT_RULES = ("persistence", "migrations", "models")


def sql_in(source: str) -> list[str]:
    """Statements written or run in ``source``: string literals that start like SQL, and calls
    of a connection's ``execute_*``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL_TEXT.match(node.value):
                found.append(f"line {node.lineno}: {node.value.strip()[:40]!r}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _RUNS_SQL
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}(...)")
    return found


def test_the_check_finds_sql() -> None:
    assert sql_in('q = "SELECT 1"') and sql_in("await db.execute_query(q)")
    assert sql_in('q = f"UPDATE {t} SET x = 1"')
    assert not sql_in('"""Select the order: an INSERT of the body happens later."""')
    assert not sql_in('"""Insert these events, then Update the rest."""')


def test_no_rule_module_of_the_domain_holds_sql() -> None:
    domain_dir = Path(domain.persistence.__file__).parent.parent
    offenders = {}
    for path in sorted(domain_dir.rglob("*.py")):
        if path.relative_to(domain_dir).parts[0] in _NOT_RULES:
            continue
        found = sql_in(path.read_text())
        if found:
            offenders[str(path.relative_to(domain_dir))] = found
    assert not offenders, f"SQL belongs in domain/persistence/: {offenders}"
