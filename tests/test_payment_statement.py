"""Paying under concurrency: all or nothing, never below zero, the ledger equal to the balance.

On PostgreSQL a payment without stock is one statement outside a transaction
(``domain.persistence.payments``); these tests pin what that must keep: racing payments of one
wallet and of one order, a stale order in a payment of several, the wallet locked before
the orders (LOCK_ORDER in ``domain.payments.commands``), and payments of one wallet arriving
together written together (``domain.persistence.payment_batches``). The first two run on SQLite
too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import asyncpg
import pytest

from domain.events.catalogue import WalletChanged
from domain.events.models import Event, EventAudience
from domain.orders.models import Order, OrderStatus, OrderTransition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence import payment_batches
from domain.persistence.payments import PaidOrder, PaymentWrite, pay_in_one_statement
from schema.global_ids import key_of
from tests.conftest import MakeMember, Member
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_cloud_stock import (
    INVENTORY,
    PAY_FROM_STOCK,
    assert_ledger_matches,
    manual_order,
    stock_up,
    top_up,
    warehouse,
)
from tests.test_order_flow import supplier_catalogue

PAY = """mutation($o: [ID!]!) { payOrders(orderIds: $o) { orders { id status paidAmount }
  userErrors { code field message } } }"""


async def _pay(client: GraphQLHttp, buyer: Member, *order_ids: str) -> dict:
    return (await client.data(PAY, {"o": list(order_ids)}, token=buyer.token))["payOrders"]


async def _assert_wallet_equals_ledger(buyer: Member) -> Wallet:
    wallet = await Wallet.get(buyer_id=buyer.organisation_id)
    entries = await WalletEntry.filter(wallet_id=wallet.id)
    assert wallet.balance_cents >= 0
    assert wallet.balance == sum((e.amount for e in entries), Decimal("0.00"))
    return wallet


async def test_racing_payments_drain_the_wallet_exactly(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    orders = [await manual_order(client, buyer, cat, 1) for _ in range(13)]
    await top_up(client, supplier, buyer, "100.00")
    first = await _pay(client, buyer, orders[0])
    price = Decimal(first["orders"][0]["paidAmount"])
    affordable = int((Decimal("100.00") - price) // price)
    answers = await asyncio.gather(*(_pay(client, buyer, order) for order in orders[1:]))
    paid = [a for a in answers if not a["userErrors"]]
    refused = [a["userErrors"][0]["code"] for a in answers if a["userErrors"]]
    assert len(paid) == min(affordable, 12)
    assert set(refused) <= {"INSUFFICIENT_FUNDS"}
    wallet = await _assert_wallet_equals_ledger(buyer)
    assert wallet.balance == Decimal("100.00") - price * (len(paid) + 1)
    every = [key_of(o) for o in orders]
    rows = await Order.filter(id__in=every, status=OrderStatus.AWAITING_SHIPPING)
    payments = await WalletEntry.filter(wallet_id=wallet.id, kind=EntryKind.PAYMENT)
    assert sorted(e.order_id for e in payments) == sorted(o.id for o in rows)


async def test_one_order_paid_by_racing_requests_is_paid_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order = await manual_order(client, buyer, cat, 1)
    await top_up(client, supplier, buyer, "500.00")
    answers = await asyncio.gather(*(_pay(client, buyer, order) for _ in range(6)))
    assert sum(1 for a in answers if not a["userErrors"]) == 1
    refusals = {a["userErrors"][0]["code"] for a in answers if a["userErrors"]}
    assert refusals <= {"ILLEGAL_TRANSITION", "CONFLICT"}
    await _assert_wallet_equals_ledger(buyer)
    assert await WalletEntry.filter(order_id=key_of(order)).count() == 1
    assert await OrderTransition.filter(order_id=key_of(order)).count() == 2  # created, paid


async def test_a_stale_order_leaves_the_whole_payment_unwritten(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    if server.settings.is_sqlite:
        pytest.skip("the one-statement payment is PostgreSQL's")
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    ids = [key_of(await manual_order(client, buyer, cat, 1)) for _ in range(2)]
    await top_up(client, supplier, buyer, "100.00")
    wallet = await Wallet.get(buyer_id=buyer.organisation_id)
    current, stale = await Order.get(id=ids[0]), await Order.get(id=ids[1])
    write = PaymentWrite(
        wallet_id=wallet.id,
        total_cents=200,
        currency="USD",
        paid_at=current.created_at,
        actor_user_id=None,
        orders=[
            PaidOrder(o.id, version, Decimal("1.00"), Decimal("0.00"), None, "n", "r")
            for o, version in ((current, current.version), (stale, stale.version - 1))
        ],
        line_prices={},
        events=[],
    )
    outcome = await pay_in_one_statement(write)
    assert (outcome.written, outcome.wallet_found, outcome.orders_current) == (False, True, 1)
    assert (await Wallet.get(id=wallet.id)).balance_cents == wallet.balance_cents
    assert await Order.filter(id__in=ids, status=OrderStatus.AWAITING_PAYMENT).count() == 2
    assert await WalletEntry.filter(wallet_id=wallet.id, kind=EntryKind.PAYMENT).count() == 0


async def test_the_payment_waits_for_the_wallet_before_locking_orders(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """LOCK_ORDER: with the wallet held elsewhere, a waiting payment holds no order row."""
    if server.settings.is_sqlite:
        pytest.skip("row locks are PostgreSQL's")
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    order = await manual_order(client, buyer, cat, 1)
    await top_up(client, supplier, buyer, "100.00")
    holder = await asyncpg.connect(server.settings.database_url)
    probe = await asyncpg.connect(server.settings.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(
            "SELECT 1 FROM wallet WHERE buyer_id = $1 FOR UPDATE", buyer.organisation_id
        )
        paying = asyncio.create_task(_pay(client, buyer, order))
        waiting = 0
        for _ in range(400):  # until the payment waits for the wallet
            waiting = await probe.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            )
            if waiting or paying.done():
                break
            await asyncio.sleep(0.025)
        assert waiting, "the payment never waited for the wallet"
        async with probe.transaction():  # the order row is free meanwhile
            await probe.execute(
                "SELECT 1 FROM supply_order WHERE id = $1 FOR UPDATE NOWAIT", key_of(order)
            )
        await held.commit()
        paid = await paying
    finally:
        await holder.close()
        await probe.close()
    assert paid["userErrors"] == []
    assert paid["orders"][0]["status"] == "AWAITING_SHIPPING"


@contextlib.asynccontextmanager
async def _wallet_held(
    server: RunningServer, wallet_id: int
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The wallet's row locked by another connection until the block calls what it is given
    (or leaves)."""
    holder = await asyncpg.connect(server.settings.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM wallet WHERE id = $1 FOR UPDATE", wallet_id)
        yield held.commit
    finally:
        await holder.close()


def _write(wallet: Wallet, orders: list[Order], *, cents: int, events: list) -> PaymentWrite:
    """A payment of ``orders`` at their current versions, ``cents`` each."""
    amount = Decimal(cents) / 100
    return PaymentWrite(
        wallet_id=wallet.id,
        total_cents=cents * len(orders),
        currency="USD",
        paid_at=orders[0].created_at,
        actor_user_id=None,
        orders=[
            PaidOrder(o.id, o.version, amount, Decimal("0.00"), None, "n", "r") for o in orders
        ],
        line_prices={},
        events=events,
    )


async def _orders_and_wallet(
    client: GraphQLHttp, make_member: MakeMember, count: int, funds: str
) -> tuple[list[Order], Wallet, Member]:
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    ids = [key_of(await manual_order(client, buyer, cat, 1)) for _ in range(count)]
    await top_up(client, supplier, buyer, funds)
    orders = sorted(await Order.filter(id__in=ids), key=lambda o: o.id)
    return orders, await Wallet.get(buyer_id=buyer.organisation_id), buyer


async def test_payments_written_together_keep_each_one_all_or_nothing(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """``payment_batches.pay_together``: a payment whose order went stale is refused as itself;
    from the first the balance cannot cover after those before it, the payments are handed back
    to be written alone (where each is taken or refused as if it had come alone); the rest are
    written, each with its events, and the wallet equals its ledger."""
    if server.settings.is_sqlite:
        pytest.skip("payments written together are PostgreSQL's")
    orders, wallet, buyer = await _orders_and_wallet(client, make_member, 5, "10.00")
    event = WalletChanged.of(wallet, reason="payment", actor_user_id=None)
    stale = Order(**{**orders[1].__dict__})
    stale.version -= 1
    writes = [
        _write(wallet, [orders[0]], cents=400, events=[event]),
        _write(wallet, [stale], cents=100, events=[event]),
        _write(wallet, [orders[2]], cents=700, events=[event]),  # 4 + 7 > 10
        _write(wallet, [orders[3], orders[4]], cents=300, events=[event, event]),
    ]
    before = await Event.filter(subject_type="Wallet", subject_id=str(wallet.id)).count()
    outcomes = await payment_batches.pay_together(writes)
    assert [o.written for o in outcomes] == [True, False, False, False]
    assert outcomes[1].orders_current == 0  # refused as a conflict
    assert outcomes[2] is outcomes[3] is payment_batches._ALONE
    alone = [await pay_in_one_statement(w) for w in writes[2:]]
    assert [(o.written, o.balance_cents) for o in alone] == [(False, 600), (True, 600)]
    paid = await Order.filter(id__in=[o.id for o in orders], status=OrderStatus.AWAITING_SHIPPING)
    assert sorted(o.id for o in paid) == [orders[0].id, orders[3].id, orders[4].id]
    assert {o.version for o in paid} == {orders[0].version + 1}
    wallet = await _assert_wallet_equals_ledger(buyer)
    assert wallet.balance == Decimal("0.00")
    written = await Event.filter(subject_type="Wallet", subject_id=str(wallet.id)).count()
    assert written - before == 3
    audiences = await EventAudience.filter(
        event_id__in=await Event.filter(subject_type="Wallet", subject_id=str(wallet.id))
        .order_by("-id")
        .limit(3)
        .values_list("id", flat=True)
    ).count()
    assert audiences == 3 * 2  # buyer and supplier


async def test_payments_arriving_together_take_the_wallet_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """``payment_batches.WalletQueue``: with the wallet held elsewhere, the first payment waits
    for it alone and those arriving meanwhile are written together after it, in one statement;
    a second payment of an order already in that group waits for the next one and is refused
    as a conflict there."""
    if server.settings.is_sqlite:
        pytest.skip("payments written together are PostgreSQL's")
    orders, wallet, buyer = await _orders_and_wallet(client, make_member, 5, "100.00")
    queue = payment_batches.WalletQueue()
    async with _wallet_held(server, wallet.id) as release:
        first = asyncio.create_task(queue.pay(_write(wallet, [orders[0]], cents=100, events=[])))
        await asyncio.sleep(0.2)  # the first is waiting for the wallet
        rest = [
            asyncio.create_task(queue.pay(_write(wallet, [order], cents=100, events=[])))
            for order in [*orders[1:], orders[1]]
        ]
        await asyncio.sleep(0.1)
        await release()
        outcomes = [await first, *await asyncio.gather(*rest)]
    assert [o.written for o in outcomes] == [True, True, True, True, True, False]
    assert outcomes[-1].orders_current == 0
    assert queue.groups_written == 1
    assert not queue.writing and not queue.waiting
    wallet = await _assert_wallet_equals_ledger(buyer)
    assert wallet.balance == Decimal("95.00")


async def test_payments_from_stock_written_together_count_each_items_units(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """Concurrent payments from one stock item, many written together: exactly the units there
    are get reserved, each paid order holds its units, the others are refused for stock, and
    every figure equals its ledger; each reservation's INVENTORY_CHANGED carries the figures
    after its own movement."""
    if server.settings.is_sqlite:
        pytest.skip("payments written together are PostgreSQL's")
    supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
    cat = await supplier_catalogue(client, supplier)
    warehouse_id = await warehouse(client, supplier)
    await stock_up(client, supplier, buyer, cat, warehouse_id, 7)
    orders = [await manual_order(client, buyer, cat, 2) for _ in range(6)]
    await top_up(client, supplier, buyer, "500.00")
    wallet = await Wallet.get(buyer_id=buyer.organisation_id)
    async with _wallet_held(
        server, wallet.id
    ) as release:  # the first payment waits for the wallet; the others arrive meanwhile
        paying = [
            asyncio.create_task(
                client.data(
                    PAY_FROM_STOCK, {"o": [o], "w": warehouse_id, "s": False}, token=buyer.token
                )
            )
            for o in orders
        ]
        await asyncio.sleep(0.5)
        queue = payment_batches.queue_of_this_loop()
        assert queue is not None
        groups = queue.groups_written
        await release()
        answers = await asyncio.gather(*paying)
    assert queue.groups_written > groups
    results = [a["payOrders"] for a in answers]
    paid = [r for r in results if not r["userErrors"]]
    assert len(paid) == 3  # 3 x 2 of 7 units
    assert {r["userErrors"][0]["code"] for r in results if r["userErrors"]} == {
        "INSUFFICIENT_STOCK"
    }
    assert all(r["orders"][0]["lines"] == [{"quantity": 2, "stockQuantity": 2}] for r in paid)
    [item] = (await client.data(INVENTORY, token=buyer.token))["inventory"]["nodes"]
    assert (item["onHand"], item["reserved"], item["available"]) == (7, 6, 1)
    await assert_ledger_matches()
    await _assert_wallet_equals_ledger(buyer)
    changes = (
        await client.data(
            "{ events(first: 100, types: [INVENTORY_CHANGED]) { edges { node { payload } } } }",
            token=buyer.token,
        )
    )["events"]["edges"]
    reserved = [
        (e["node"]["payload"]["reserved"], e["node"]["payload"]["available"])
        for e in changes
        if e["node"]["payload"]["movement"] == "RESERVED"
    ]
    assert reserved == [(2, 5), (4, 3), (6, 1)]


async def test_a_payment_whose_request_stopped_waiting_is_not_written(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember
) -> None:
    """A request cancelled (its client gone) while its payment waits for the wallet: the
    payment is left out of the group, and nothing of it is written."""
    if server.settings.is_sqlite:
        pytest.skip("payments written together are PostgreSQL's")
    orders, wallet, buyer = await _orders_and_wallet(client, make_member, 3, "100.00")
    queue = payment_batches.WalletQueue()
    async with _wallet_held(server, wallet.id) as release:
        first = asyncio.create_task(queue.pay(_write(wallet, [orders[0]], cents=100, events=[])))
        await asyncio.sleep(0.2)
        gone, kept = (
            asyncio.create_task(queue.pay(_write(wallet, [order], cents=100, events=[])))
            for order in orders[1:]
        )
        await asyncio.sleep(0.1)
        gone.cancel()
        await release()
        assert (await first).written and (await kept).written
    assert gone.cancelled()
    assert (await Order.get(id=orders[1].id)).status is OrderStatus.AWAITING_PAYMENT
    wallet = await _assert_wallet_equals_ledger(buyer)
    assert wallet.balance == Decimal("98.00")
