"""Distribution when things go wrong: a warehouse answering 5xx, timing out or losing answers;
an instance dying mid-withdraw; two workers racing for the same tasks; forged, stale, replayed
and malformed callbacks; lost callbacks caught up by reconciliation; bad input.

Every test runs the real app over HTTP against the warehouse simulator; the worker's timings
are the fast ones of ``FAST_WAREHOUSE`` (a test parametrizes ``overrides`` to change them)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from domain.distribution import pushes as distribution_orders
from domain.distribution.models import (
    TaskKind,
    TaskState,
    ThirdPartyWarehouse,
    WarehouseCallbackReceipt,
    WarehouseOrder,
    WarehouseTask,
)
from integrations.warehouses.protocol import (
    HEADER_API_KEY,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PATH_OUTBOUND_ORDERS,
    format_time,
    sign_callback,
)
from integrations.warehouses.worker import RECONCILE_CALLS, WarehouseWorker
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WAREHOUSE_KEY,
    Distribution,
    WarehouseSim,
    eventually,
    manual_order,
    order_state,
    paid_order,
    partnered,
    push,
    warehouse_reference,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import ok

TASK_RUNS = FAST_WAREHOUSE["warehouse_task_attempts"]
CALLS_PER_RUN = FAST_WAREHOUSE["warehouse_retries"] + 1  # the client's own retries

WITHDRAW = """mutation($o: ID!) { withdrawOrder(orderId: $o, reason: "changed mind")
  { withdrawal { id status } userErrors { code field message } } }"""
RETRY = """mutation($w: ID!) { retryWithdrawal(withdrawalId: $w)
  { withdrawal { id status } userErrors { code field message } } }"""


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings on top of ``FAST_WAREHOUSE``; parametrized by the tests that need others."""
    return {}


@pytest.fixture
async def server(make_server: ServerFactory, overrides: dict[str, Any]) -> RunningServer:
    return await make_server(**{**FAST_WAREHOUSE, **overrides})


# --- helpers ----------------------------------------------------------------------------------


def push_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["distribution"] is not None and s["distribution"]["pushStatus"] == status


def withdrawal_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (
        s["distribution"] is not None and s["distribution"]["withdrawalStatus"] == status
    )


def attempts(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in state["warehouseAttempts"] if a["kind"] == kind]


async def withdraw(client: GraphQLHttp, token: str, order_id: str) -> dict[str, Any]:
    return (await client.data(WITHDRAW, {"o": order_id}, token=token))["withdrawOrder"]


async def pushed_order(client: GraphQLHttp, d: Distribution) -> str:
    """A paid order pushed to the warehouse (PUSHED) by the running worker."""
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    await eventually(lambda: order_state(client, d.supplier.token, order_id), push_is("PUSHED"))
    return order_id


async def pushed_by_hand(client: GraphQLHttp, d: Distribution, worker: WarehouseWorker) -> str:
    """A paid order pushed (PUSHED) by one round of a stopped ``worker``."""
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    await worker.run_due()
    state = await order_state(client, d.supplier.token, order_id)
    assert state["distribution"]["pushStatus"] == "PUSHED", state
    return order_id


async def timeline(client: GraphQLHttp, d: Distribution, order_id: str) -> list[str]:
    """The statuses of the order's timeline, as the distributor sees it."""
    order = (
        await client.data(
            "query($o: ID!) { order(id: $o) { timeline { toStatus } } }",
            {"o": order_id},
            token=d.distributor.token,
        )
    )["order"]
    return [t["toStatus"] for t in order["timeline"]]


async def both_sides(
    client: GraphQLHttp, d: Distribution, order_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Wait until the distributor and the supplier both see ``done``; the distributor's view."""
    seen = {}
    for token in (d.supplier.token, d.distributor.token):
        seen[token] = await eventually(lambda t=token: order_state(client, t, order_id), done)
    return seen[d.distributor.token]


async def distributor_wallet(client: GraphQLHttp, d: Distribution) -> tuple[str, list[dict]]:
    """The distributor's wallet with the supplier: (balance, entries)."""
    wallets = (
        await client.data("{ wallets { nodes { id balance } } }", token=d.distributor.token)
    )["wallets"]["nodes"]
    assert len(wallets) == 1, wallets
    entries = (
        await client.data(
            "query($w: ID!) { walletEntries(walletId: $w) { nodes { kind amount orderId } } }",
            {"w": wallets[0]["id"]},
            token=d.distributor.token,
        )
    )["walletEntries"]["nodes"]
    return wallets[0]["balance"], entries


def refunds(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "REFUND"]


async def tasks_of(order_id: str, kind: TaskKind) -> list[WarehouseTask]:
    return await WarehouseTask.filter(order_id=key_of(order_id), kind=kind).order_by("id")


async def api_calls(sim: WarehouseSim, path_end: str) -> list[dict[str, Any]]:
    return [r for r in await sim.requests() if r["path"].endswith(path_end)]


# --- an unreachable, slow or forgetful warehouse ----------------------------------------------


async def test_withdraw_against_a_warehouse_answering_5xx_fails_after_every_run_then_retry_succeeds(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await pushed_order(client, d)
    await sim.faults(fail_next=1000, status=503)

    first = await withdraw(client, d.distributor.token, order_id)
    assert first["userErrors"] == [] and first["withdrawal"]["status"] == "WITHDRAWING"
    state = await both_sides(client, d, order_id, withdrawal_is("WITHDRAW_FAILED"))
    for token in (d.supplier.token, d.distributor.token):
        seen = await order_state(client, token, order_id)
        assert seen["status"] == "AWAITING_SHIPPING" and seen["refundedAmount"] == "0.00"
        failure = seen["withdrawals"][0]["failure"]
        assert "warehouse unreachable" in failure and "503" in failure, failure
    cancels = attempts(state, "CANCEL_ORDER")
    assert len(cancels) == TASK_RUNS and not any(a["ok"] for a in cancels)
    calls = await api_calls(sim, "/cancel")
    assert len(calls) == TASK_RUNS * CALLS_PER_RUN
    assert {c["status"] for c in calls} == {503}
    assert (await sim.effects())["outbound_cancelled"] == 0
    balance, entries = await distributor_wallet(client, d)
    assert balance == "0.00" and refunds(entries) == []

    await sim.faults(reset=True)
    retried = await ok(client, RETRY, {"w": first["withdrawal"]["id"]}, token=d.distributor.token)
    assert retried["withdrawal"]["status"] == "WITHDRAWING"
    state = await both_sides(client, d, order_id, withdrawal_is("WITHDRAWN"))
    assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
    assert [(w["status"], w["resolution"]) for w in state["withdrawals"]] == [
        ("WITHDRAW_FAILED", "RETRIED"),
        ("WITHDRAWN", None),
    ]
    assert (await sim.effects())["outbound_cancelled"] == 1
    balance, entries = await distributor_wallet(client, d)
    assert balance == "8.00" and len(refunds(entries)) == 1


@pytest.mark.parametrize("overrides", [{"warehouse_timeout": 0.3}], ids=["timeout-0.3s"])
async def test_withdraw_timing_out_or_losing_answers_fails_and_the_retry_cancels_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    slow = await pushed_order(client, d)
    forgetful = await pushed_order(client, d)

    # Timeouts: the simulator waits 0.6 s, then reads the body; we gave up after 0.3 s and
    # closed the connection, so it never acts (it logs ClientDisconnect).
    await sim.faults(delay=0.6)
    first = await withdraw(client, d.distributor.token, slow)
    state = await both_sides(client, d, slow, withdrawal_is("WITHDRAW_FAILED"))
    assert state["status"] == "AWAITING_SHIPPING"
    failure = state["withdrawals"][0]["failure"]
    assert "warehouse unreachable" in failure and "Timeout" in failure, failure
    assert [a["ok"] for a in attempts(state, "CANCEL_ORDER")] == [False] * TASK_RUNS
    calls = await api_calls(sim, f"/{warehouse_reference(slow)}/cancel")
    assert len(calls) == TASK_RUNS * CALLS_PER_RUN
    assert len({c["idempotency_key"] for c in calls}) == 1
    await sim.faults(reset=True)
    await asyncio.sleep(0.7)  # let the last slow call end at the simulator
    assert all(
        c["status"] is None for c in await api_calls(sim, f"/{warehouse_reference(slow)}/cancel")
    )
    assert (await sim.effects())["outbound_cancelled"] == 0

    await ok(client, RETRY, {"w": first["withdrawal"]["id"]}, token=d.distributor.token)
    state = await both_sides(client, d, slow, withdrawal_is("WITHDRAWN"))
    assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
    assert (await sim.effects())["outbound_cancelled"] == 1

    # Lost answers: the warehouse cancels on the first call, every answer of both runs is
    # lost (the repeats, same Idempotency-Key, are replays); the retry (a new task, a new key)
    # finds the order cancelled already and does not cancel it again.
    await sim.faults(fail_after_next=TASK_RUNS * CALLS_PER_RUN)
    second = await withdraw(client, d.distributor.token, forgetful)
    state = await both_sides(client, d, forgetful, withdrawal_is("WITHDRAW_FAILED"))
    assert "warehouse unreachable" in state["withdrawals"][0]["failure"]
    calls = await api_calls(sim, f"/{warehouse_reference(forgetful)}/cancel")
    assert [(c["fault"], c["replayed"]) for c in calls] == [("fail_after", False)] + [
        ("fail_after", True)
    ] * (TASK_RUNS * CALLS_PER_RUN - 1)
    assert (await sim.effects())["outbound_cancelled"] == 2
    await ok(client, RETRY, {"w": second["withdrawal"]["id"]}, token=d.distributor.token)
    state = await both_sides(client, d, forgetful, withdrawal_is("WITHDRAWN"))
    assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
    last = (await api_calls(sim, f"/{warehouse_reference(forgetful)}/cancel"))[-1]
    assert (last["status"], last["replayed"], last["fault"]) == (200, False, None)
    assert (await sim.effects())["outbound_cancelled"] == 2

    balance, entries = await distributor_wallet(client, d)
    assert balance == "16.00" and len(refunds(entries)) == 2


async def test_a_push_whose_answer_is_lost_lands_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)

    # one answer lost: the client's retry (same Idempotency-Key) gets the stored answer
    await sim.faults(fail_after_next=1)
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    state = await eventually(
        lambda: order_state(client, d.supplier.token, order_id),
        lambda s: s["distribution"]["pushStatus"] in ("PUSHED", "PUSH_FAILED"),
    )
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert state["distribution"]["warehouseOrderId"] == "WO-1"
    assert (await sim.effects())["outbound_created"] == 1
    posts = await api_calls(sim, PATH_OUTBOUND_ORDERS)
    assert [(p["fault"], p["replayed"]) for p in posts] == [("fail_after", False), (None, True)]
    assert len({p["idempotency_key"] for p in posts}) == 1
    assert [a["ok"] for a in attempts(state, "PUSH_ORDER")] == [True]

    # every answer of the task's first run lost: its next run (same key) gets the order
    await sim.faults(fail_after_next=CALLS_PER_RUN)
    second = await paid_order(client, d)
    assert (await push(client, d, second))["userErrors"] == []
    state = await eventually(
        lambda: order_state(client, d.supplier.token, second),
        lambda s: s["distribution"]["pushStatus"] in ("PUSHED", "PUSH_FAILED"),
    )
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert state["distribution"]["warehouseOrderId"] == "WO-2"
    assert [a["ok"] for a in attempts(state, "PUSH_ORDER")] == [False, True]
    assert (await sim.effects())["outbound_created"] == 2


# --- crashes, leases and concurrent workers ---------------------------------------------------


async def test_a_withdraw_interrupted_by_a_restart_completes_once_on_the_next_server(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    make_server: ServerFactory,
    sim: WarehouseSim,
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await pushed_order(client, d)
    await server.app.state.warehouses.stop()
    answered = await withdraw(client, d.distributor.token, order_id)
    assert answered["withdrawal"]["status"] == "WITHDRAWING"
    await server.stop()  # the instance goes down with the withdraw queued

    restarted = await make_server(**FAST_WAREHOUSE)
    http = GraphQLHttp(restarted.url)
    try:
        state = await both_sides(http, d, order_id, withdrawal_is("WITHDRAWN"))
        assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
        assert [a["ok"] for a in attempts(state, "CANCEL_ORDER")] == [True]
        balance, entries = await distributor_wallet(http, d)
        assert balance == "8.00"
        assert refunds(entries) == [{"kind": "REFUND", "amount": "8.00", "orderId": order_id}]
    finally:
        await http.close()
    assert (await sim.effects())["outbound_cancelled"] == 1
    [task] = await tasks_of(order_id, TaskKind.CANCEL_ORDER)
    assert (task.state, task.attempts, task.lease_owner) == (TaskState.DONE, 1, None)


async def test_a_task_leased_by_a_dead_worker_is_taken_over_when_the_lease_expires(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await pushed_order(client, d)
    worker = server.app.state.warehouses
    await worker.stop()
    await withdraw(client, d.distributor.token, order_id)
    [task] = await tasks_of(order_id, TaskKind.CANCEL_ORDER)

    # another instance took the lease, cancelled at the warehouse, and died before recording it
    await WarehouseTask.filter(id=task.id).update(
        lease_owner="worker-dead", lease_until=datetime.now(UTC) + timedelta(seconds=60), attempts=1
    )
    async with httpx.AsyncClient(base_url=sim.url) as warehouse:
        sent = await warehouse.post(
            f"{PATH_OUTBOUND_ORDERS}/{warehouse_reference(order_id)}/cancel",
            json={},
            headers={HEADER_API_KEY: WAREHOUSE_KEY, HEADER_IDEMPOTENCY_KEY: f"sg-task-{task.id}"},
        )
    assert sent.status_code == 200
    assert (await sim.effects())["outbound_cancelled"] == 1

    # while its lease runs nobody else takes the task
    await worker.run_due()
    held = await WarehouseTask.get(id=task.id)
    assert (held.lease_owner, held.attempts, held.state) == ("worker-dead", 1, TaskState.PENDING)
    state = await order_state(client, d.distributor.token, order_id)
    assert state["distribution"]["withdrawalStatus"] == "WITHDRAWING"

    # the lease expires: a live worker takes over, the warehouse replays its answer
    await WarehouseTask.filter(id=task.id).update(
        lease_until=datetime.now(UTC) - timedelta(seconds=1)
    )
    await worker.start()
    state = await both_sides(client, d, order_id, withdrawal_is("WITHDRAWN"))
    assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
    taken = await WarehouseTask.get(id=task.id)
    assert (taken.state, taken.attempts, taken.lease_owner) == (TaskState.DONE, 2, None)
    last = (await api_calls(sim, "/cancel"))[-1]
    assert (last["idempotency_key"], last["replayed"]) == (f"sg-task-{task.id}", True)
    assert (await sim.effects())["outbound_cancelled"] == 1
    balance, entries = await distributor_wallet(client, d)
    assert balance == "8.00" and len(refunds(entries)) == 1


async def test_two_workers_racing_for_the_same_due_tasks_run_each_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    first = server.app.state.warehouses
    await first.stop()
    order_ids = [await paid_order(client, d) for _ in range(5)]
    assert (await push(client, d, *order_ids))["userErrors"] == []
    second = WarehouseWorker(first.settings)

    taken = await asyncio.gather(first.run_due(), second.run_due())
    assert sum(taken) >= 5, taken  # (tasks of other tests may be due too)
    for order_id in order_ids:
        state = await order_state(client, d.supplier.token, order_id)
        assert state["distribution"]["pushStatus"] == "PUSHED"
        assert [a["ok"] for a in attempts(state, "PUSH_ORDER")] == [True]
        [task] = await tasks_of(order_id, TaskKind.PUSH_ORDER)
        assert (task.state, task.attempts) == (TaskState.DONE, 1)
    assert (await sim.effects())["outbound_created"] == 5
    posts = await api_calls(sim, PATH_OUTBOUND_ORDERS)
    assert len(posts) == 5 and not any(p["replayed"] for p in posts)
    assert len({p["idempotency_key"] for p in posts}) == 5


async def test_a_lease_expiring_mid_call_lets_a_second_worker_in_but_the_push_applies_once(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    app_worker = server.app.state.warehouses
    await app_worker.stop()
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    short_lease = dataclasses.replace(app_worker.settings, lease_seconds=0.2)
    slow, late = WarehouseWorker(short_lease), WarehouseWorker(short_lease)
    slow.heartbeat.interval = 3600  # a hung instance: it renews nothing
    await sim.faults(delay=0.5)  # the call outlives the lease (but not the 1 s timeout)

    running = asyncio.create_task(slow.run_due())
    await asyncio.sleep(0.3)
    assert await late.run_due() >= 1  # the expired lease is taken over
    await running
    state = await order_state(client, d.supplier.token, order_id)
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert state["distribution"]["warehouseOrderId"] == "WO-1"
    # both calls were made, one order was created, the outcome applied once; the overtaken
    # run, whose lease lapsed while its call went on, records nothing
    assert [a["ok"] for a in attempts(state, "PUSH_ORDER")] == [True]
    [task] = await tasks_of(order_id, TaskKind.PUSH_ORDER)
    assert (task.state, task.attempts, task.lease_owner) == (TaskState.DONE, 2, None)
    posts = await api_calls(sim, PATH_OUTBOUND_ORDERS)
    assert len({p["idempotency_key"] for p in posts}) == 1
    assert [p["replayed"] for p in posts] == [False, True]
    assert (await sim.effects())["outbound_created"] == 1


async def test_a_cancel_that_waited_for_a_running_push_still_gets_every_run(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    worker = server.app.state.warehouses
    await worker.stop()
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    [push_task] = await tasks_of(order_id, TaskKind.PUSH_ORDER)
    # another instance is running the push: the withdraw cannot drop it and has to wait
    await WarehouseTask.filter(id=push_task.id).update(
        lease_owner="worker-busy", lease_until=datetime.now(UTC) + timedelta(seconds=60), attempts=1
    )
    answered = await withdraw(client, d.distributor.token, order_id)
    assert answered["withdrawal"]["status"] == "WITHDRAWING"
    for _ in range(3):
        await asyncio.sleep(0.25)
        await worker.run_due()  # the cancel sees the push under way and waits 0.2 s
    # the push lands (here: the lease lapses and this worker runs it), then the warehouse fails
    await WarehouseTask.filter(id=push_task.id).update(
        lease_until=datetime.now(UTC) - timedelta(seconds=1)
    )
    await worker.run_due()  # (the cancel is not due again for 0.2 s)
    state = await order_state(client, d.supplier.token, order_id)
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert state["distribution"]["withdrawalStatus"] == "WITHDRAWING"
    await sim.faults(fail_next=1000, status=503)
    await worker.start()

    state = await both_sides(client, d, order_id, withdrawal_is("WITHDRAW_FAILED"))
    assert len(attempts(state, "CANCEL_ORDER")) == TASK_RUNS


# --- callbacks --------------------------------------------------------------------------------


def outbound_callback(reference: str, status: str = "SHIPPED", **fields: Any) -> bytes:
    payload = {
        "event_id": str(uuid.uuid4()),
        "type": "outbound.status",
        "reference": reference,
        "status": status,
        "carrier": "DHL",
        "tracking_number": "JD-FORGED",
        "reason": None,
        "occurred_at": format_time(datetime.now(UTC)),
        **fields,
    }
    return json.dumps(payload).encode()


async def post_callback(
    url: str, body: bytes, *, secret: str | None, timestamp: int | None = None
) -> httpx.Response:
    """POST a callback signed with ``secret`` (no signature headers at all without one)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        ts = int(time.time()) if timestamp is None else timestamp
        headers |= {HEADER_TIMESTAMP: str(ts), HEADER_SIGNATURE: sign_callback(secret, ts, body)}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, content=body, headers=headers)


async def test_callbacks_forged_stale_unknown_or_malformed_are_refused_and_replays_ignored(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    order_id = await pushed_order(client, d)
    assert d.third_party_warehouse_id is not None
    third_party_warehouse = await ThirdPartyWarehouse.get(id=key_of(d.third_party_warehouse_id))
    secret = third_party_warehouse.callback_secret
    url = f"{server.url}/webhooks/warehouses/{third_party_warehouse.id}"
    before = await order_state(client, d.supplier.token, order_id)
    tolerance = int(server.settings.warehouse_callback_tolerance)
    shipped = outbound_callback(warehouse_reference(order_id))

    async def refused(response: httpx.Response, status: int, reason: str | None = None) -> None:
        """Refused, nothing written, and (``reason``: the cause, logged only) answered exactly
        as an unknown warehouse is: the answer tells no cause, nor that the warehouse exists."""
        assert response.status_code == status, response.text
        if status == 401:
            assert response.json() == {"status": "unauthorized"}
        assert await order_state(client, d.supplier.token, order_id) == before
        assert not await WarehouseCallbackReceipt.filter(
            third_party_warehouse_id=third_party_warehouse.id
        ).exists()

    await refused(await post_callback(url, shipped, secret="not-the-secret"), 401, "mismatch")
    await refused(await post_callback(url, shipped, secret=None), 401, "missing")
    old = int(time.time()) - tolerance - 30
    await refused(await post_callback(url, shipped, secret=secret, timestamp=old), 401, "expired")
    ahead = int(time.time()) + tolerance + 30
    await refused(await post_callback(url, shipped, secret=secret, timestamp=ahead), 401, "future")
    # a body changed after it was signed
    ts = int(time.time())
    async with httpx.AsyncClient(timeout=10) as http:
        tampered = await http.post(
            url,
            content=shipped.replace(b"JD-FORGED", b"JD-TAMPER"),
            headers={
                HEADER_TIMESTAMP: str(ts),
                HEADER_SIGNATURE: sign_callback(secret, ts, shipped),
            },
        )
    await refused(tampered, 401, "mismatch")
    for unknown in ("999999999", "not-a-number"):
        answer = await post_callback(
            f"{server.url}/webhooks/warehouses/{unknown}", shipped, secret=secret
        )
        await refused(answer, 401)
        assert answer.json()["status"] == "unauthorized"
    for malformed in (b"{not json", b"[]", json.dumps({"event_id": "e-1"}).encode()):
        answer = await post_callback(url, malformed, secret=secret)
        await refused(answer, 400)
        assert answer.json()["status"] == "invalid"
    stranger = outbound_callback("424242424242")
    answer = await post_callback(url, stranger, secret=secret)
    await refused(answer, 404)
    assert answer.json()["status"] == "unknown"

    # the real one, then its redelivery (byte for byte, and re-signed now): applied once
    shipped_by_sim = await sim.advance(order_id, "SHIPPED", carrier="UPS", tracking_number="1Z1")
    assert shipped_by_sim["callback_status"] == 200
    event_id = shipped_by_sim["event_id"]
    for fresh in (False, True):
        again = await sim.redeliver(event_id, fresh_timestamp=fresh)
        assert again.json()["callback_status"] == 200
    # same event id, other content: still a duplicate, nothing changes
    replay = outbound_callback(
        warehouse_reference(order_id), event_id=event_id, tracking_number="1Z-OTHER"
    )
    answer = await post_callback(url, replay, secret=secret)
    assert (answer.status_code, answer.json()) == (200, {"status": "duplicate"})
    assert (
        await WarehouseCallbackReceipt.filter(
            third_party_warehouse_id=third_party_warehouse.id, event_id=event_id
        ).count()
        == 1
    )
    for token in (d.supplier.token, d.distributor.token):
        state = await order_state(client, token, order_id)
        assert (state["status"], state["carrier"], state["trackingNumber"]) == (
            "SHIPPED",
            "UPS",
            "1Z1",
        )
    assert [t for t in await timeline(client, d, order_id) if t == "SHIPPED"] == ["SHIPPED"]


async def test_a_callback_for_another_connections_order_is_unknown(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    mine = await partnered(client, make_member, sim)
    order_id = await pushed_order(client, mine)
    other = await partnered(
        client, make_member, sim
    )  # another supplier, its own third-party warehouse
    assert other.third_party_warehouse_id is not None
    third_party_warehouse = await ThirdPartyWarehouse.get(id=key_of(other.third_party_warehouse_id))
    before = await order_state(client, mine.supplier.token, order_id)
    answer = await post_callback(
        f"{server.url}/webhooks/warehouses/{third_party_warehouse.id}",
        outbound_callback(warehouse_reference(order_id)),
        secret=third_party_warehouse.callback_secret,
    )
    assert answer.status_code == 404 and answer.json()["status"] == "unknown"
    assert await order_state(client, mine.supplier.token, order_id) == before
    assert not await WarehouseCallbackReceipt.filter(
        third_party_warehouse_id=third_party_warehouse.id
    ).exists()


# --- reconciliation ---------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"warehouse_reconcile_after": 0.3}], ids=["after-0.3s"])
async def test_reconciliation_catches_up_a_lost_shipped_callback(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    worker = server.app.state.warehouses
    await worker.stop()  # run and reconcile by hand, not in the worker's loop
    d = await partnered(client, make_member, sim)
    order_id = await pushed_by_hand(client, d, worker)
    lost = await sim.advance(
        order_id, "SHIPPED", carrier="UPS", tracking_number="1Z999", deliver=False
    )
    assert lost["callback_status"] is None
    state = await order_state(client, d.supplier.token, order_id)
    assert state["status"] == "AWAITING_SHIPPING"

    await asyncio.sleep(server.settings.warehouse_reconcile_after + 0.1)
    # records of earlier tests whose warehouses are gone are due too, and a round takes a
    # batch of the oldest: rounds go on (each moves the records it tried to the back) until
    # this order has been fetched
    for _ in range(50):
        await worker.reconcile()
        if (await order_state(client, d.supplier.token, order_id))["status"] == "SHIPPED":
            break
    for token in (d.supplier.token, d.distributor.token):
        state = await order_state(client, token, order_id)
        assert state["status"] == "SHIPPED"
        assert (state["carrier"], state["trackingNumber"]) == ("UPS", "1Z999")
        assert state["distribution"]["warehouseStatus"] == "SHIPPED"
    assert [t for t in await timeline(client, d, order_id) if t == "SHIPPED"] == ["SHIPPED"]
    # a shipped order is not fetched again
    due = await distribution_orders.due_for_reconciliation(
        older_than=datetime.now(UTC), limit=100_000
    )
    assert key_of(order_id) not in {record.order_id for record in due}


async def test_reconciliation_is_not_starved_by_orders_whose_warehouse_is_down(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    worker = server.app.state.warehouses
    await worker.stop()
    # supplier A's warehouse takes an order, then goes offline
    offline = warehouse_simulator()
    other_sim = await anext(offline)
    a = await partnered(client, make_member, other_sim)
    await pushed_by_hand(client, a, worker)
    await offline.aclose()
    # supplier B's order ships, but the callback is lost
    b = await partnered(client, make_member, sim)
    order_id = await pushed_by_hand(client, b, worker)
    await sim.advance(order_id, "SHIPPED", carrier="UPS", tracking_number="1Z2", deliver=False)
    await asyncio.sleep(0.4)

    # One record a round (the default batch of 20 behaves alike with 20 orders at A): as many
    # rounds as there are due records must reach every one of them.
    narrow = WarehouseWorker(
        dataclasses.replace(worker.settings, batch=1, reconcile_after=0.3, retries=0)
    )
    due = await distribution_orders.due_for_reconciliation(
        older_than=datetime.now(UTC), limit=100_000
    )
    for _ in range(len(due) + 1):
        await narrow.reconcile()
    state = await order_state(client, b.supplier.token, order_id)
    assert state["status"] == "SHIPPED"


async def test_a_warehouse_that_does_not_answer_costs_a_round_two_calls_and_no_retries(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    """A warehouse that is down used to be called for every due record of a round, each call
    retried: 4 attempts a record, 80 a round of 20, every minute an idle instance ran. Now one
    round makes at most RECONCILE_CALLS attempts to it, and still moves each record it took to
    the back of the queue."""
    worker = server.app.state.warehouses
    await worker.stop()
    d = await partnered(client, make_member, sim)
    mine = [await pushed_by_hand(client, d, worker) for _ in range(4)]
    await asyncio.sleep(0.4)
    calls: dict[str, int] = {}

    def unreachable(request: httpx.Request) -> httpx.Response:
        where = request.url.netloc.decode()
        calls[where] = calls.get(where, 0) + 1
        raise httpx.ConnectError("connection refused", request=request)

    every_due = dataclasses.replace(
        worker.settings, batch=100_000, reconcile_after=0.3, retries=3, backoff=0.01
    )
    down = WarehouseWorker(every_due, transport=httpx.MockTransport(unreachable))
    before = datetime.now(UTC)
    try:
        await down.reconcile()
    finally:
        await down.stop()
    # every warehouse with due records (earlier tests' too) got RECONCILE_CALLS attempts at most
    assert calls and max(calls.values()) <= RECONCILE_CALLS, calls
    records = await WarehouseOrder.filter(order_id__in=[key_of(o) for o in mine])
    assert len(records) == 4 and all(r.checked_at >= before for r in records)
    # the warehouse back, the next round fetches them
    for order_id in mine[:1]:
        await sim.advance(order_id, "SHIPPED", carrier="UPS", tracking_number="1Z4", deliver=False)
    await asyncio.sleep(0.4)
    up = WarehouseWorker(every_due)
    try:
        await up.reconcile()
    finally:
        await up.stop()
    assert (await order_state(client, d.supplier.token, mine[0]))["status"] == "SHIPPED"


async def test_one_reconciliation_round_at_a_time_and_a_slow_warehouse_holds_up_only_its_own(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    worker = server.app.state.warehouses
    await worker.stop()
    slowly = warehouse_simulator()
    slow_sim = await anext(slowly)
    try:
        a = await partnered(client, make_member, slow_sim)
        await pushed_by_hand(client, a, worker)
        b = await partnered(client, make_member, sim)
        order_id = await pushed_by_hand(client, b, worker)
        await sim.advance(order_id, "SHIPPED", carrier="UPS", tracking_number="1Z3", deliver=False)
        await slow_sim.faults(delay=2.0)
        await asyncio.sleep(0.4)
        every_due = dataclasses.replace(
            worker.settings, batch=100_000, reconcile_after=0.3, retries=0, timeout=10
        )
        first, second = WarehouseWorker(every_due), WarehouseWorker(every_due)
        running = asyncio.create_task(first.reconcile())
        # B's order is reconciled while the call to A's slow warehouse is still in flight
        await eventually(
            lambda: order_state(client, b.supplier.token, order_id),
            lambda state: state["status"] == "SHIPPED",
            timeout=10,
        )
        assert not running.done()
        assert await second.reconcile() == 0  # the round is another instance's
        assert await running >= 2
        await first.stop()
        await second.stop()
        # each record fetched once, counted at the warehouses
        for warehouse in (slow_sim, sim):
            fetched = [r for r in await warehouse.requests() if r["method"] == "GET"]
            assert len(fetched) == 1, fetched
    finally:
        await slowly.aclose()


# --- bad input --------------------------------------------------------------------------------


async def test_bad_withdraws_and_pushes_are_refused_with_typed_errors_and_change_nothing(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: WarehouseSim
) -> None:
    d = await partnered(client, make_member, sim)
    stranger = await make_member("BUYER")

    async def unchanged_after(
        call: Callable[[], Any], order_id: str, expected: list[dict[str, Any]]
    ) -> None:
        before = await order_state(client, d.supplier.token, order_id)
        tasks = await WarehouseTask.filter(order_id=key_of(order_id)).count()
        errors = await call()
        assert [{k: e[k] for k in ("code", "field")} for e in errors] == expected, errors
        assert all(e["message"] for e in errors)
        assert await order_state(client, d.supplier.token, order_id) == before
        assert await WarehouseTask.filter(order_id=key_of(order_id)).count() == tasks

    def withdrawing(token: str, order_id: str) -> Callable[[], Any]:
        async def call() -> list[dict[str, Any]]:
            return (await withdraw(client, token, order_id))["userErrors"]

        return call

    def pushing(*order_ids: str) -> Callable[[], Any]:
        async def call() -> list[dict[str, Any]]:
            return (await push(client, d, *order_ids))["userErrors"]

        return call

    unpaid = await manual_order(client, d)
    await unchanged_after(
        withdrawing(d.distributor.token, unpaid),
        unpaid,
        [{"code": "ILLEGAL_TRANSITION", "field": "orderId"}],
    )

    pushed = await pushed_order(client, d)
    await unchanged_after(
        withdrawing(stranger.token, pushed), pushed, [{"code": "NOT_FOUND", "field": "orderId"}]
    )
    await unchanged_after(
        withdrawing(d.supplier.token, pushed), pushed, [{"code": "FORBIDDEN", "field": None}]
    )
    await unchanged_after(
        pushing(pushed), pushed, [{"code": "ILLEGAL_TRANSITION", "field": "orderIds.0"}]
    )
    await sim.advance(pushed, "SHIPPED")
    await unchanged_after(
        withdrawing(d.distributor.token, pushed),
        pushed,
        [{"code": "ILLEGAL_TRANSITION", "field": "orderId"}],
    )

    worker = server.app.state.warehouses
    await worker.stop()
    pushing_now = await paid_order(client, d)
    assert (await push(client, d, pushing_now))["userErrors"] == []
    state = await order_state(client, d.supplier.token, pushing_now)
    assert state["distribution"]["pushStatus"] == "PUSHING"
    await unchanged_after(
        pushing(pushing_now), pushing_now, [{"code": "ILLEGAL_TRANSITION", "field": "orderIds.0"}]
    )
    await unchanged_after(
        pushing(pushing_now, pushing_now),
        pushing_now,
        [{"code": "INVALID", "field": "orderIds"}],
    )
    # leave nothing pending for later tests
    await worker.start()
    await eventually(lambda: order_state(client, d.supplier.token, pushing_now), push_is("PUSHED"))
    assert (await sim.effects())["outbound_created"] == 2
