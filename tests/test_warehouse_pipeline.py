"""The warehouse worker as a pipeline, and withdraws applied together.

- The worker keeps at most ``concurrency`` calls in flight and claims more as calls end; a
  slow warehouse holds up its own tasks only; while the instance is busy answering requests,
  it takes a batch per ``busy_pause``. Cancels of tasks claimed together go in one
  request (or one by one where the warehouse does not offer that endpoint).
- Successful cancels are applied together (``domain.distribution.withdrawn``: on PostgreSQL two
  statements for a batch); one that changed since it was read falls back to its own way, the
  others still go; whichever way, each withdrawal is applied once: one cancellation at the
  warehouse, one refund, WITHDRAWN once. An order that shipped before its cancel was applied
  is never refunded, whatever the warehouse answered.

Every test runs the real app over HTTP against the warehouse simulator (held back where a test
needs calls in flight), on the database of the run (SQLite, or PostgreSQL in CI's second pass).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise.expressions import F

from domain.db import transaction
from domain.distribution import tasks as warehouse_tasks
from domain.distribution import withdrawals
from domain.distribution import withdrawn as withdrawn_module
from domain.distribution.models import (
    TaskKind,
    TaskState,
    WarehouseAttempt,
    WarehouseTask,
    Withdrawal,
    WithdrawalStatus,
)
from domain.distribution.withdrawals import SHIPPED_FIRST
from domain.distribution.withdrawn import Cancelled, withdrawn_together
from domain.events.models import Event
from domain.orders.models import Order, OrderStatus
from domain.orders.status import transition
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence import withdrawals as withdraw_statements
from domain.persistence.dialects import is_postgres
from integrations.request_load import RequestLoad
from integrations.warehouses.simulator import create_warehouse_simulator
from integrations.warehouses.worker import WarehouseWorker
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WAREHOUSE_KEY,
    Distribution,
    WarehouseSim,
    eventually,
    order_state,
    paid_order,
    partnered,
    push,
    warehouse_simulator,
)
from tests.support.faults import HeldAnswers
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, RunningServer, serve

WITHDRAW = """mutation($o: ID!) { withdrawOrder(orderId: $o, reason: "pipeline")
  { withdrawal { id status } userErrors { code field message } } }"""

# held calls must not time out while a test looks at them
PATIENT_WAREHOUSE = {**FAST_WAREHOUSE, "warehouse_timeout": 30.0}


class InFlight:
    """ASGI wrapper counting the warehouse API requests in flight (answer not yet sent) and
    the most there ever were at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = 0
        self.most = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


@dataclasses.dataclass
class HeldSim:
    sim: WarehouseSim
    hold: HeldAnswers
    calls: InFlight


async def held_simulator() -> AsyncIterator[HeldSim]:
    """The simulator over real HTTP whose answers can be held back (``HeldAnswers``), with
    its calls in flight counted."""
    app = create_warehouse_simulator(api_key=WAREHOUSE_KEY, callback_secret="not-yet-issued")
    hold = HeldAnswers(app)
    calls = InFlight(hold)
    try:
        async with serve(calls) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as c:
            yield HeldSim(WarehouseSim(url=url, control=c), hold, calls)
    finally:
        hold.release()


@pytest.fixture
async def held() -> AsyncIterator[HeldSim]:
    async for running in held_simulator():
        yield running


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server(**PATIENT_WAREHOUSE)


async def pushed_orders(client: GraphQLHttp, d: Distribution, count: int) -> list[str]:
    """``count`` paid orders pushed to the warehouse (PUSHED) by the running worker."""
    order_ids = [await paid_order(client, d) for _ in range(count)]
    assert (await push(client, d, *order_ids))["userErrors"] == []
    for order_id in order_ids:
        await eventually(
            lambda o=order_id: order_state(client, d.supplier.token, o),
            lambda s: s["distribution"]["pushStatus"] == "PUSHED",
        )
    return order_ids


async def withdraw_answer(client: GraphQLHttp, d: Distribution, order_id: str) -> dict[str, Any]:
    data = await client.data(WITHDRAW, {"o": order_id}, token=d.distributor.token)
    return data["withdrawOrder"]


async def withdraw(client: GraphQLHttp, d: Distribution, order_id: str) -> None:
    answered = await withdraw_answer(client, d, order_id)
    assert answered["withdrawal"]["status"] == "WITHDRAWING", answered


async def withdrawn_while_stopped(
    server: RunningServer, client: GraphQLHttp, d: Distribution, count: int
) -> tuple[list[str], WarehouseWorker]:
    """``count`` pushed orders withdrawn while the app's worker is stopped: their cancel tasks
    wait for a worker the test runs (made from the app's, returned)."""
    order_ids = await pushed_orders(client, d, count)
    app_worker = server.app.state.warehouses
    await app_worker.stop()
    for order_id in order_ids:
        await withdraw(client, d, order_id)
    return order_ids, app_worker


def withdrawal_is(status: str) -> Any:
    return lambda s: s["distribution"]["withdrawalStatus"] == status


async def assert_withdrawn_once(client: GraphQLHttp, d: Distribution, order_ids: list[str]) -> None:
    """Each order CANCELLED and refunded once, its withdrawal WITHDRAWN, one successful
    cancel attempt recorded; the wallet equals its ledger."""
    for order_id in order_ids:
        state = await order_state(client, d.distributor.token, order_id)
        assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00", state
        assert [w["status"] for w in state["withdrawals"]] == ["WITHDRAWN"]
        cancels = [a["ok"] for a in state["warehouseAttempts"] if a["kind"] == "CANCEL_ORDER"]
        assert cancels == [True], state["warehouseAttempts"]
        refunds = await WalletEntry.filter(order_id=key_of(order_id), kind=EntryKind.REFUND)
        assert [r.amount for r in refunds] == [Decimal("8.00")]
    [wallet] = await Wallet.filter(buyer_id=key_of(d.distributor.gid))
    entries = await WalletEntry.filter(wallet_id=wallet.id).values_list("amount", flat=True)
    assert wallet.balance == sum(entries, Decimal(0))


# --- the pipeline -------------------------------------------------------------------------------


async def test_the_worker_keeps_at_most_its_concurrency_of_calls_in_flight(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, held: HeldSim
) -> None:
    d = await partnered(client, make_member, held.sim)
    order_ids, app_worker = await withdrawn_while_stopped(server, client, d, 7)
    narrow = WarehouseWorker(dataclasses.replace(app_worker.settings, concurrency=3))

    held.hold.arm()
    running = asyncio.create_task(narrow.run_due())
    await eventually(lambda: asyncio.sleep(0, held.hold.held), lambda n: n == 1)
    # the three tasks claimed together, their cancels in one call answered by nobody: three
    # tasks leased, the other four not
    leased = await WarehouseTask.filter(
        kind=TaskKind.CANCEL_ORDER, lease_owner=narrow.owner, state=TaskState.PENDING
    ).count()
    assert (leased, held.calls.now) == (3, 1)
    held.hold.release()

    assert await running == 7  # the rest claimed as runs ended, in the same run
    assert held.calls.most <= 3
    await assert_withdrawn_once(client, d, order_ids)
    assert (await held.sim.effects())["outbound_cancelled"] == 7


async def test_while_the_instance_is_busy_the_worker_takes_a_batch_per_pause(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, held: HeldSim
) -> None:
    """``integrations.request_load``: while requests keep the instance busy, the worker runs a
    batch of tasks and waits ``busy_pause`` before claiming the next; once the requests are
    answered (and the pause has passed), the rest is claimed in the same run."""
    d = await partnered(client, make_member, held.sim)
    order_ids, app_worker = await withdrawn_while_stopped(server, client, d, 7)
    load = RequestLoad(busy_at=1)
    worker = WarehouseWorker(
        dataclasses.replace(app_worker.settings, concurrency=3, busy_pause=1.5), load=load
    )
    cancels = WarehouseTask.filter(
        kind=TaskKind.CANCEL_ORDER, order_id__in=[key_of(o) for o in order_ids]
    )

    load.entered()  # a request in flight: busy
    running = asyncio.create_task(worker.run_due())
    await eventually(lambda: cancels.filter(state=TaskState.DONE).count(), lambda n: n == 3)
    await asyncio.sleep(0.3)  # runs ended, the pause not over: nothing more is taken
    assert await cancels.filter(state=TaskState.PENDING, lease_owner__isnull=True).count() == 4
    assert (await held.sim.effects())["outbound_cancelled"] == 3
    load.left()

    assert await running == 7
    await assert_withdrawn_once(client, d, order_ids)
    assert (await held.sim.effects())["outbound_cancelled"] == 7


@pytest.mark.parametrize("offered", [True, False], ids=["together", "not-offered"])
async def test_cancels_claimed_together_go_in_one_request(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    held: HeldSim,
    offered: bool,
) -> None:
    d = await partnered(client, make_member, held.sim)
    order_ids, app_worker = await withdrawn_while_stopped(server, client, d, 7)
    if not offered:
        await held.sim.faults(bulk_cancel=False)
    worker = WarehouseWorker(dataclasses.replace(app_worker.settings, concurrency=16))

    held.hold.arm()
    running = asyncio.create_task(worker.run_due())
    await eventually(lambda: asyncio.sleep(0, held.hold.held), lambda n: n == 1)
    await asyncio.sleep(0.2)
    assert held.calls.now == 1  # the seven cancels in one request, answered by nobody yet
    held.hold.release()

    assert await running == 7
    await assert_withdrawn_once(client, d, order_ids)
    assert (await held.sim.effects())["outbound_cancelled"] == 7
    calls = [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in await held.sim.requests()]
    calls = [call for call in calls if call[0] in ("cancel", "cancellations")]
    if offered:
        assert calls == [("cancellations", 200)]
    else:  # the warehouse has no such endpoint: each on its own
        assert sorted(calls) == [("cancel", 200)] * 7 + [("cancellations", 404)]


async def test_a_stopped_worker_does_not_wait_for_its_calls_in_flight(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, held: HeldSim
) -> None:
    """A worker stopped while a warehouse holds its cancel (a shutdown) ends at once; the
    task keeps its lease until it runs out and is then taken again."""
    d = await partnered(client, make_member, held.sim)
    [order_id], app_worker = await withdrawn_while_stopped(server, client, d, 1)
    worker = WarehouseWorker(app_worker.settings)
    held.hold.arm()
    running = asyncio.create_task(worker.run_due())
    await eventually(lambda: asyncio.sleep(0, held.hold.held), lambda n: n == 1)
    running.cancel()
    async with asyncio.timeout(2):  # not the warehouse timeout (30 s here)
        await asyncio.gather(running, return_exceptions=True)
    [task] = await WarehouseTask.filter(order_id=key_of(order_id), kind=TaskKind.CANCEL_ORDER)
    assert (task.state, task.lease_owner) == (TaskState.PENDING, worker.owner)
    held.hold.release()


async def test_withdraw_requests_arriving_together_are_written_in_one_statement(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    """``persistence.withdrawals.WithdrawQueue``: while the first request's statement waits
    (its warehouse record locked elsewhere), the requests arriving meanwhile are written
    together after it, in one statement. Each stands alone there: one whose record changed
    meanwhile is refused as it would have been alone, and a second request of an order in
    the group waits for the next one and is refused there."""
    if server.settings.is_sqlite:
        pytest.skip("requests written together are PostgreSQL's")
    d = await partnered(client, make_member, sim)
    first, *rest = await pushed_orders(client, d, 5)
    changed = rest.pop()
    holder = await asyncpg.connect(server.settings.database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(
            "SELECT 1 FROM warehouse_order WHERE order_id = $1 FOR UPDATE", key_of(first)
        )
        await holder.execute(  # as another withdraw would, committed before the group's turn
            "UPDATE warehouse_order SET withdrawal_status = 'WITHDRAWING' WHERE order_id = $1",
            key_of(changed),
        )
        asking = asyncio.create_task(withdraw_answer(client, d, first))
        await asyncio.sleep(0.3)  # its statement waits for the record
        queue = withdraw_statements.queue_of_this_loop()
        assert queue is not None
        groups = queue.groups_written
        others = [
            asyncio.create_task(withdraw_answer(client, d, order_id))
            for order_id in [*rest, changed, rest[0]]
        ]
        await asyncio.sleep(0.3)
        await held.commit()
        answers = [await asking, *await asyncio.gather(*others)]
    finally:
        await holder.close()
    outcomes = [
        a["withdrawal"]["status"] if a["withdrawal"] else a["userErrors"][0]["code"]
        for a in answers
    ]
    assert outcomes[:1] + outcomes[2:4] == ["WITHDRAWING"] * 3, outcomes
    assert outcomes[4] == "ILLEGAL_TRANSITION", outcomes
    # the two requests of one order: whichever the server took first is written
    assert sorted([outcomes[1], outcomes[5]]) == ["ILLEGAL_TRANSITION", "WITHDRAWING"], outcomes
    assert queue.groups_written == groups + 1
    withdrawn = [first, *rest]
    for order_id in withdrawn:
        await eventually(
            lambda o=order_id: order_state(client, d.distributor.token, o),
            withdrawal_is("WITHDRAWN"),
        )
    await assert_withdrawn_once(client, d, withdrawn)
    assert await Withdrawal.filter(order_id=key_of(changed)).count() == 0


async def test_a_slow_warehouse_holds_up_its_own_tasks_only(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    held: HeldSim,
    sim: WarehouseSim,
) -> None:
    quick = sim
    slow_d = await partnered(client, make_member, held.sim)
    quick_d = await partnered(client, make_member, quick)
    [slow_order] = await pushed_orders(client, slow_d, 1)
    [quick_order] = await pushed_orders(client, quick_d, 1)

    held.hold.arm()  # the slow warehouse acts, but does not answer
    await withdraw(client, slow_d, slow_order)
    await eventually(lambda: asyncio.sleep(0, held.hold.held), lambda n: n == 1)
    await withdraw(client, quick_d, quick_order)
    # the other warehouse's withdraw completes while the slow call is still in flight
    await eventually(
        lambda: order_state(client, quick_d.distributor.token, quick_order),
        withdrawal_is("WITHDRAWN"),
    )
    assert held.calls.now == 1
    state = await order_state(client, slow_d.distributor.token, slow_order)
    assert state["distribution"]["withdrawalStatus"] == "WITHDRAWING"

    held.hold.release()
    await eventually(
        lambda: order_state(client, slow_d.distributor.token, slow_order),
        withdrawal_is("WITHDRAWN"),
    )
    await assert_withdrawn_once(client, slow_d, [slow_order])
    await assert_withdrawn_once(client, quick_d, [quick_order])
    assert (await held.sim.effects())["outbound_cancelled"] == 1
    assert (await quick.effects())["outbound_cancelled"] == 1


async def test_a_slow_call_keeps_its_task_while_its_worker_renews_the_lease(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    [order_id] = await pushed_orders(client, d, 1)
    app_worker = server.app.state.warehouses
    await app_worker.stop()
    await withdraw(client, d, order_id)
    short_lease = dataclasses.replace(app_worker.settings, lease_seconds=0.3)
    slow, other = WarehouseWorker(short_lease), WarehouseWorker(short_lease)
    await sim.faults(delay=1.0)  # the call lasts three leases

    running = asyncio.create_task(slow.run_due())
    for _ in range(4):
        await asyncio.sleep(0.25)
        assert await other.run_due() == 0  # renewed: never free for another instance
    assert await running == 1
    assert slow.heartbeat.renewals >= 2
    [task] = await WarehouseTask.filter(order_id=key_of(order_id), kind=TaskKind.CANCEL_ORDER)
    assert (task.state, task.attempts, task.lease_owner) == (TaskState.DONE, 1, None)
    cancels = [r for r in await sim.requests() if r["path"].endswith("/cancel")]
    assert len(cancels) == 1  # counted at the warehouse: one call


async def test_a_lease_expiring_mid_cancel_lets_a_second_worker_in_but_applies_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    [order_id] = await pushed_orders(client, d, 1)
    app_worker = server.app.state.warehouses
    await app_worker.stop()
    await withdraw(client, d, order_id)
    short_lease = dataclasses.replace(app_worker.settings, lease_seconds=0.2)
    slow, late = WarehouseWorker(short_lease), WarehouseWorker(short_lease)
    slow.heartbeat.interval = 3600  # a hung instance: it renews nothing
    await sim.faults(delay=0.5)  # the call outlives the lease

    running = asyncio.create_task(slow.run_due())
    await asyncio.sleep(0.3)
    assert await late.run_due() == 1  # the expired lease is taken over
    assert await running == 1

    await assert_withdrawn_once_with_two_runs(client, d, order_id)
    assert (await sim.effects())["outbound_cancelled"] == 1
    cancels = [r for r in await sim.requests() if r["path"].endswith("/cancel")]
    assert len({c["idempotency_key"] for c in cancels}) == 1
    assert [c["replayed"] for c in cancels] == [False, True]


async def assert_withdrawn_once_with_two_runs(
    client: GraphQLHttp, d: Distribution, order_id: str
) -> None:
    """Two runs, the outcome applied once; the overtaken run, whose lease lapsed while its call
    went on, records nothing (``integrations.heartbeat``: its client stops once the answer is
    in)."""
    state = await order_state(client, d.distributor.token, order_id)
    assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
    assert [w["status"] for w in state["withdrawals"]] == ["WITHDRAWN"]
    cancels = [a["ok"] for a in state["warehouseAttempts"] if a["kind"] == "CANCEL_ORDER"]
    assert cancels == [True]
    [task] = await WarehouseTask.filter(order_id=key_of(order_id), kind=TaskKind.CANCEL_ORDER)
    assert (task.state, task.attempts, task.lease_owner) == (TaskState.DONE, 2, None)
    refunds = await WalletEntry.filter(order_id=key_of(order_id), kind=EntryKind.REFUND)
    assert len(refunds) == 1


# --- withdraws applied together -------------------------------------------------------------------


async def test_withdraws_applied_together_apply_each_once_and_a_stale_one_on_its_own(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
    sim: WarehouseSim,
) -> None:
    d = await partnered(client, make_member, sim)
    order_ids = await pushed_orders(client, d, 3)
    await server.app.state.warehouses.stop()
    for order_id in order_ids:
        await withdraw(client, d, order_id)
    keys = [key_of(o) for o in order_ids]
    claimed = await warehouse_tasks.claim_due(owner="test-batch", lease_seconds=60, limit=99)
    tasks = sorted(
        (t for t in claimed if t.order_id in keys and t.kind is TaskKind.CANCEL_ORDER),
        key=lambda t: keys.index(t.order_id or 0),
    )
    assert [t.order_id for t in tasks] == keys
    stale = keys[1]
    versions = {o.id: o.version for o in await Order.filter(id__in=keys)}

    # the second order changes once, right after the batch has read it (a command
    # running meanwhile): the batch writes nothing, and each goes on its own
    read = withdrawn_module.withdrawal_scenes
    changed: list[int] = []

    async def read_then_changed(ids: list[int]) -> Any:
        scenes = await read(ids)
        if not changed:
            changed.append(await Order.filter(id=stale).update(version=F("version") + 1))
        return scenes

    monkeypatch.setattr(withdrawn_module, "withdrawal_scenes", read_then_changed)
    attempt = "cancelled at the warehouse (CANCELLED)"
    cancelled = [Cancelled(task, attempt) for task in tasks]
    applied = await withdrawn_together(cancelled)

    if is_postgres():  # each applied at once, the stale one after reading it again
        assert changed == [1]
        assert all(w is not None and w.status is WithdrawalStatus.WITHDRAWN for w in applied)
    else:  # other engines apply each the transactional way
        assert applied == [None, None, None]
        for task in tasks:
            done = await withdrawals.withdraw_finished(task, ok=True, attempt=attempt)
            assert done is not None and done.status is WithdrawalStatus.WITHDRAWN
    # the orders moved once more: cancelled (the stale one also by the command meanwhile)
    after = {o.id: o.version for o in await Order.filter(id__in=keys)}
    assert after == {k: versions[k] + (2 if k == stale and changed else 1) for k in keys}

    # once applied, applying again writes nothing
    assert await withdrawn_together(cancelled) == [None, None, None]
    await assert_withdrawn_once(client, d, order_ids)
    await assert_outcome_recorded_once(keys, [t.id for t in tasks])


async def assert_outcome_recorded_once(order_ids: list[int], task_ids: list[int]) -> None:
    """Each task DONE with its one attempt; each order one CANCELLED event; each withdrawal
    one WITHDRAWN event."""
    for order_id, task_id in zip(order_ids, task_ids, strict=True):
        task = await WarehouseTask.get(id=task_id)
        assert (task.state, task.lease_owner) == (TaskState.DONE, None)
        assert await WarehouseAttempt.filter(task_id=task_id).count() == 1
        changed = await Event.filter(type="ORDER_STATUS_CHANGED", subject_id=str(order_id))
        assert [e.payload["to"] for e in changed].count(OrderStatus.CANCELLED.value) == 1
        [withdrawal] = await Withdrawal.filter(order_id=order_id)
        told = await Event.filter(type="WITHDRAWAL_STATUS_CHANGED", subject_id=str(withdrawal.id))
        assert [e.payload["status"] for e in told].count(WithdrawalStatus.WITHDRAWN.value) == 1


async def test_an_order_shipped_before_its_cancel_is_applied_fails_without_a_refund(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    [order_id] = await pushed_orders(client, d, 1)
    worker = server.app.state.warehouses
    await worker.stop()
    await withdraw(client, d, order_id)
    # the warehouse's SHIPPED crosses the withdraw: the order ships before the cancel is applied
    async with transaction():
        order = await Order.get(id=key_of(order_id))
        shipped = {"shipped_at": datetime.now(UTC)}
        await transition(order, OrderStatus.SHIPPED, actor_user_id=None, changes=shipped)

    assert await worker.run_due() >= 1  # the warehouse answers the cancel all the same
    state = await order_state(client, d.distributor.token, order_id)
    assert (state["status"], state["refundedAmount"]) == ("SHIPPED", "0.00"), state
    [withdrawal] = state["withdrawals"]
    assert (withdrawal["status"], withdrawal["failure"]) == ("WITHDRAW_FAILED", SHIPPED_FIRST)
    cancels = [a["ok"] for a in state["warehouseAttempts"] if a["kind"] == "CANCEL_ORDER"]
    assert cancels == [True]
    assert not await WalletEntry.filter(order_id=key_of(order_id), kind=EntryKind.REFUND)
