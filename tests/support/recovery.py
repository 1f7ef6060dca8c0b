"""Support for recovery tests: two instances of the service as real processes on one database
and one Redis, told apart by the sockets they call from; simulators that record which socket
called them; and a database session of the test's own that holds locks (to catch an instance in
the middle of a piece of work) and ends the connections a killed instance left behind.

Which instance holds a piece of work is read from the outside, as an operator would: the
simulator records the client port of each call, and the kernel's socket table says which
process owns that port (``socket_owner``); for a database statement, ``pg_stat_activity``
gives the client port of the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from integrations.stores.protocol import API_PREFIX as STORE_API
from integrations.stores.simulator import create_store_simulator
from integrations.warehouses.protocol import API_PREFIX as WAREHOUSE_API
from integrations.warehouses.simulator import create_warehouse_simulator
from tests.conftest import METRICS_HEADERS, Member
from tests.support.distribution import WAREHOUSE_KEY, WarehouseSim
from tests.support.faults import AppProcess, HeldAnswers
from tests.support.graphql_client import GraphQLHttp
from tests.support.server import IDLE_SAFE, free_port, serve
from tests.test_order_flow import SECRET, TOKEN, connect_red_tee, top_up_and_pay
from tests.test_store_integration import Sim

# --- who called: simulators that record the caller's socket ------------------------------------


@dataclass(frozen=True)
class Call:
    path: str
    port: int  # the caller's local port
    caller: str  # who owned that port as the call arrived ("?": not told)
    at: float  # time.monotonic() of its arrival


class CallerLog:
    """ASGI wrapper recording, for every HTTP request whose path starts with ``prefix``, the
    caller's port and (with ``identify``) who owns it, as the call arrives: before the wrapped
    app sees it, so before any delay or hold, and while the caller's socket is open."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.calls: list[Call] = []
        self.identify: Callable[[int], str] | None = None

    def to(self, path_end: str) -> list[Call]:
        return [call for call in self.calls if call.path.endswith(path_end)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            port = int((scope.get("client") or ("", 0))[1])
            caller = self.identify(port) if self.identify is not None else "?"
            self.calls.append(Call(scope["path"], port, caller, time.monotonic()))
        await self.app(scope, receive, send)


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def socket_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` owns the TCP socket from ``local_port`` to ``remote_port`` on this
    machine (None: none of them, e.g. the process is gone)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if _port_of(fields[1]) == local_port and _port_of(fields[2]) == remote_port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
    return None


@dataclass
class RecordedWarehouse:
    """The warehouse simulator, whose answers can be held back after it acted (``hold``), and
    the callers of its API (``callers``)."""

    sim: WarehouseSim
    hold: HeldAnswers
    callers: CallerLog
    port: int


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def recorded_warehouse(instances: Instances) -> AsyncIterator[RecordedWarehouse]:
    """``tests.support.faults.held_warehouse_simulator`` with its callers recorded, named
    after ``instances``."""
    app = create_warehouse_simulator(api_key=WAREHOUSE_KEY, callback_secret="not-yet-issued")
    hold = HeldAnswers(app)
    callers = CallerLog(hold, WAREHOUSE_API)
    try:
        async with (
            serve(callers) as url,
            httpx.AsyncClient(base_url=url, limits=IDLE_SAFE) as control,
        ):
            callers.identify = lambda port: instances.name_of(port, _port(url))
            yield RecordedWarehouse(
                WarehouseSim(url=url, control=control), hold, callers, _port(url)
            )
    finally:
        hold.release()


@dataclass
class RecordedStore:
    """The store simulator (``tests.test_store_integration.Sim``) and its API's callers."""

    sim: Sim
    callers: CallerLog
    port: int


async def recorded_store(instances: Instances) -> AsyncIterator[RecordedStore]:
    """The store simulator with its API's callers recorded, named after ``instances``."""
    app = create_store_simulator(access_token=TOKEN, webhook_secret=SECRET)
    callers = CallerLog(app, STORE_API)
    async with (
        serve(callers) as url,
        httpx.AsyncClient(base_url=url, timeout=30, limits=IDLE_SAFE) as control,
    ):
        callers.identify = lambda port: instances.name_of(port, _port(url))
        yield RecordedStore(Sim(url=url, control=control), callers, _port(url))


# --- two instances ------------------------------------------------------------------------------


class Instance(AppProcess):
    """``python main.py serve`` named ``name``, which can also hang (SIGSTOP) and wake again.
    ``inherit_not``: settings not taken from this process's environment (their defaults)."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: Path,
        port: int,
        *,
        inherit_not: Iterable[str] = (),
    ) -> None:
        super().__init__(env, log_path, port=port)
        for setting in inherit_not:
            if setting not in env:
                self.env.pop(setting, None)
        self.name = name
        self.hung = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def hang(self) -> None:
        """SIGSTOP: the process keeps its sockets and leases and does nothing, as a hung one."""
        assert self.alive
        os.kill(self.pid, signal.SIGSTOP)
        self.hung = True

    def wake(self) -> None:
        if self.hung and self.alive:
            os.kill(self.pid, signal.SIGCONT)
        self.hung = False

    def kill(self) -> None:
        super().kill()  # SIGKILL ends a stopped process too
        self.hung = False

    def terminate(self, timeout: float = 20) -> None:
        self.wake()  # a stopped process would not act on SIGTERM
        super().terminate(timeout)


class Instances:
    """Instances ``a`` and ``b`` of the service, each on a port of its own, sharing ``env``
    (one database, one Redis, one secrets key); a killed one is started again on its port.

    They share one ``PUBLIC_URL`` too (A's address, unless ``env`` gives one), as instances
    behind one address do: a warehouse order carries it as its callback URL, and an instance
    taking a push over sends the same body again under the same idempotency key."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, *, inherit_not: Iterable[str] = ()
    ) -> None:
        a_port = free_port()
        self.env = {"PUBLIC_URL": f"http://127.0.0.1:{a_port}", **env}
        self.log_dir = log_dir
        self.inherit_not = tuple(inherit_not)
        self.a = self._instance("A", a_port)
        self.b = self._instance("B", free_port())

    def _instance(self, name: str, port: int) -> Instance:
        log = self.log_dir / f"instance-{name}.log"
        return Instance(name, self.env, log, port, inherit_not=self.inherit_not)

    def name_of(self, local_port: int, remote_port: int) -> str:
        """The name of the instance that owns that socket, or "gone"."""
        owner = self.owner(local_port, remote_port)
        return owner.name if owner is not None else "gone"

    @property
    def all(self) -> list[Instance]:
        return [self.a, self.b]

    async def start(self) -> None:
        await asyncio.gather(*(instance.start() for instance in self.all))

    async def restart(self, instance: Instance) -> Instance:
        """Start the (killed) ``instance`` again on its port; returns the new process."""
        instance.kill()
        again = self._instance(instance.name, instance.port)
        if instance is self.a:
            self.a = again
        else:
            self.b = again
        await again.start()
        return again

    async def ensure_running(self) -> None:
        """Both running and awake (whatever an earlier test left)."""
        for instance in self.all:
            instance.wake()
            if not instance.alive:
                await self.restart(instance)

    def owner(self, local_port: int, remote_port: int) -> Instance | None:
        """The running instance that owns the socket from ``local_port`` to ``remote_port``."""
        pids = {instance.pid: instance for instance in self.all if instance.alive}
        pid = socket_owner(local_port, remote_port, pids)
        return None if pid is None else pids[pid]

    def close(self) -> None:
        for instance in self.all:
            instance.terminate()


async def loop_rounds(instance: Instance) -> dict[str, float]:
    """Rounds each background loop of ``instance`` has run (``/metrics``), by loop name."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{instance.url}/metrics", headers=METRICS_HEADERS)
    response.raise_for_status()
    rounds = {}
    for line in response.text.splitlines():
        if line.startswith("supplygraph_background_rounds_total{"):
            labels, value = line.rsplit(" ", 1)
            rounds[labels.split('loop="', 1)[1].split('"', 1)[0]] = float(value)
    return rounds


async def rounds_after(
    instance: Instance, before: dict[str, float], loops: Iterable[str], timeout: float = 30
) -> dict[str, float]:
    """Wait until each of ``loops`` of ``instance`` has finished a round since ``before``
    (a loop missing from ``before``: its first round); the rounds then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rounds = await loop_rounds(instance)
        if all(rounds.get(name, 0) > before.get(name, 0) for name in loops):
            return rounds
        assert loop.time() < deadline, f"{instance.name}: no round of {list(loops)}: {rounds}"
        await asyncio.sleep(0.1)


# --- the test's own database session ------------------------------------------------------------


@dataclass
class Backend:
    pid: int
    client_port: int
    wait_event_type: str | None
    query: str
    state: str | None = None  # "active", "idle", "idle in transaction", ...
    blocked_by: tuple[int, ...] = ()  # pg_blocking_pids

    def __str__(self) -> str:
        blocked = f" blocked by {list(self.blocked_by)}" if self.blocked_by else ""
        return f"{self.pid} {self.state} {self.wait_event_type}{blocked}: {self.query[:70]}"


@dataclass
class Database:
    """A connection of the test's own: locks it holds stand for a slow database (the instance
    that meets them waits there, holding its lease), and it ends the connections of a killed
    instance, as PostgreSQL does once it notices their client is gone."""

    connection: asyncpg.Connection
    port: int  # the database server's, the far end of every session's socket
    locked: list[str] = field(default_factory=list)

    @classmethod
    async def connect(cls, database_url: str) -> Database:
        url = database_url.replace("postgres://", "postgresql://", 1)
        return cls(await asyncpg.connect(url), urlparse(url).port or 5432)

    async def lock(self, statement: str) -> None:
        """Run ``statement`` (a LOCK or a lock function) in a transaction held until
        ``release``."""
        if not self.locked:
            await self.connection.execute("BEGIN")
        await self.connection.execute(statement)
        self.locked.append(statement)

    async def release(self) -> None:
        if self.locked:
            await self.connection.execute("ROLLBACK")
            self.locked = []

    async def backends(self) -> list[Backend]:
        """The other sessions on this database."""
        rows = await self.connection.fetch(
            "SELECT pid, client_port, wait_event_type, query, state, "
            "pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND client_port IS NOT NULL"
        )
        return [
            Backend(
                row["pid"],
                row["client_port"],
                row["wait_event_type"],
                row["query"],
                row["state"],
                tuple(row["blocked_by"] or ()),
            )
            for row in rows
        ]

    async def backends_of(self, instance: Instance) -> list[Backend]:
        """The sessions ``instance`` has open (while it runs: the sockets are its)."""
        pids = [instance.pid]
        return [
            backend
            for backend in await self.backends()
            if socket_owner(backend.client_port, self.port, pids) is not None
        ]

    async def terminate(self, backends: Iterable[Backend]) -> None:
        for backend in backends:
            await self.connection.execute("SELECT pg_terminate_backend($1)", backend.pid)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.release()
        await self.connection.close()


# --- a store order of a connected variant, through an instance --------------------------------


@dataclass
class StoreSetup:
    store: dict[str, Any]  # connectStore's payload
    red: dict[str, Any]  # the store's Red/M variant
    webhook_url: str


async def connected_store(
    client: GraphQLHttp, url: str, supplier: Member, buyer: Member, sim: Sim, cat: dict[str, Any]
) -> StoreSetup:
    """A store of ``buyer`` whose Red/M variant is connected to the supplier's TEE-R-M, its
    webhooks delivered to the instance at ``url``."""
    store, red, connected = await connect_red_tee(client, buyer, sim, cat)
    assert connected["userErrors"] == [], connected
    return StoreSetup(store, red, f"{url}{store['webhookUrlPath']}")


async def store_order(client: GraphQLHttp, buyer: Member, name: str, timeout: float = 20) -> dict:
    """The buyer's order of store order ``name`` (e.g. "#1001"), once it has been taken in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        edges = (
            await client.data(
                "{ orders(first: 50) { edges { node { id status storeOrderNumber } } } }",
                token=buyer.token,
            )
        )["orders"]["edges"]
        found = [e["node"] for e in edges if e["node"]["storeOrderNumber"] == name]
        if found:
            [order] = found
            return order
        assert loop.time() < deadline, f"store order {name} not taken in after {timeout}s"
        await asyncio.sleep(0.1)


async def paid_store_order(
    client: GraphQLHttp, supplier: Member, buyer: Member, sim: Sim, setup: StoreSetup
) -> dict:
    """A store order of the connected variant, delivered by webhook, taken in and paid from
    the buyer's wallet (which the supplier tops up first)."""
    made = await sim.order(setup.red["id"], deliver_to=setup.webhook_url)
    assert made["webhook_status"] == 202, made
    order = await store_order(client, buyer, made["order"]["name"])
    await top_up_and_pay(client, supplier, buyer, order["id"])
    return order
