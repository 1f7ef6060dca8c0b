"""Clean shutdown (issue 22): SIGTERM drains an instance before it exits.

* ``python main.py serve`` SIGTERMed with a graphql-transport-ws and a legacy graphql-ws
  subscription open: both sockets are closed with 1012 (Service Restart) and the reason, the
  log says when the drain began and what it did, and the process exits 0 within seconds.
* The drain of an app served in the test's event loop: ``/readyz`` answers 503 from then on
  (``/healthz`` 200), the loops that take work are stopped but the outbox publisher runs on,
  the sockets are closed, new ones are closed the same way as they open, HTTP is still
  served, and a second drain and the lifespan's shutdown after it do no harm.
* The graphql-ws JavaScript client (the dashboard's vendored build, in Node) reconnects after
  the 1012 by its own rules and resumes with ``afterEventId``: every event once, in order,
  including one committed while the instance was down.
* A rolling restart of two instances on PostgreSQL + Redis, behind a load balancer that reads
  ``/readyz``: A is stopped and started again, then B, while mutations run and subscribers
  listen; none of the mutations fails, and every subscriber gets every event once, in order.

Each test prints its figures (times, counts) whether it passes or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from tortoise import connections

from integrations.background import running_loops
from schema.global_ids import gid
from service.app import DATABASE_CLOSE_WAIT
from service.live.sockets import RESTART_REASON
from service.settings import Settings
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.distribution import eventually, order_state, partnered, warehouse_reference
from tests.support.faults import (
    AppProcess,
    ResumingSubscriber,
    event_history,
    held_warehouse_simulator,
)
from tests.support.graphql_client import EVENTS_SUBSCRIPTION, GraphQLHttp, GraphQLWebSocket
from tests.support.server import RunningServer, free_port, start_server
from tests.support.services import require_postgres, require_redis, unavailable
from tests.test_distribution_faults import (
    api_calls,
    distributor_wallet,
    pushed_order,
    refunds,
    withdraw,
    withdrawal_is,
)
from tests.test_faults import MutationLoop, figures
from tests.test_order_flow import supplier_catalogue

__all__ = ["figures"]  # the fixture, shared with the fault tests

ROOT = Path(__file__).resolve().parent.parent
SERVICE_RESTART = 1012
RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
DRAINED = re.compile(r"drained in ([0-9.]+) ms: stopped ([^;]*); closed (\d+) live sockets")
EXITS_WITHIN = 5.0  # seconds from SIGTERM to the process's exit, with a few sockets open
STALL = 3.0  # seconds: a request or a moved subscriber waiting this long waited for a restart
# seconds from a stopped instance's exit to its withdraw done by the other: far below the
# lease (60 s) and the sweep (30 s) the test sets, so only the handover can explain it
HANDED_OVER_WITHIN = 15.0


async def rename(client: GraphQLHttp, token: str, name: str) -> None:
    data = await client.data(RENAME, {"n": name}, token=token)
    assert data["renameOrganisation"]["userErrors"] == [], data


async def last_event(client: GraphQLHttp, token: str) -> str:
    """The id of the organisation's latest event (resuming after it replays nothing)."""
    history = await event_history(client, token)
    return history[-1]["id"] if history else gid("Event", 0)


async def closed_with(ws: Any, timeout: float = 10) -> tuple[int | None, str | None]:
    """Read ``ws`` (a websockets client connection) until it closes: the code and reason the
    server closed it with."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


class LegacySocket:
    """One legacy graphql-ws connection (served by Strawberry)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def subscribe(cls, url: str, token: str, after: str) -> LegacySocket:
        ws = await websockets.connect(url, subprotocols=["graphql-ws"])
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        payload = {"query": EVENTS_SUBSCRIPTION, "variables": {"after": after}}
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
        return cls(ws)

    async def next_event(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["type"] == "data":
                assert "errors" not in message["payload"], message
                return message["payload"]["data"]["events"]
            assert message["type"] == "ka", message


def drain_report(log: str) -> tuple[float, str, int] | None:
    """What the drain's last line in ``log`` says: milliseconds, loops stopped, sockets
    closed."""
    found = DRAINED.findall(log)
    if not found:
        return None
    took, loops, closed = found[-1]
    return float(took), loops, int(closed)


def described(report: tuple[float, str, int] | None) -> str:
    if report is None:
        return "no drain logged"
    took, loops, closed = report
    return f"drained in {took:.1f} ms ({loops} stopped, {closed} live sockets closed)"


async def sigterm(app: AppProcess) -> tuple[int, float]:
    """SIGTERM ``app`` and wait for it to exit: its exit status, and the seconds it took."""
    assert app.process is not None
    began = time.monotonic()
    app.process.send_signal(signal.SIGTERM)
    try:
        status = await asyncio.to_thread(app.process.wait, 20)
    except subprocess.TimeoutExpired:
        app.kill()
        raise AssertionError(f"still running 20 s after SIGTERM:\n{app.log_tail()}") from None
    return status, time.monotonic() - began


# --- a served process, SIGTERMed with live sockets open -----------------------------------------


async def test_sigterm_closes_live_sockets_with_1012_and_a_reason_and_exits_0(
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Path,
    figures: list[str],
) -> None:
    await make_server()  # holds the database for make_member
    member = await make_member()
    app = AppProcess(
        {"DATABASE_URL": database_url, "SECRETS_KEY": base_settings.secrets_key},
        tmp_path / "serve.log",
    )
    sockets: list[Any] = []
    try:
        await app.start()
        http = GraphQLHttp(app.url)
        after = await last_event(http, member.token)
        current = await GraphQLWebSocket.connect(app.ws_url, token=member.token)
        sockets.append(current.ws)
        await current.acknowledged()
        await current.subscribe(EVENTS_SUBSCRIPTION, {"after": after})
        legacy = await LegacySocket.subscribe(app.ws_url, member.token, after)
        sockets.append(legacy.ws)
        await rename(http, member.token, "Before the restart")
        await http.close()
        # both subscriptions are live: each has had the event
        event = (await current.next_data())["events"]
        assert (await legacy.next_event())["id"] == event["id"]

        status, took = await sigterm(app)
        current_close = await closed_with(current.ws)
        legacy_close = await closed_with(legacy.ws)
        log = app.log_tail(20_000)
        report = drain_report(log)
        figures.append(
            f"SIGTERM to exit {took:.2f}s, exit status {status}; {described(report)}; "
            f"graphql-transport-ws closed with {current_close}, graphql-ws with {legacy_close}"
        )

        assert current_close == (SERVICE_RESTART, RESTART_REASON)
        assert legacy_close == (SERVICE_RESTART, RESTART_REASON)
        assert status == 0, log
        assert took < EXITS_WITHIN, log
        assert "shutdown asked: draining" in log, log
        drain_lines = [line for line in log.splitlines() if "service.shutdown" in line]
        assert len(drain_lines) == 2 and all("request_id" not in x for x in drain_lines), log
        assert report is not None, log
        drained_in, loops, closed = report
        assert closed == 2
        assert loops == "StoreInboxWorker, WarehouseWorker, TrackingPusher, SlaWorker"
        assert drained_in / 1000 < took
        # the drain came before uvicorn's shutdown, whose own closes would carry no reason
        assert log.index("drained in") < log.index("Shutting down"), log
    finally:
        for ws in sockets:
            await ws.close()
        app.kill()


# --- the drain, in process ----------------------------------------------------------------------


async def test_draining_turns_readyz_503_stops_the_work_loops_and_closes_live_sockets(
    server: RunningServer, client: GraphQLHttp, make_member: MakeMember, figures: list[str]
) -> None:
    member = await make_member()
    app = server.app
    after = await last_event(client, member.token)
    current = await GraphQLWebSocket.connect(server.ws_url, token=member.token)
    await current.acknowledged()
    await current.subscribe(EVENTS_SUBSCRIPTION, {"after": after})
    legacy = await LegacySocket.subscribe(server.ws_url, member.token, after)
    await server.wait_for_subscribers(2)
    loops_before = sorted(loop.name for loop in running_loops())
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/readyz")).status_code == 200

        await app.state.drain()
        ready = await http.get("/readyz")
        healthy = await http.get("/healthz")
        current_close = await closed_with(current.ws)
        legacy_close = await closed_with(legacy.ws)
        loops_after = sorted(loop.name for loop in running_loops())
        late = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])
        late_close = await closed_with(late)
        late_legacy = await websockets.connect(server.ws_url, subprotocols=["graphql-ws"])
        late_legacy_close = await closed_with(late_legacy)
        # requests are still served (those in flight as the drain began finish too)
        await rename(client, member.token, "While draining")
        await app.state.drain()  # once is enough: the second does nothing
        figures.append(
            f"drain took {app.state.drain.took * 1000:.1f} ms; /readyz {ready.status_code} "
            f"{ready.json()}, /healthz {healthy.status_code}; loops before {loops_before}, "
            f"after {loops_after}; closes: {current_close}, legacy {legacy_close}, "
            f"opened later {late_close}, legacy {late_legacy_close}"
        )

    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    assert healthy.status_code == 200
    assert loops_before == [
        "outbox publisher",
        "sla worker",
        "store inbox",
        "tracking pusher",
        "warehouse worker",
    ]
    assert loops_after == ["outbox publisher"]  # events of requests in flight still go out
    restart = (SERVICE_RESTART, RESTART_REASON)
    assert current_close == legacy_close == late_close == late_legacy_close == restart
    await server.stop()  # the lifespan's shutdown stops the loops again: no error
    assert running_loops() == []


# --- a JavaScript client through a restart ------------------------------------------------------

GRAPHQL_WS_BUILD = ROOT / "service" / "static" / "dashboard" / "vendor"


def _vendored_graphql_ws() -> Path:
    manifest = json.loads((GRAPHQL_WS_BUILD / "manifest.json").read_text())
    [package] = [p for p in manifest["packages"] if p["name"] == "graphql-ws"]
    return GRAPHQL_WS_BUILD / package["files"][0]["path"]


def node_with_websocket() -> list[str]:
    """The command that runs Node.js with a global ``WebSocket`` (behind a flag before 22)."""
    node = shutil.which("node")
    if node is None:
        unavailable("shutdown: graphql-ws client", "Node.js is not installed")
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return [node, "--experimental-websocket"] if major < 22 else [node]


class NodeClient:
    """``tests/js/graphql_ws_resume.mjs`` running, and the lines it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, url: str, token: str, after: str) -> AsyncIterator[NodeClient]:
        script = ROOT / "tests" / "js" / "graphql_ws_resume.mjs"
        process = await asyncio.create_subprocess_exec(
            *node_with_websocket(),
            str(script),
            str(_vendored_graphql_ws()),
            url,
            token,
            after,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(process)
        try:
            yield client
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def until(self, key: str, timeout: float = 20) -> dict[str, Any]:
        """The next line with ``key`` (the lines before it are kept too)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                assert raw, f"the client ended; it said {self.lines}"
                line = json.loads(raw)
                self.lines.append(line)
                assert "error" not in line, self.lines
                if key in line:
                    return line

    def events(self) -> list[str]:
        return [line["event"] for line in self.lines if "event" in line]


async def test_graphql_ws_client_reconnects_after_1012_and_resumes_with_after_event_id(
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Path,
    figures: list[str],
) -> None:
    beside = await make_server()  # on the same database: commits while the app is down
    member = await make_member()
    on_beside = GraphQLHttp(beside.url)
    after = await last_event(on_beside, member.token)
    port = free_port()
    env = {"DATABASE_URL": database_url, "SECRETS_KEY": base_settings.secrets_key}
    first = AppProcess(env, tmp_path / "first.log", port=port)
    second = AppProcess(env, tmp_path / "second.log", port=port)
    try:
        await first.start()
        on_first = GraphQLHttp(first.url)
        async with NodeClient.running(first.ws_url, member.token, after) as node:
            assert await node.until("connected") == {"connected": False}
            await rename(on_first, member.token, "Seen before the restart")
            await node.until("event")
            await on_first.close()

            status, took = await sigterm(first)
            closed = await node.until("closed")
            await rename(on_beside, member.token, "Made while the app was down")
            await second.start()
            assert await node.until("connected") == {"connected": True}
            on_second = GraphQLHttp(second.url)
            await rename(on_second, member.token, "Seen after the restart")
            history = [event["id"] for event in await event_history(on_second, member.token)]
            truth = history[history.index(after) + 1 :] if after in history else history
            await on_second.close()
            while len(node.events()) < len(truth):
                await node.until("event")
            await asyncio.sleep(0.5)  # anything sent twice would arrive now
        figures.append(
            f"SIGTERM to exit {took:.2f}s (status {status}); the client saw {closed}; "
            f"restarted in {second.started_in:.2f}s; events {node.events()} (expected {truth})"
        )
        assert closed == {"closed": SERVICE_RESTART, "reason": RESTART_REASON}
        assert status == 0
        assert node.events() == truth and len(truth) == 3
    finally:
        await on_beside.close()
        first.kill()
        second.kill()


# --- a rolling restart of two instances ---------------------------------------------------------


class Balancer(GraphQLHttp):
    """GraphQL over HTTP through a load balancer in front of ``instances``: each request goes
    to the first instance whose ``/readyz`` answered 200 at its last check (every
    ``CHECK_EVERY`` s); a refused connection is tried at the next instance (the request never
    reached the first). A new connection for each request, as a proxy's upstream requests
    are by default. Records how long each request took."""

    CHECK_EVERY = 0.1

    def __init__(self, instances: list[AppProcess]) -> None:
        # GraphQLHttp's client for one base URL is not made: requests name their instance
        self.base_url = instances[0].url
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.instances = instances
        self.ready = {app.url: True for app in instances}
        self.took: list[float] = []
        self.moved_on = 0  # requests refused by one instance and sent to the next
        self._checks = asyncio.create_task(self._check())

    async def _check(self) -> None:
        async with httpx.AsyncClient(timeout=2) as checks:
            while True:
                for app in self.instances:
                    try:
                        ready = (await checks.get(f"{app.url}/readyz")).status_code == 200
                    except httpx.TransportError:
                        ready = False
                    self.ready[app.url] = ready
                await asyncio.sleep(self.CHECK_EVERY)

    def preferred(self) -> str:
        """The ready instance to send to (the first, if none looks ready)."""
        urls = [app.url for app in self.instances]
        return next((url for url in urls if self.ready[url]), urls[0])

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = {"query": query, "variables": variables or {}}
        began = time.monotonic()
        first = self.preferred()
        urls = [first, *(app.url for app in self.instances if app.url != first)]
        deadline = began + 20
        while True:
            for url in urls:
                try:
                    response = await self.http.post(f"{url}/graphql", json=body, headers=headers)
                except httpx.ConnectError:
                    self.moved_on += 1
                    continue
                self.took.append(time.monotonic() - began)
                assert response.status_code == 200, response.text
                return response.json()
            assert time.monotonic() < deadline, "no instance took the request for 20 s"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._checks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._checks
        await super().close()


async def test_rolling_restart_of_two_instances_loses_no_event_and_fails_no_mutation(
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Path,
    figures: list[str],
) -> None:
    suite = "shutdown: rolling restart of two instances"
    require_postgres(suite)  # two processes share one database
    redis_url = require_redis(suite)
    await make_server(redis_url=redis_url)  # members; one more instance of the deployment
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRETS_KEY": base_settings.secrets_key,
        "OUTBOX_RETRY_INTERVAL": "0.2",
    }
    a = AppProcess(env, tmp_path / "a.log")
    b = AppProcess(env, tmp_path / "b.log")
    subscribers: list[ResumingSubscriber] = []
    mutations: MutationLoop | None = None
    balancer: Balancer | None = None
    try:
        await asyncio.gather(a.start(), b.start())
        balancer = Balancer([b, a])  # B takes the traffic while it is ready
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        catalogue = await supplier_catalogue(balancer, supplier)
        stays = ResumingSubscriber("buyer on A, waits for A", buyer.token, a.ws_url)
        moves = ResumingSubscriber(
            "supplier on A, moves with the balancer", supplier.token, a.ws_url
        )
        on_b = ResumingSubscriber("buyer on B, moves with the balancer", buyer.token, b.ws_url)
        subscribers += [stays, moves, on_b]
        for subscriber in subscribers:
            await subscriber.start()

        mutations = MutationLoop(balancer, buyer, supplier, catalogue)
        running = asyncio.create_task(mutations.run())
        await asyncio.sleep(1.0)
        restarts: list[str] = []
        for name, app, other in (("A", a, b), ("B", b, a)):
            mutations.phase = f"{name} restarting"
            for subscriber in (moves, on_b):
                subscriber.url = other.ws_url  # where the balancer sends a reconnection
            status, took = await sigterm(app)
            report = drain_report(app.log_tail(20_000))
            stopped_at = time.monotonic()
            await app.start()
            restarts.append(
                f"{name}: SIGTERM to exit {took:.2f}s (status {status}), {described(report)}; "
                f"ready again {time.monotonic() - stopped_at:.2f}s later"
            )
            assert status == 0, app.log_tail()
            mutations.phase = f"after {name}"
            await asyncio.sleep(1.0)
        mutations.stop()
        await running

        truth = {
            token: await event_history(balancer, token) for token in (buyer.token, supplier.token)
        }
        stuck: list[str] = []
        for subscriber in subscribers:
            try:
                await subscriber.received(truth[subscriber.token][-1]["id"], timeout=20)
            except (TimeoutError, AssertionError) as error:
                stuck.append(str(error))
        await asyncio.sleep(0.5)  # anything sent twice would arrive now

        figures.extend(restarts)
        took = sorted(balancer.took)
        figures.append(
            f"mutations committed: {dict(mutations.committed)}; failed: {len(mutations.failed)} "
            f"{mutations.failed[:3]}; requests sent on after a refused connection: "
            f"{balancer.moved_on}; request time p50 {took[len(took) // 2]:.3f}s, "
            f"max {took[-1]:.3f}s"
        )
        gaps: dict[
            str, float
        ] = {}  # the longest wait between two events at each subscriber (events come ~100/s)
        for subscriber in subscribers:
            expected = [e["id"] for e in truth[subscriber.token]]
            got = [e["id"] for e in subscriber.events]
            arrivals = subscriber.arrivals
            gaps[subscriber.name] = max(b - a for a, b in pairwise(arrivals))
            figures.append(
                f"{subscriber.name}: received {len(got)}/{len(expected)}, "
                f"lost {len(set(expected) - set(got))}, "
                f"duplicated {sum(n - 1 for n in Counter(got).values())}, "
                f"reconnects {subscriber.reconnects}, longest wait between two events "
                f"{gaps[subscriber.name]:.2f}s"
            )

        assert stuck == []
        assert mutations.failed == []
        for phase in ("A restarting", "after A", "B restarting", "after B"):
            assert mutations.committed[phase] > 0, (phase, dict(mutations.committed))
        for subscriber in subscribers:
            assert subscriber.events == truth[subscriber.token], subscriber.name
        assert stays.reconnects == 1 and moves.reconnects == 2 and on_b.reconnects == 1
        assert took[-1] < STALL, "a request waited for a restart"
        assert gaps[moves.name] < STALL and gaps[on_b.name] < STALL, gaps  # no wait for a restart
    finally:
        if mutations is not None:  # a failure above must not leave the loop running
            mutations.stop()
        for subscriber in subscribers:
            await subscriber.close()
        if balancer is not None:
            await balancer.close()
        a.terminate()
        b.terminate()


# --- a task under way, handed to the other instance --------------------------------------------


async def test_sigterm_hands_a_withdraw_under_way_to_the_other_instance_at_once(
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Path,
    figures: list[str],
) -> None:
    """A's worker is cancelling an order at a warehouse that keeps its answer back when A is
    stopped: A gives the task's lease back and announces it, and B takes the task over long
    before the lease (60 s) or B's sweep (30 s) would have let it, cancelling once (the same
    idempotency key) and refunding once."""
    suite = "shutdown: a task handed over"
    require_postgres(suite)  # two processes share one database
    setup = await make_server()
    supplier, distributor = await make_member("SUPPLIER"), await make_member("BUYER")
    await setup.stop()  # from here only the two processes take work

    async def premade(kind: str = "BUYER", **_: Any) -> Member:
        return distributor

    env = {
        "DATABASE_URL": database_url,
        "SECRETS_KEY": base_settings.secrets_key,
        "WORK_LEASE_SECONDS": "60",
        "WORK_SWEEP_SECONDS": "30",
        "WAREHOUSE_TIMEOUT": "30",
        "WAREHOUSE_RETRIES": "0",
        "WAREHOUSE_RECONCILE_AFTER": "3600",
    }
    a = AppProcess(env, tmp_path / "a.log")
    b = AppProcess(env, tmp_path / "b.log")
    running = held_warehouse_simulator()
    held = await anext(running)
    clients: list[GraphQLHttp] = []
    try:
        await asyncio.gather(a.start(), b.start())
        on_a, on_b = GraphQLHttp(a.url), GraphQLHttp(b.url)
        clients += [on_a, on_b]
        d = await partnered(on_a, premade, held.sim, supplier=supplier)
        order_id = await pushed_order(on_a, d)
        held.hold.arm()  # the warehouse cancels, and keeps its answer back
        answered = await withdraw(on_a, distributor.token, order_id)
        assert answered["withdrawal"]["status"] == "WITHDRAWING"
        cancel_path = f"/{warehouse_reference(order_id)}/cancel"
        await eventually(lambda: api_calls(held.sim, cancel_path), len, timeout=20)
        status, took = await sigterm(a)
        stopped_at = time.monotonic()
        held.hold.release()
        await eventually(
            lambda: order_state(on_b, distributor.token, order_id),
            withdrawal_is("WITHDRAWN"),
            timeout=30,
        )
        handed_over = time.monotonic() - stopped_at
        cancels = await api_calls(held.sim, cancel_path)
        _, entries = await distributor_wallet(on_b, d)
        effects = await held.sim.effects()
        figures.append(
            f"SIGTERM to exit {took:.2f}s (status {status}); WITHDRAWN through B "
            f"{handed_over:.2f}s after A exited (lease 60 s, sweep 30 s); cancel calls "
            f"{[(c['idempotency_key'], c['status'], c['replayed']) for c in cancels]}; "
            f"cancelled at the warehouse {effects['outbound_cancelled']}x; "
            f"refunds {len(refunds(entries))}"
        )
        assert status == 0, a.log_tail()
        assert handed_over < HANDED_OVER_WITHIN, b.log_tail()
        assert effects["outbound_cancelled"] == 1
        assert len({c["idempotency_key"] for c in cancels}) == 1
        assert len(refunds(entries)) == 1
    finally:
        for client in clients:
            await client.close()
        for app in (a, b):
            app.terminate()
        held.hold.release()
        await running.aclose()


async def test_a_database_connection_still_taken_holds_the_shutdown_up_two_seconds_at_most(
    base_settings: Settings, caplog: pytest.LogCaptureFixture, figures: list[str]
) -> None:
    """Tortoise's own close waits 10 s for a database connection still taken, then ends it (CI
    once saw SIGTERM take 10.2 s, all of it there). The shutdown's last step ends it after
    ``DATABASE_CLOSE_WAIT`` instead and names the tasks still running then."""
    require_postgres("shutdown: a connection still taken")  # SQLite has no pool to wait on
    server = await start_server(base_settings)
    pool = connections.get("default")._pool  # asyncpg's (a connection taken, never given back)
    taken = await pool.acquire()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="supplygraph"):
        await server.stop()
    took = time.monotonic() - started
    figures.append(f"stopped in {took:.2f}s with a connection still taken")
    assert took < DATABASE_CLOSE_WAIT + 2
    assert "a database connection was still taken" in caplog.text
    with pytest.raises(asyncpg.InterfaceError):  # ended with the pool
        await taken.fetchval("SELECT 1")
