"""Live delivery as a dashboard meets it: no subscription ever waits for another.

Each organisation holds several subscriptions at once (different fields and filters, some on
their own socket, some sharing one, some on legacy graphql-ws, filters that match rarely or
never) on freshly started servers, while a whole distribution flow runs: partnership, a
third-party warehouse, a store order taken in from a webhook by the inbox worker, payments,
pushes and withdraws decided by the warehouse worker, warehouse callbacks, tracking pushed to
the store, an after-sales return pushed automatically and its withdraw refused, and a shipment
found by reconciliation. The warehouse answers every call ``PACE.warehouse_delay`` late and the
steps are ``PACE.gap`` apart, so an event held back until a later one would arrive at least that
late; every delivery must arrive within ``BOUND_MS`` of its commit, and every subscription must
receive exactly the events it should, in order.

The publisher's and hub's safety polls are pushed out of the test's reach
(``EVENT_RESYNC_INTERVAL`` 300 s): only the live path can deliver in time. The clients stamp
frames in this process, whose heap late in the suite takes over a second to collect: it is
frozen during each test (``frozen_heap``), and a late delivery says whether this process was
paused meanwhile (``Pauses``).

Configurations: one instance on the run's database (SQLite + memory by default, PostgreSQL +
Redis when set), and with PostgreSQL and Redis two instances, the second a ``main.py serve``
process, with the dashboard and the requests split between them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import websockets

from integrations.stores.simulator import create_store_simulator
from tests.conftest import MakeMember, ServerFactory
from tests.support.dashboard import Dashboard, Panel, of_type
from tests.support.distribution import FAST_WAREHOUSE, WarehouseSim, warehouse_simulator
from tests.support.events import seq_of
from tests.support.graphql_client import GraphQLHttp
from tests.support.live_flow import ALL, Instance, Pace, run_flow, settle
from tests.support.pauses import Pauses, frozen_heap
from tests.support.server import IDLE_SAFE, RunningServer, app_process, serve
from tests.support.services import postgres_url, redis_url, require_postgres, require_redis
from tests.test_store_integration import Sim

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _frozen_heap() -> Iterator[None]:
    """Latencies are measured by clients in this process: keep the earlier tests' heap out of
    its collections (``tests.support.pauses.frozen_heap``)."""
    with frozen_heap():
        yield


ROOT = Path(__file__).resolve().parent.parent
BOUND_MS = 750.0  # commit to client; typical deliveries take a few ms
# every warehouse answer, and the gap between steps: any event held until a later one is late
PACE = Pace(warehouse_delay=1.5, gap=1.5)
NO_SAFETY_POLL = 300.0
SETTINGS = {
    **FAST_WAREHOUSE,
    "warehouse_timeout": 5.0,
    "warehouse_reconcile_after": 4.0,
    "tracking_retry_delay": 1.0,
    "event_resync_interval": NO_SAFETY_POLL,
}


def second_instance(
    database_url: str, redis_url: str, secrets_key: str
) -> AbstractAsyncContextManager[str]:
    """Another instance, ``main.py serve`` as deployed, with the test's settings."""
    return app_process(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRETS_KEY": secrets_key,
            "EVENT_RESYNC_INTERVAL": str(NO_SAFETY_POLL),
            "WAREHOUSE_TIMEOUT": str(SETTINGS["warehouse_timeout"]),
            "WAREHOUSE_RETRIES": "1",
            "WAREHOUSE_TASK_ATTEMPTS": "2",
            "WAREHOUSE_RETRY_DELAY": "0.2",
            "WAREHOUSE_RECONCILE_AFTER": str(SETTINGS["warehouse_reconcile_after"]),
            "TRACKING_RETRY_DELAY": "1",
        }
    )


# --------------------------------------------------------------------------- the tests


@pytest.fixture
async def sim() -> AsyncIterator[WarehouseSim]:
    async for running in warehouse_simulator():
        yield running


@pytest.fixture
async def shop() -> AsyncIterator[Sim]:
    app = create_store_simulator(access_token="bs-token", webhook_secret="bs-secret")
    async with serve(app) as url, httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control:
        yield Sim(url=url, control=control)


async def _dashboard_through_the_flow(
    instances: list[Instance],
    first: RunningServer,
    make_member: MakeMember,
    sim: WarehouseSim,
    shop: Sim,
    label: str,
) -> None:
    dashboard = Dashboard()
    try:
        async with Pauses() as pauses:
            await run_flow(
                instances=instances,
                sim=sim,
                shop=shop,
                dashboard=dashboard,
                pace=PACE,
                make_member=make_member,
                hub=first.app.state.hub,
            )
            await asyncio.sleep(BOUND_MS / 1000)  # what is still on its way has had its time
        report = await dashboard.verify(bound_ms=BOUND_MS, pauses=pauses)
    finally:
        await dashboard.close()
    print(f"\nlive delivery, {label}: {len(dashboard.panels)} subscriptions")
    print(report.summary())
    print(f"pauses of the test process: {pauses.seen or 'none'}")
    assert report.problems == [], "\n".join(report.problems)
    sources = {d.source for d in report.deliveries}
    assert sources == {"request", "worker"}, sources
    assert len(report.latencies("worker")) >= 20


async def test_every_panel_gets_its_events_at_once_on_one_fresh_instance(
    make_server: ServerFactory, make_member: MakeMember, sim: WarehouseSim, shop: Sim
) -> None:
    server = await make_server(redis_url=redis_url() or "", **SETTINGS)
    label = (
        f"{'PostgreSQL' if postgres_url() else 'SQLite'} + {'Redis' if redis_url() else 'memory'}"
    )
    await _dashboard_through_the_flow(
        [Instance(server.url, running=server)],
        server,
        make_member,
        sim,
        shop,
        f"one instance, {label}",
    )


async def test_every_panel_gets_its_events_at_once_across_two_fresh_instances(
    make_server: ServerFactory,
    make_member: MakeMember,
    sim: WarehouseSim,
    shop: Sim,
    database_url: str,
) -> None:
    redis = require_redis("live delivery: two instances")
    require_postgres("live delivery: two instances")
    server = await make_server(redis_url=redis, **SETTINGS)
    async with second_instance(database_url, redis, server.settings.secrets_key) as other:
        await _dashboard_through_the_flow(
            [Instance(server.url, running=server), Instance(other)],
            server,
            make_member,
            sim,
            shop,
            "two instances, PostgreSQL + Redis",
        )


# --------------------------------------------------------------------------- a stalled socket

RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
WITH_PAYLOAD = "subscription { events(types: [ORGANISATION_UPDATED]) { id type payload } }"


def _stall(server: RunningServer, client_socket: object) -> None:
    """Make the server's side of ``client_socket`` a phone's on a slow link whose app stopped
    reading: tiny kernel and transport buffers, so a few frames fill them."""
    name = client_socket.getsockname()  # type: ignore[attr-defined]
    for protocol in server.server.server_state.connections:
        transport = protocol.transport
        if transport.get_extra_info("peername") == name:
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            transport.set_write_buffer_limits(high=2048)
            return
    raise AssertionError("no server connection for that client")


async def test_a_socket_that_stops_reading_holds_no_other_subscriber(
    server: RunningServer, make_member: MakeMember, client: GraphQLHttp
) -> None:
    """One organisation, one document, three sockets (so one shared execution): a phone that
    stops reading must not hold the two dashboards beside it, nor their other subscriptions."""
    member = await make_member("SUPPLIER")
    phone = await websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],
        compression=None,
        max_queue=1,
        # a small receive window, as a backgrounded app's socket soon has
        sock=_small_receive_buffer_socket(server.port),
    )
    await phone.send(
        '{"type":"connection_init","payload":{"Authorization":"Bearer ' + member.token + '"}}'
    )
    await phone.recv()
    await phone.send(
        '{"id":"1","type":"subscribe","payload":{"query":"'
        + WITH_PAYLOAD.replace('"', '\\"')
        + '"}}'
    )
    dashboard = Dashboard()
    try:
        await dashboard.open(
            [
                Panel("desk.events", member, "a", WITH_PAYLOAD, of_type("ORGANISATION_UPDATED")),
                Panel("desk.all", member, "a", ALL, lambda e: True),
                Panel("wall.events", member, "b", WITH_PAYLOAD, of_type("ORGANISATION_UPDATED")),
            ],
            lambda p: server.ws_url,
        )
        await server.wait_for_subscribers(4)
        dashboard.started([p.name for p in dashboard.panels], await settle(server.app.state.hub))
        _stall(server, phone.transport.get_extra_info("socket"))
        phone.transport.pause_reading()  # the app is in the background
        async with Pauses() as pauses:
            for n in range(120):
                await client.data(RENAME, {"n": f"{n:03} " + "x" * 190}, token=member.token)
            await settle(server.app.state.hub)
            await asyncio.sleep(BOUND_MS / 1000)
        report = await dashboard.verify(bound_ms=BOUND_MS, pauses=pauses)
        # back in the foreground, the phone gets everything that waited for it, in order
        phone.transport.resume_reading()
        seqs = []
        while len(seqs) < 120:
            frame = json.loads(await asyncio.wait_for(phone.recv(), 10))
            seqs.append(seq_of(frame["payload"]["data"]["events"]["id"]))
        assert seqs == sorted(seqs) and len(set(seqs)) == 120
    finally:
        await dashboard.close()
        phone.transport.abort()
    print("\nbeside a stalled socket:\n" + report.summary())
    assert report.problems == [], "\n".join(report.problems[:5])
    assert len(report.deliveries) == 3 * 120


def _small_receive_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock
