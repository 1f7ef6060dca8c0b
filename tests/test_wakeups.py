"""Background loops wake on work, not on a timer (issue 20; ``integrations/wakeups.py``).

Every server here sweeps once an hour (``WORK_SWEEP_SECONDS``), so whatever happens within a
test was started by a wake-up or by work falling due, never by a sweep:

- a retry put off runs when it falls due, with nothing waking the worker (both engines);
- a loop sleeps until its work is due, and work that stays due does not make it spin;
- PostgreSQL: a row written by another session (another instance, a CLI, a loader) wakes the
  loops at once, while the served instance's own sessions do not notify; the LISTEN connection,
  killed, is opened again and every loop sweeps once; a served instance's inbox worker takes in
  a row another instance left to it; the wake-ups' sweep (one statement) wakes the loops of the
  kinds of work that have rows waiting, and only those;
- migration 0015 goes back and forth on both engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from tortoise import connections

from domain.orders.models import InboxState, WebhookReceipt
from integrations.background import MIN_PAUSE, WakeableLoop
from integrations.wakeups import LOCAL_WAKES, PostgresWakeups, Wakeups, WorkKind
from schema.global_ids import key_of
from tests.conftest import MakeMember, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WarehouseSim,
    eventually,
    order_state,
    paid_order,
    partnered,
    push,
    warehouse_simulator,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.migration_dbs import Db, databases_in, ok
from tests.support.server import RunningServer
from tests.support.services import postgres_url
from tests.test_order_flow import connect_store, sim
from tests.test_store_integration import Sim

__all__ = ["sim"]

HOUR = 3600.0
WAIT = 15.0  # generous: each wait ends as soon as what it waits for happens
CALLS_PER_RUN = FAST_WAREHOUSE["warehouse_retries"] + 1
postgres_only = pytest.mark.skipif(
    postgres_url() is None, reason="NOTIFY needs PostgreSQL (DATABASE_URL)"
)


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server(work_sweep_seconds=HOUR, **FAST_WAREHOUSE)


@pytest.fixture
async def warehouse() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


class Rounds(WakeableLoop):
    """A loop that counts its rounds; its work falls due when ``due`` says."""

    name = "test loop"

    def __init__(self, due: Callable[[], datetime | None] = lambda: None) -> None:
        super().__init__(sweep_interval=HOUR)
        self.due = due
        self.done: asyncio.Queue[int] = asyncio.Queue()

    async def round(self) -> None:
        self.done.put_nowait(self.rounds + 1)

    async def next_due(self) -> datetime | None:
        return self.due()

    async def next_round(self) -> int:
        return await asyncio.wait_for(self.done.get(), WAIT)


class Heard:
    """Wake-ups received, by kind, in the order they came."""

    def __init__(self, wakeups: Wakeups, *kinds: WorkKind) -> None:
        self.kinds: list[WorkKind] = []
        self._arrived = asyncio.Event()
        for kind in kinds:
            wakeups.subscribe(kind, lambda kind=kind: self._heard(kind))

    def _heard(self, kind: WorkKind) -> None:
        self.kinds.append(kind)
        self._arrived.set()

    async def kind(self, kind: WorkKind) -> None:
        async with asyncio.timeout(WAIT):
            while kind not in self.kinds:
                self._arrived.clear()
                await self._arrived.wait()


def _asyncpg_url(url: str) -> str:
    return urlunparse(urlparse(url)._replace(scheme="postgresql"))


async def _another_session(database_url: str, sql: str, *, local: bool = False) -> None:
    """``sql`` run by a session of another process (``local``: of a served instance)."""
    import asyncpg

    settings = dict(LOCAL_WAKES) if local else {}
    connection = await asyncpg.connect(_asyncpg_url(database_url), server_settings=settings)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


NEW_TASK = (  # DONE: nobody runs it
    "INSERT INTO warehouse_task (kind, state, attempts, due_at, created_at, last_error) "
    "VALUES ('PUSH_ORDER', 'DONE', 0, now(), now(), 'test_wakeups')"
)
TOUCH_INBOX = "UPDATE webhook_receipt SET due_at = due_at WHERE false"  # no row, one statement


# --- work falling due -------------------------------------------------------------------------


async def test_a_retry_runs_when_it_falls_due_with_nothing_waking_the_worker(
    server: RunningServer,
    client: GraphQLHttp,
    make_member: MakeMember,
    warehouse: WarehouseSim,
) -> None:
    d = await partnered(client, make_member, warehouse)
    # every answer of the first run is lost: the task is put off by the retry delay (0.2 s)
    await warehouse.faults(fail_after_next=CALLS_PER_RUN)
    order_id = await paid_order(client, d)
    assert (await push(client, d, order_id))["userErrors"] == []
    state = await eventually(
        lambda: order_state(client, d.supplier.token, order_id),
        lambda s: s["distribution"]["pushStatus"] in ("PUSHED", "PUSH_FAILED"),
        timeout=WAIT,
    )
    assert state["distribution"]["pushStatus"] == "PUSHED"
    assert [a["ok"] for a in state["warehouseAttempts"]] == [False, True]


async def test_a_loop_sleeps_until_its_work_falls_due() -> None:
    due = datetime.now(UTC) + timedelta(seconds=0.3)
    loop = Rounds(lambda: due)
    await loop.start()
    try:
        assert await loop.next_round() == 1  # at start
        assert loop.pause() <= 0.3 + 0.01
        assert await loop.next_round() == 2  # when due: the sweep is an hour away
        assert datetime.now(UTC) >= due
    finally:
        await loop.stop()


async def test_work_that_stays_due_does_not_make_a_loop_spin() -> None:
    """A row due but never taken (nothing should do that, but a bug might) is looked at again
    after a pause that doubles each time, up to the sweep."""
    loop = Rounds(lambda: datetime.now(UTC) - timedelta(seconds=1))
    await loop.start()
    try:
        for expected in range(1, 5):
            assert await loop.next_round() == expected
        await asyncio.sleep(0)  # the round's bookkeeping
        assert loop.pause() >= MIN_PAUSE * 2**3
    finally:
        await loop.stop()


# --- PostgreSQL: other processes' work, the LISTEN connection ---------------------------------


@postgres_only
async def test_another_sessions_work_wakes_the_loops_but_a_served_instances_does_not(
    database_url: str,
) -> None:
    wakeups = PostgresWakeups(database_url, check_interval=HOUR, tracking_attempts=8)
    heard = Heard(wakeups, WorkKind.WAREHOUSE_TASK, WorkKind.INBOX)
    loop = Rounds()
    wakeups.subscribe(WorkKind.WAREHOUSE_TASK, loop.wake)
    await wakeups.start()
    await loop.start()
    try:
        assert wakeups.backend_pid is not None
        assert await loop.next_round() == 1
        await _another_session(database_url, NEW_TASK)
        await heard.kind(WorkKind.WAREHOUSE_TASK)
        assert await loop.next_round() == 2  # woken by the NOTIFY, an hour before its sweep

        # a served instance's session does not notify: an inbox notification sent after it
        # arrives, and nothing came before it (one connection hears them in commit order)
        heard.kinds.clear()
        await _another_session(database_url, NEW_TASK, local=True)
        await _another_session(database_url, TOUCH_INBOX)
        await heard.kind(WorkKind.INBOX)
        assert heard.kinds == [WorkKind.INBOX]
    finally:
        await loop.stop()
        await wakeups.stop()
        await _another_session(
            database_url, "DELETE FROM warehouse_task WHERE last_error = 'test_wakeups'"
        )


@postgres_only
async def test_a_killed_listen_connection_is_opened_again_and_every_loop_sweeps_once(
    database_url: str,
) -> None:
    wakeups = PostgresWakeups(
        database_url, check_interval=HOUR, tracking_attempts=8, min_delay=0.05
    )
    heard = Heard(wakeups, WorkKind.OUTBOX, WorkKind.INBOX, WorkKind.TRACKING)
    await wakeups.start()
    try:
        killed = wakeups.backend_pid
        assert killed is not None
        await _another_session(database_url, f"SELECT pg_terminate_backend({killed})")
        # back: each kind is woken once, as notifications sent meanwhile are lost
        for kind in (WorkKind.OUTBOX, WorkKind.INBOX, WorkKind.TRACKING):
            await heard.kind(kind)
        assert wakeups.reconnects == 1
        assert wakeups.backend_pid not in (None, killed)
        # and listening again
        heard.kinds.clear()
        await _another_session(database_url, TOUCH_INBOX)
        await heard.kind(WorkKind.INBOX)
    finally:
        await wakeups.stop()


@postgres_only
async def test_a_served_instance_takes_in_a_row_another_instance_left_to_it(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, sim: Sim
) -> None:
    assert server.app.state.wakeups.backend_pid is not None
    [[mark]] = (
        await connections.get("default").execute_query(
            "SELECT current_setting('supplygraph.wakes', true)"
        )
    )[1]
    assert mark == "local"  # the instance's own sessions do not notify

    buyer = await make_member("BUYER")
    store = await connect_store(client, buyer, sim)
    tee = await sim.product("Tee")
    made = await sim.order(
        tee["variants"][0]["id"], deliver_to=f"{server.url}{store['webhookUrlPath']}"
    )
    assert made["webhook_status"] == 202
    await server.store_inbox_drained()
    [row] = await WebhookReceipt.filter(store_id=key_of(store["store"]["id"]))
    assert row.attempts == 1

    # another instance took the row, died, and its lease ran out; its replacement, a process
    # of its own, makes the row due again: nobody in this process wakes the worker
    await _another_session(
        server.settings.database_url,
        "UPDATE webhook_receipt SET state = 'PENDING', lease_owner = 'dead-instance', "
        f"lease_until = now() - interval '1 minute', due_at = now() WHERE id = {row.id}",
    )

    async def read() -> WebhookReceipt:
        return await WebhookReceipt.get(id=row.id)

    again = await eventually(read, lambda r: r.state != InboxState.PENDING, timeout=WAIT)
    assert (again.state, again.attempts, again.order_id) == (InboxState.DONE, 2, row.order_id)


async def _swept_twice(wakeups: PostgresWakeups) -> None:
    """Return once two more sweeps have run, so one ran wholly after this call."""
    target = wakeups.sweeps + 2

    async def count() -> int:
        return wakeups.sweeps

    await eventually(count, lambda n: n >= target, timeout=WAIT)


@postgres_only
async def test_the_sweep_wakes_the_loops_of_the_work_waiting_and_only_those(
    databases: Any,
) -> None:
    """Rows a served instance wrote (its sessions do not notify) and left: one statement per
    sweep finds them, kind by kind, on a database of its own (nothing else's rows waiting)."""
    db = Db(await databases.fresh())
    await asyncio.to_thread(ok, db.url, "latest")
    wakeups = PostgresWakeups(db.url, check_interval=0.05, tracking_attempts=8)
    heard = Heard(wakeups, *WorkKind)
    await wakeups.start()
    try:
        await _swept_twice(wakeups)
        assert heard.kinds == []  # nothing waiting: nobody woken

        due_later = NEW_TASK.replace("'DONE'", "'PENDING'").replace(
            "now(), now()", "now() + interval '1 hour', now()"
        )
        await _another_session(db.url, due_later, local=True)
        await _swept_twice(wakeups)
        assert heard.kinds == []  # a retry put off is its loop's to wait for (next_due)

        await _another_session(db.url, NEW_TASK.replace("'DONE'", "'PENDING'"), local=True)
        await heard.kind(WorkKind.WAREHOUSE_TASK)
        assert set(heard.kinds) == {WorkKind.WAREHOUSE_TASK}

        await _another_session(
            db.url,
            "INSERT INTO event (type, subject_type, subject_id, payload, created_at) "
            "VALUES ('ORDER_STATUS_CHANGED', 'order', '1', '{}', now())",
            local=True,
        )
        await heard.kind(WorkKind.OUTBOX)
        assert set(heard.kinds) == {WorkKind.WAREHOUSE_TASK, WorkKind.OUTBOX}
    finally:
        await wakeups.stop()


# --- the migration --------------------------------------------------------------------------


@pytest.fixture
async def databases(tmp_path: Path) -> AsyncIterator[Any]:
    async for made in databases_in(tmp_path):
        yield made


async def _wake_objects(db: Db) -> set[str]:
    """The wake-up triggers and the tracking index of ``db``."""
    found = {name for name in await db.indexes() if name == "supply_order_tracking_open"}
    if db.postgres:
        rows = await db.rows("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        found |= {r["tgname"] for r in rows if r["tgname"].endswith("_wakes")}
    return found


async def test_migration_0015_goes_back_and_forth(databases: Any) -> None:
    """PostgreSQL: the triggers and the index come and go; SQLite: nothing is made."""
    db = Db(await databases.fresh())
    await asyncio.to_thread(ok, db.url, "latest")
    made = (
        {
            "event_wakes",
            "webhook_receipt_wakes",
            "warehouse_task_wakes",
            "supply_order_wakes",
            "supply_order_tracking_open",
        }
        if db.postgres
        else set()
    )
    assert await _wake_objects(db) == made
    await asyncio.to_thread(ok, db.url, "0014_tenant_oracles")
    assert await _wake_objects(db) == set()
    await asyncio.to_thread(ok, db.url, "latest")
    assert await _wake_objects(db) == made
