"""The store webhook inbox: accepted at once, taken in once, whatever crashes or fails between."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.orders.models import InboxState, Order, WebhookReceipt
from domain.stores import inbox as store_inbox
from integrations.stores import inbox as inbox_module
from integrations.stores.inbox import InboxSettings, StoreInboxWorker
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import RunningServer
from tests.test_order_flow import connect_store, sim
from tests.test_store_integration import Sim

__all__ = ["sim"]


async def _row(event_id: str | None = None, **where: Any) -> WebhookReceipt:
    rows = await WebhookReceipt.filter(**where).order_by("-id")
    if event_id is not None:
        rows = [r for r in rows if r.event_id == event_id]
    return rows[0]


async def _store() -> int:
    """A store of a new buyer: receipts reference a real store."""
    from domain.organisations import commands as organisations
    from domain.organisations.models import OrganisationKind
    from domain.stores.models import Store, StorePlatform

    email = f"{uuid.uuid4().hex[:12]}@example.test"
    buyer, _ = await organisations.create_organisation(
        name=f"Inbox {email}", kind=OrganisationKind.BUYER, owner_email=email, owner_name="O"
    )
    store = await Store.create(
        buyer_id=buyer.id,
        name="Inbox",
        platform=StorePlatform.OTHER,
        api_url="http://127.0.0.1:9/",
        access_token="token",
        webhook_secret="secret",
    )
    return store.id


async def _settled(row_id: int, timeout: float = 10) -> WebhookReceipt:
    """The row once it is no longer PENDING."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await WebhookReceipt.get(id=row_id)
        if row.state != InboxState.PENDING:
            return row
        assert asyncio.get_running_loop().time() < deadline, f"row {row_id} still pending"
        await asyncio.sleep(0.02)


async def _delivered(server: RunningServer, sim: Sim, store: dict) -> tuple[dict, WebhookReceipt]:
    tee = await sim.product("Tee")
    made = await sim.order(
        tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}"
    )
    assert made["webhook_status"] == 202
    await server.store_inbox_drained()
    return made, await _row(store_id=key_of(store["store"]["id"]))


async def test_a_row_run_again_after_a_crash_makes_no_second_order(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    made, row = await _delivered(server, sim, store)
    assert row.state == InboxState.DONE and row.order_id is not None and row.attempts == 1

    # the instance died after the order committed and before the row was marked: its lease
    # expired, so the row is due again
    past = datetime.now(UTC) - timedelta(minutes=5)
    await WebhookReceipt.filter(id=row.id).update(
        state=InboxState.PENDING, lease_owner="dead-instance", lease_until=past, due_at=past
    )
    server.app.state.store_inbox.wake()
    again = await _settled(row.id)
    assert again.state == InboxState.DONE and again.order_id == row.order_id
    assert again.attempts == 2
    assert (
        await Order.filter(
            store_id=key_of(store["store"]["id"]), store_order_id=str(made["order"]["id"])
        ).count()
        == 1
    )


async def test_a_live_lease_is_left_alone(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    _, row = await _delivered(server, sim, store)
    held = datetime.now(UTC) + timedelta(minutes=5)
    await WebhookReceipt.filter(id=row.id).update(
        state=InboxState.PENDING, lease_owner="busy-instance", lease_until=held, due_at=None
    )
    worker = StoreInboxWorker(InboxSettings())
    assert await worker.run_due() == 0
    assert (await WebhookReceipt.get(id=row.id)).lease_owner == "busy-instance"
    await WebhookReceipt.filter(id=row.id).update(state=InboxState.DONE, lease_owner=None)


async def test_a_row_of_a_store_that_is_gone_fails_with_the_reason(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_id = await _store()
    # a receipt's store cannot be deleted under it (a foreign key): the worker's guard is
    # reached by the store not being found when the row is taken in
    found = inbox_module.connected_stores

    async def gone(ids: set[int]) -> Any:
        return {k: v for k, v in (await found(ids)).items() if k != store_id}

    monkeypatch.setattr(inbox_module, "connected_stores", gone)
    assert await store_inbox.accept(store_id=store_id, event_id="gone-1", body=b'{"order": {}}')
    assert not await store_inbox.accept(store_id=store_id, event_id="gone-1", body=b"{}")
    row = await _row("gone-1", store_id=store_id)
    server.app.state.store_inbox.wake()
    settled = await _settled(row.id)
    assert settled.state == InboxState.FAILED
    assert settled.last_error == "the store was disconnected"


async def test_a_failure_is_retried_and_then_left_failed_with_the_error(
    make_server: ServerFactory,
    make_member: MakeMember,
    sim: Sim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await make_server(store_inbox_attempts=3, store_inbox_retry_delay=0.05)
    client = GraphQLHttp(server.url)
    try:
        buyer = await make_member("BUYER")
        store = await connect_store(client, buyer, sim)
        real = inbox_module.ingest_store_orders
        calls: list[int] = []

        async def flaky(entries: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("database went away")
            return await real(entries)

        monkeypatch.setattr(inbox_module, "ingest_store_orders", flaky)
        made, row = await _delivered(server, sim, store)
        assert row.state == InboxState.DONE and row.attempts == 2 and len(calls) == 2
        assert row.last_error is None
        assert (
            await Order.filter(
                store_id=key_of(store["store"]["id"]), store_order_id=str(made["order"]["id"])
            ).count()
            == 1
        )

        async def broken(entries: Any) -> Any:
            raise RuntimeError("still broken")

        monkeypatch.setattr(inbox_module, "ingest_store_orders", broken)
        tee = await sim.product("Tee")
        made = await sim.order(
            tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}"
        )
        row = await _row(store_id=key_of(store["store"]["id"]))
        failed = await _settled(row.id)
        assert failed.state == InboxState.FAILED and failed.attempts == 3
        assert failed.last_error == "still broken"
        assert (
            await Order.filter(
                store_id=key_of(store["store"]["id"]), store_order_id=str(made["order"]["id"])
            ).count()
            == 0
        )
    finally:
        await client.close()


async def test_two_workers_take_twenty_webhooks_in_once_each(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    other = StoreInboxWorker(InboxSettings(poll_interval=0.01, batch=3))
    await other.start()
    try:
        made = await asyncio.gather(
            *(
                sim.order(
                    tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}"
                )
                for _ in range(20)
            )
        )
        assert [m["webhook_status"] for m in made] == [202] * 20
        await server.store_inbox_drained()
    finally:
        await other.stop()
    rows = await WebhookReceipt.filter(store_id=key_of(store["store"]["id"]))
    assert len(rows) == 20
    assert {r.state for r in rows} == {InboxState.DONE}
    assert all(r.attempts == 1 for r in rows)
    orders = await Order.filter(store_id=key_of(store["store"]["id"]))
    assert sorted(o.id for o in orders) == sorted(r.order_id for r in rows)


async def test_concurrent_accepts_share_inserts_and_each_event_is_new_once(
    server: RunningServer,
) -> None:
    intake = store_inbox.InboxIntake(batch=7)
    store_id = await _store()
    await store_inbox.accept(store_id=store_id, event_id="before", body=b"{}")
    events = [f"group-{n % 40}" for n in range(100)] + ["before"]  # 60 repeats, one old
    answers = await asyncio.gather(
        *(intake.accept(store_id=store_id, event_id=e, body=b"{}") for e in events)
    )
    new = [e for e, is_new in zip(events, answers, strict=True) if is_new]
    assert sorted(new) == sorted({f"group-{n}" for n in range(40)})  # each once, "before" not
    rows = await WebhookReceipt.filter(store_id=store_id).values_list("event_id", "state")
    assert len(rows) == 41 and {state for _, state in rows} == {InboxState.PENDING}
    await WebhookReceipt.filter(store_id=store_id).delete()


async def test_a_failed_insert_fails_every_caller_of_its_batch(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(events: Any) -> set[tuple[int, str]]:
        raise ConnectionRefusedError("database down")

    store_id = await _store()
    monkeypatch.setattr(store_inbox, "insert_new", unreachable)
    intake = store_inbox.InboxIntake()
    answers = await asyncio.gather(
        *(intake.accept(store_id=store_id, event_id=f"e{n}", body=b"{}") for n in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(a, ConnectionRefusedError) for a in answers)
    monkeypatch.undo()
    assert await intake.accept(store_id=store_id, event_id="e0", body=b"{}")  # nothing was kept
    await WebhookReceipt.filter(store_id=store_id).delete()
