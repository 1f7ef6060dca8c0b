"""Live subscribers: order status changes pushed over GraphQL subscriptions to many sockets.

N WebSocket clients (graphql-transport-ws, ``connection_init`` with the live buyer's token, one
``subscription { orderStatusChanged { eventId orderId fromStatus toStatus reason at } }`` each,
all the same document, variables and organisation) stay connected while the bench cancels the
live buyer's unpaid orders (``bench/seed.py``, ``LIVE_ORDERS``; more are made first when a
run's changes need them, ``live_orders``) one by one through ``cancelOrders`` over HTTP, each
change sent when it is due whether or not the previous one has been answered:

- scenario ``a``: 1,000 subscribers, blocks of 5 changes, one every 200 ms;
- scenario ``b``: 5,000 subscribers, blocks of 3 changes, one a second;

8 blocks per server, 4 with ``--quick`` (and 2,000 subscribers in ``b``).
``BENCH_LIVE_SUBSCRIBERS`` (``20`` or ``20,40``: one count for every scenario or one per
scenario), ``BENCH_LIVE_CHANGES`` (per block) and ``BENCH_LIVE_BLOCKS`` override the sizes (the
smoke test runs 20 subscribers, 2 blocks of 3 changes); ``BENCH_LIVE_WORKERS`` fixes the number
of client processes.

Per scenario: for the floor, then supplygraph, the server's RSS; its sockets open (at most 64
handshakes at a time per client process) and subscribe; probe changes (not measured, at most 4)
until one has reached every open socket, so every subscription is live on the server (if none
does, the scenario goes on and the progress line says so); 1 s idle, RSS again. Both servers'
sockets then stay open while their blocks run in turns, ABBA (floor, app, app, floor, floor,
...), so a drift of the machine's speed over the scenario weighs on both alike (one server's
blocks after the other's moved the ratio by ±0.2 between quick runs of one commit). A block:
the server's CPU time (``bench.common.cpu_ns``: the scheduler's ns on CPU of every thread of
its process tree; the 10 ms clock ticks of ``/proc/<pid>/stat`` moved a quick run's ratio by
about ±0.15); its changes; waiting until every socket has each (or 5 s pass with nothing new);
CPU time again, at the later of the last delivery and the end of the block's window (its
changes' span plus ``BLOCK_TAIL``, 1.25 s: supplygraph settles the changes' service levels a
second after them, and that work is the changes' too). Then both servers' sockets close and,
2 s later, each RSS is read once more. Each server first takes 20 sockets and one probe,
unmeasured, so first-use costs fall outside the figures.
Figures:

- latency: client receipt (``time.time()`` when the socket's bytes are read) minus the event's
  own timestamp in the payload, ``at``. supplygraph sets ``at`` when it writes the event inside
  the mutation's transaction, just before the commit; the floor when ``/emit`` starts. Both
  are this machine's wall clock. p50, p99 and max over every delivery of the measured changes;
- lost: subscribers x changes - deliveries received (a socket that never opened loses all);
- server CPU per delivery: the server's CPU time over a block's window (the mutations' or
  ``/emit``'s HTTP requests included), divided by the block's deliveries; the median of the
  blocks (the progress line shows each block's and all blocks' together). A background round
  of the server's own (the SLA sweep, reconciliation) that falls in a block counts in that
  block; the progress line lists those rounds;
- server RSS per 1,000 idle subscribers: (RSS connected - RSS before) / subscribers x 1,000,
  and the RSS after the subscribers closed, beside the RSS before they connected. RSS is the
  process's: memory an earlier scenario freed is reused, so ``b``'s figure counts only growth
  beyond what ``a`` left, for both servers alike.

Baseline, same run, same clients and schedule: ``bench/ws_floor.py``, a hand-written
graphql-transport-ws endpoint under uvicorn that sends one pre-serialised ``next`` frame to
every socket when the bench posts ``/emit``. Targets: CPU per delivery and p99 at most 1.3x the
floor's, 0 lost.

The clients run in worker processes (``python bench/live_subscribers.py worker``, commanded
over stdin/stdout with JSON lines) on the load generator's core, up to ``SOCKETS_PER_WORKER``
sockets each. A socket is an asyncio protocol driving websockets' Sans-I/O client (no
compression, no client pings; server pings and ``ping`` messages are answered): 17-23 us of
client CPU per delivery, where websockets' asyncio client took about 40 us. Measured on this
shared 2-core machine against the floor with 5,000 sockets and one change a second, one
process used about 10 % of the load generator's core over the phase and its p99 (300-370 ms)
followed the floor's own send loop (190-330 ms of wall time per change for 5,000 sends); two
processes on that core gave no consistent difference (p99 255-585 ms), so one process holds
all 5,000. Every scenario prints the clients' CPU per delivery and the floor's send time.
The open-file limit of this process (inherited by the workers) is raised to what the sockets
need, and the servers' limits are checked and, if low, raised with ``prlimit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if __name__ == "__main__":  # a client worker, started by path: import from the checkout's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from bench.common import (
    PYTHON,
    ROOT,
    RawConnection,
    Req,
    Row,
    ServerProcess,
    at_most,
    compared,
    cpu_ns,
    free_port,
    make_req,
    percentile,
    progress,
)
from schema.global_ids import gid

if TYPE_CHECKING:
    from bench.context import BenchContext

NAME = "live_subscribers"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True

MAX_RATIO = 1.3  # CPU per delivery and p99, against the floor
PROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = (
    "subscription Live { orderStatusChanged { eventId orderId fromStatus toStatus reason at } }"
)
CANCEL = (
    "mutation Cancel($ids: [ID!]!, $reason: String!) { "
    "cancelOrders(orderIds: $ids, reason: $reason) { userErrors { code message } } }"
)
SOCKETS_PER_WORKER = 5_000
OPENING_AT_ONCE = 64  # handshakes in flight per worker
OPEN_TIMEOUT = 60.0
CLOSE_TIMEOUT = 5.0
MAX_FRAME = 1_048_576
PONG = b'{"type":"pong"}'
WARM_UP_SUBSCRIBERS = 20
FD_MARGIN = 1_024
PROBES = 4
PROBE_IDLE = 3.0  # s without a new receipt of a probe: send another
# s a block's window lasts beyond its changes' span: a change's event settles its service
# levels a second later (integrations.sla.SETTLE_AFTER), work the change causes
BLOCK_TAIL = 1.25
DRAIN_IDLE = 5.0  # s without a new delivery: what has not arrived is lost
DRAIN_MAX = 300.0
IDLE_SETTLE = 1.0
CLOSE_SETTLE = 2.0
POLL = 0.05
STALE_AFTER = 3.0  # s idle before the change connection is reopened
MIB = 1024 * 1024
MAX_SAMPLES_KEPT = 20_000  # per series in latencies.json, as bench.context keeps
WORKER_SCRIPT = Path(__file__).resolve()


@dataclass(frozen=True)
class Scenario:
    letter: str
    subscribers: int
    changes: int  # per block
    interval: float
    blocks: int  # per server

    @property
    def label(self) -> str:
        return f"{self.letter}{self.subscribers}"


def scenarios(quick: bool) -> list[Scenario]:
    """The scenarios of this run, with ``BENCH_LIVE_*`` overrides applied."""
    blocks = 4 if quick else 8
    chosen = [
        Scenario("a", 1_000, 5, 0.2, blocks),
        Scenario("b", 2_000 if quick else 5_000, 3, 1.0, blocks),
    ]
    counts = [int(n) for n in os.environ.get("BENCH_LIVE_SUBSCRIBERS", "").split(",") if n.strip()]
    if counts:
        counts = counts * len(chosen) if len(counts) == 1 else counts
        chosen = [replace(s, subscribers=n) for s, n in zip(chosen, counts, strict=False)]
    if os.environ.get("BENCH_LIVE_CHANGES"):
        chosen = [replace(s, changes=int(os.environ["BENCH_LIVE_CHANGES"])) for s in chosen]
    if os.environ.get("BENCH_LIVE_BLOCKS"):
        chosen = [replace(s, blocks=int(os.environ["BENCH_LIVE_BLOCKS"])) for s in chosen]
    return chosen


# --------------------------------------------------------------------------- client worker


class Socket(asyncio.Protocol):
    """One subscriber on websockets' Sans-I/O client protocol: the handshake, then
    ``connection_init``, ``subscribe`` once acknowledged, and every frame read as it arrives
    (stamped once per read). Server pings are answered by the protocol, ``ping`` messages
    with ``pong``."""

    def __init__(self, owner: Subscribers, url: str, init: bytes, subscribe: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.owner = owner
        self.ws = ClientProtocol(
            parse_uri(url), subprotocols=[Subprotocol(PROTOCOL)], max_size=MAX_FRAME
        )
        self.init, self.subscribe = init, subscribe
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.seen: set[str] = set()
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.handshake_exc is not None:
                    self._fail(f"handshake: {self.ws.handshake_exc}")
                elif self.ws.subprotocol != PROTOCOL:
                    self._fail(f"subprotocol {self.ws.subprotocol!r} chosen")
                else:
                    self.ws.send_text(self.init)
            elif event.opcode is Opcode.TEXT or event.opcode is Opcode.CONT:
                self.fragments.append(event.data)
                if event.fin:
                    message, self.fragments = b"".join(self.fragments), []
                    self._message(message, now)
        self._flush()

    def _message(self, data: bytes, now: float) -> None:
        message = json.loads(data)
        kind = message.get("type")
        if kind == "next":
            self.owner.delivered(self, message.get("payload") or {}, now)
        elif kind == "connection_ack":
            self.ws.send_text(self.subscribe)
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "ping":
            self.ws.send_text(PONG)
        else:
            self._fail(f"{kind}: {message}")

    def _fail(self, problem: str) -> None:
        self.owner.note(problem)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(problem))
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
        elif self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.ws.close_expected():
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.gone.done():
            self.gone.set_result(None)
        self.owner.lost(self)

    async def close(self) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self.gone), CLOSE_TIMEOUT)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


class Subscribers:
    """One worker process's sockets and what they received (keyed by the change's orderId)."""

    def __init__(self) -> None:
        self.sockets: set[Socket] = set()
        self.received: Counter[str] = Counter()  # orderId -> sockets that got it
        self.latencies: defaultdict[str, list[float]] = defaultdict(list)  # orderId -> ms
        self.stamps: dict[str, float] = {}  # ``at`` -> POSIX time
        self.duplicates = 0
        self.failed = 0
        self.dropped = 0
        self.errors: list[str] = []
        self.closing = False

    def note(self, problem: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(problem[:300])

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        kind = command["cmd"]
        keys: list[str] = command.get("keys", [])
        if kind == "open":
            return await self.open(
                command["url"], command["token"], command["query"], command["count"]
            )
        if kind == "received":
            return {
                "received": sum(self.received[k] for k in keys),
                "open": len(self.sockets),
            }
        if kind == "cpu":
            return {"cpu": time.process_time()}
        if kind == "report":
            return {
                "latencies_ms": [round(x, 3) for k in keys for x in self.latencies[k]],
                "last_ms": [round(max(self.latencies[k], default=math.nan), 3) for k in keys],
                "received": sum(self.received[k] for k in keys),
                "duplicates": self.duplicates,
                "dropped": self.dropped,
                "failed": self.failed,
                "errors": self.errors,
            }
        if kind == "close":
            return await self.close()
        return {}

    async def open(self, url: str, token: str, query: str, count: int) -> dict[str, Any]:
        """``count`` more sockets, subscribed (at most ``OPENING_AT_ONCE`` handshakes at once)."""
        loop = asyncio.get_running_loop()
        parsed = parse_uri(url)
        init = json.dumps(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        ).encode()
        subscribe = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
        gate = asyncio.Semaphore(OPENING_AT_ONCE)
        failed_before = self.failed

        async def one() -> None:
            async with gate:
                socket: Socket | None = None
                try:
                    async with asyncio.timeout(OPEN_TIMEOUT):
                        _, socket = await loop.create_connection(
                            lambda: Socket(self, url, init, subscribe.encode()),
                            parsed.host,
                            parsed.port,
                        )
                        await socket.ready
                except Exception as exc:
                    self.failed += 1
                    self.note(f"opening: {type(exc).__name__}: {exc}")
                    if socket is not None and socket.transport is not None:
                        socket.transport.abort()
                    return
            self.sockets.add(socket)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return {
            "open": len(self.sockets),
            "failed": self.failed - failed_before,
            "seconds": time.perf_counter() - started,
            "errors": self.errors,
        }

    def delivered(self, socket: Socket, payload: dict[str, Any], now: float) -> None:
        change = (payload.get("data") or {}).get("orderStatusChanged")
        if change is None:
            self.note(f"next without data: {payload}")
            return
        key = change["orderId"]
        if key in socket.seen:
            self.duplicates += 1
            return
        socket.seen.add(key)
        self.received[key] += 1
        at = change["at"]
        stamp = self.stamps.get(at)
        if stamp is None:
            stamp = self.stamps[at] = datetime.fromisoformat(at).timestamp()
        self.latencies[key].append((now - stamp) * 1000.0)

    def lost(self, socket: Socket) -> None:
        if socket in self.sockets:
            self.sockets.discard(socket)
            if not self.closing:
                self.dropped += 1
                self.note("a socket was closed by the server")

    async def close(self) -> dict[str, Any]:
        self.closing = True
        sockets = list(self.sockets)
        await asyncio.gather(*(s.close() for s in sockets))
        self.sockets.clear()
        return {"closed": len(sockets)}


async def worker_main() -> None:
    """Answer one JSON line on stdout per command line on stdin, until ``exit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    subscribers = Subscribers()
    while line := await reader.readline():
        command = json.loads(line)
        answer = await subscribers.handle(command)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if command["cmd"] == "exit":
            return


class ClientPool:
    """The worker processes of one phase, commanded together (sockets split evenly)."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, workers: int, log: IO[bytes]) -> ClientPool:
        processes = [
            await asyncio.create_subprocess_exec(
                PYTHON,
                str(WORKER_SCRIPT),
                "worker",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=2**26,
            )
            for _ in range(workers)
        ]
        return cls(processes)

    async def _ask(self, process: asyncio.subprocess.Process, command: dict[str, Any]) -> Any:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps(command) + "\n").encode())
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"a client worker exited ({process.returncode}); see its log")
        return json.loads(line)

    async def ask(self, command: dict[str, Any]) -> list[Any]:
        return list(await asyncio.gather(*(self._ask(p, command) for p in self.processes)))

    async def open(self, url: str, token: str, count: int) -> tuple[int, list[str]]:
        """Open ``count`` subscribed sockets; (sockets open, first errors)."""
        share, extra = divmod(count, len(self.processes))
        answers = await asyncio.gather(
            *(
                self._ask(
                    p,
                    {
                        "cmd": "open",
                        "url": url,
                        "token": token,
                        "query": SUBSCRIPTION,
                        "count": share + (i < extra),
                    },
                )
                for i, p in enumerate(self.processes)
            )
        )
        return sum(a["open"] for a in answers), [e for a in answers for e in a["errors"]]

    async def received(self, keys: Sequence[str]) -> tuple[int, int]:
        """(deliveries of ``keys`` received, sockets open)."""
        answers = await self.ask({"cmd": "received", "keys": list(keys)})
        return sum(a["received"] for a in answers), sum(a["open"] for a in answers)

    async def cpu(self) -> float:
        return sum(a["cpu"] for a in await self.ask({"cmd": "cpu"}))

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None and process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.write(b'{"cmd": "exit"}\n')
                    process.stdin.close()
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def worker_count(subscribers: int) -> int:
    fixed = os.environ.get("BENCH_LIVE_WORKERS")
    return int(fixed) if fixed else max(1, math.ceil(subscribers / SOCKETS_PER_WORKER))


# --------------------------------------------------------------------------- status changes


class Changes(ABC):
    """What makes one status change of a server, named by the orderId its event carries.

    Changes may overlap (each is sent when it is due, whether or not the previous one has been
    answered), so requests take an idle keep-alive connection or open one; a connection idle for
    longer than ``STALE_AFTER`` is closed instead of reused (uvicorn closes idle connections
    after 5 s)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.idle: list[tuple[RawConnection, float]] = []  # with when it was last used

    @abstractmethod
    def next_key(self) -> str:
        """The orderId the next change's event will carry."""

    @abstractmethod
    async def change(self, key: str) -> None:
        """Make the change named ``key`` (its event reaches the subscribers)."""

    def summary(self) -> str:
        """What the server said about the changes since the last call, for the progress line."""
        return ""

    async def send(self, req: Req) -> tuple[int, bytes]:
        conn = None
        while self.idle and conn is None:
            conn, used = self.idle.pop()
            if time.monotonic() - used > STALE_AFTER:
                await conn.close()
                conn = None
        if conn is None:
            conn = RawConnection(self.server.host, self.server.port)
        answer = await conn.send(req)  # a connection that failed is closed by send
        self.idle.append((conn, time.monotonic()))
        return answer

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn, _ in idle:
            await conn.close()


def live_orders_needed(chosen: Sequence[Scenario]) -> int:
    """The orders supplygraph cancels at most: the warm-up's probes, then each scenario's
    probes and the changes of its blocks."""
    return PROBES + sum(PROBES + s.blocks * s.changes for s in chosen)


async def live_orders(ctx: BenchContext, needed: int) -> list[int]:
    """The live buyer's unpaid orders, ``needed`` of them at least: ``bench/seed.py`` makes
    ``LIVE_ORDERS``, and a run with more changes (``BENCH_LIVE_CHANGES``) gets the rest here,
    made as those are (``create_manual_order`` by the buyer's owner, the same line, address
    and method), so it never runs out of changes midway."""
    have = list(ctx.data.live_order_ids)
    if len(have) >= needed or not have:
        return have
    from tortoise import Tortoise

    from bench.seed import owner_viewer
    from domain import secrets
    from domain.db import tortoise_config
    from domain.orders import intake
    from domain.orders.models import Order, OrderLine
    from domain.organisations.models import Organisation, User

    secrets.configure(ctx.secrets_key)
    await Tortoise.init(config=tortoise_config(ctx.database_url))
    try:
        model = await Order.get(id=have[0])
        line = await OrderLine.filter(order_id=model.id).first()
        assert line is not None and line.sku_id is not None
        org = await Organisation.get(id=model.buyer_id)
        owner = await User.filter(organisation_id=org.id).order_by("id").first()
        assert owner is not None
        viewer = owner_viewer(org, owner)
        for _ in range(needed - len(have)):
            order = await intake.create_manual_order(
                viewer=viewer,
                lines=[intake.ManualLine(line.sku_id, line.quantity)],
                shipping_address=model.shipping_address,
                logistics_method_id=model.logistics_method_id,
            )
            have.append(order.id)
    finally:
        await Tortoise.close_connections()
    progress(f"  {NAME}: {needed - len(ctx.data.live_order_ids)} more live orders made")
    return have


class Cancellations(Changes):
    """supplygraph: ``cancelOrders`` on the next of the live buyer's unpaid seeded orders (keys
    are their global ids, which the mutation takes and the events carry)."""

    def __init__(self, server: ServerProcess, token: str, order_ids: Sequence[int]) -> None:
        super().__init__(server)
        self.token = token
        self.total = len(order_ids)
        self.keys = iter([gid("Order", i) for i in order_ids])

    def next_key(self) -> str:
        key = next(self.keys, None)
        if key is None:
            raise RuntimeError(f"all {self.total} live orders are cancelled (live_orders_needed)")
        return key

    async def change(self, key: str) -> None:
        body = json.dumps({"query": CANCEL, "variables": {"ids": [key], "reason": NAME}}).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {self.token}"}
        status, answer = await self.send(make_req("POST", "/graphql", headers, body))
        data = json.loads(answer) if answer.startswith(b"{") else {}
        payload = (data.get("data") or {}).get("cancelOrders") or {}
        if status != 200 or data.get("errors") or payload.get("userErrors") != []:
            raise RuntimeError(f"cancelOrders {key} failed: {status} {answer[:300]!r}")


class FloorEvents(Changes):
    """The floor: ``POST /emit`` with a made-up orderId (a global id, as supplygraph's are)."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(server)
        self.keys = (gid("Order", n) for n in itertools.count(1))
        self.send_seconds: list[float] = []

    def next_key(self) -> str:
        return next(self.keys)

    async def change(self, key: str) -> None:
        body = json.dumps({"orderId": key}).encode()
        req = make_req("POST", "/emit", {"content-type": "application/json"}, body)
        status, answer = await self.send(req)
        if status != 200:
            raise RuntimeError(f"/emit failed: {status} {answer[:300]!r}")
        self.send_seconds.append(json.loads(answer)["seconds"])

    def summary(self) -> str:
        times, self.send_seconds = sorted(self.send_seconds), []
        if not times:
            return ""
        return (
            f"; the floor took {statistics.median(times) * 1000:.0f} ms (median) per change to send"
        )


# --------------------------------------------------------------------------- the server process


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn with several workers forks them)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for p in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE")


def raise_open_files(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to at least ``needed`` (workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"open files: hard limit {hard} < {needed} needed (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def check_server_open_files(server: ServerProcess, needed: int) -> str:
    """The server's soft RLIMIT_NOFILE, raised with ``prlimit`` when below ``needed``."""
    assert server.process is not None
    notes = []
    for pid in process_tree(server.process.pid):
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            if hard != resource.RLIM_INFINITY and hard < needed:
                raise RuntimeError(f"{server.name}: open files hard limit {hard} < {needed}")
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (needed, hard))
            notes.append(f"{soft} raised to {needed}")
        else:
            notes.append(str(soft))
    return f"{server.name} open-file limit {', '.join(notes)}"


# --------------------------------------------------------------------------- one phase


@dataclass
class Target:
    role: str
    server: ServerProcess
    token: str
    changes: Changes
    background: bool = False  # has background loops whose rounds /metrics counts

    def pids(self) -> list[int]:
        """The server's process tree, looked up once per phase (uvicorn's workers are forked
        at start-up); an error if the server is no longer running."""
        process = self.server.process
        assert process is not None
        if process.poll() is not None:
            raise RuntimeError(
                f"{self.server.name} exited with {process.returncode}; see {self.server.log_path}"
            )
        return process_tree(process.pid)

    @property
    def url(self) -> str:
        return f"ws://{self.server.host}:{self.server.port}/graphql"

    async def rounds(self) -> dict[str, float]:
        """supplygraph's background loops' rounds so far (``/metrics``); none for the floor.
        A phase prints those run during its changes: work of the instance's own (a sweep, a
        settle, reconciliation) that its CPU per delivery also counts."""
        if not self.background:
            return {}
        from bench.idle_cpu import background_rounds  # idle_cpu imports this module

        return await background_rounds(self.server.host, self.server.port)


@dataclass
class Outcome:
    subscribers: int
    opened: int
    changes: int
    received: int
    latencies_ms: list[float]
    block_cpu_us: list[float]  # CPU per delivery of each block
    cpu_seconds: float
    seconds: float
    client_cpu_seconds: float
    rss_before: int
    rss_connected: int
    rss_after: int
    late_ms: float
    duplicates: int
    dropped: int

    @property
    def expected(self) -> int:
        return self.subscribers * self.changes

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def max_ms(self) -> float:
        return self.latencies_ms[-1] if self.latencies_ms else math.nan

    @property
    def cpu_per_delivery_us(self) -> float:
        """The median of the blocks' CPU per delivery: a block that a background round of
        the server's own (a sweep, a reconciliation) happens to fall in is one block of several,
        not a share of the whole figure."""
        measured = [us for us in self.block_cpu_us if not math.isnan(us)]
        return statistics.median(measured) if measured else math.nan

    @property
    def mean_cpu_per_delivery_us(self) -> float:
        return self.cpu_seconds / self.received * 1e6 if self.received else math.nan

    @property
    def rss_per_1000_mib(self) -> float:
        if not self.opened:
            return math.nan
        return (self.rss_connected - self.rss_before) / self.opened * 1000 / MIB


async def probe(pool: ClientPool, target: Target) -> str:
    """Changes until one reaches every open socket: every subscription is live on the server.
    Up to ``PROBES`` of them; what they reached, for the progress line (a server that never
    reaches every socket is measured all the same: what it misses is lost)."""
    reached: list[str] = []
    for attempt in range(1, PROBES + 1):
        key = target.changes.next_key()
        await target.changes.change(key)
        clock = time.monotonic()
        last, last_at = -1, clock
        while True:
            got, open_ = await pool.received([key])
            now = time.monotonic()
            if open_ and got >= open_:
                return f"{attempt} probe{'s' if attempt > 1 else ''}"
            if got != last:
                last, last_at = got, now
            elif now - last_at > PROBE_IDLE:
                break
            await asyncio.sleep(POLL)
        reached.append(f"{got}/{open_}")
    return f"NO probe reached every socket: {', '.join(reached)}"


async def drain(
    pool: ClientPool, pids: list[int], keys: list[str], expected: int
) -> tuple[int, float]:
    """Wait until ``expected`` deliveries of ``keys`` arrived or nothing new came for
    ``DRAIN_IDLE``; (server CPU ns, perf_counter) at the last delivery seen."""
    started = time.monotonic()
    last = -1
    mark = (cpu_ns(pids), time.perf_counter())
    last_at = started
    while True:
        got, _ = await pool.received(keys)
        now = time.monotonic()
        if got != last:
            last, last_at = got, now
            mark = (cpu_ns(pids), time.perf_counter())
        if got >= expected or now - last_at > DRAIN_IDLE or now - started > DRAIN_MAX:
            return mark
        await asyncio.sleep(POLL)


async def warm_up(target: Target, log: IO[bytes]) -> None:
    """A few sockets through one probe and closed: code paths loaded before anything counts."""
    pool = await ClientPool.start(1, log)
    try:
        opened, errors = await pool.open(target.url, target.token, WARM_UP_SUBSCRIBERS)
        if opened < WARM_UP_SUBSCRIBERS:
            raise RuntimeError(f"{target.role}: {opened}/{WARM_UP_SUBSCRIBERS} opened: {errors}")
        await probe(pool, target)
        await pool.ask({"cmd": "close"})
    finally:
        await pool.stop()


@dataclass(frozen=True)
class Block:
    """One block of a server's changes: its deliveries and the server's CPU over its window."""

    received: int
    cpu_seconds: float
    seconds: float
    late: float  # s the latest change was sent after it was due
    rounds: dict[str, float]

    @property
    def cpu_per_delivery_us(self) -> float:
        return self.cpu_seconds / self.received * 1e6 if self.received else math.nan


@dataclass
class Subscribed:
    """One server's subscribers for one scenario, open and live, and its blocks so far."""

    target: Target
    pool: ClientPool
    workers: int
    opened: int
    errors: list[str]
    opening: float
    probes: str
    rss_before: int
    rss_connected: int
    client_cpu: float
    keys: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


async def subscribe(target: Target, scenario: Scenario, log: IO[bytes]) -> Subscribed:
    """``scenario.subscribers`` sockets open on ``target``, each subscription live (probed),
    the server's RSS before and after; the sockets stay open until ``outcome_of``."""
    pids = target.pids()
    rss_before = rss_bytes(pids)
    workers = worker_count(scenario.subscribers)
    pool = await ClientPool.start(workers, log)
    try:
        started = time.perf_counter()
        opened, errors = await pool.open(target.url, target.token, scenario.subscribers)
        opening = time.perf_counter() - started
        if not opened:
            target.pids()  # says so if the server has exited
            raise RuntimeError(f"{target.role}: no socket opened: {errors}")
        probes = await probe(pool, target)
        await asyncio.sleep(IDLE_SETTLE)
        target.changes.summary()  # what the probes reported is not shown
        return Subscribed(
            target=target,
            pool=pool,
            workers=workers,
            opened=opened,
            errors=errors,
            opening=opening,
            probes=probes,
            rss_before=rss_before,
            rss_connected=rss_bytes(pids),
            client_cpu=await pool.cpu(),
        )
    except BaseException:
        await pool.stop()
        raise


async def block(subscribed: Subscribed, scenario: Scenario) -> Block:
    """``scenario.changes`` changes on their schedule, every delivery waited for, and the
    server's CPU from the first change to the later of the last delivery and the end of the
    block's window (its changes' span plus ``BLOCK_TAIL``: work a change leaves for a moment
    later, such as settling its service levels, falls inside it)."""
    target, pool = subscribed.target, subscribed.pool
    pids = target.pids()
    rounds_before = await target.rounds()
    cpu_before, clock_before = cpu_ns(pids), time.perf_counter()
    keys: list[str] = []
    sending: list[asyncio.Task[None]] = []
    late = 0.0
    for i in range(scenario.changes):
        due = clock_before + i * scenario.interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        late = max(late, time.perf_counter() - due)
        key = target.changes.next_key()
        keys.append(key)
        sending.append(asyncio.create_task(target.changes.change(key)))
    await asyncio.gather(*sending)
    cpu_after, clock_after = await drain(pool, pids, keys, subscribed.opened * len(keys))
    window_end = clock_before + scenario.changes * scenario.interval + BLOCK_TAIL
    if clock_after < window_end:
        await asyncio.sleep(window_end - time.perf_counter())
        cpu_after, clock_after = cpu_ns(pids), time.perf_counter()
    got, _ = await pool.received(keys)
    rounds = {
        loop: n - rounds_before.get(loop, 0.0)
        for loop, n in (await target.rounds()).items()
        if n > rounds_before.get(loop, 0.0)
    }
    subscribed.keys += keys
    result = Block(
        received=got,
        cpu_seconds=(cpu_after - cpu_before) / 1e9,
        seconds=clock_after - clock_before,
        late=late,
        rounds=rounds,
    )
    subscribed.blocks.append(result)
    return result


async def outcome_of(subscribed: Subscribed, scenario: Scenario) -> Outcome:
    """Every block's deliveries gathered, the sockets closed, the figures printed."""
    target, pool = subscribed.target, subscribed.pool
    pids = target.pids()
    try:
        client_cpu = await pool.cpu() - subscribed.client_cpu
        sent = target.changes.summary()
        reports = await pool.ask({"cmd": "report", "keys": subscribed.keys})
        await pool.ask({"cmd": "close"})
    finally:
        await pool.stop()
    await asyncio.sleep(CLOSE_SETTLE)
    blocks = subscribed.blocks
    outcome = Outcome(
        subscribers=scenario.subscribers,
        opened=subscribed.opened,
        changes=len(subscribed.keys),
        received=sum(r["received"] for r in reports),
        latencies_ms=sorted(x for r in reports for x in r["latencies_ms"]),
        block_cpu_us=[b.cpu_per_delivery_us for b in blocks],
        cpu_seconds=sum(b.cpu_seconds for b in blocks),
        seconds=sum(b.seconds for b in blocks),
        client_cpu_seconds=client_cpu,
        rss_before=subscribed.rss_before,
        rss_connected=subscribed.rss_connected,
        rss_after=rss_bytes(pids),
        late_ms=max((b.late for b in blocks), default=0.0) * 1000,
        duplicates=sum(r["duplicates"] for r in reports),
        dropped=sum(r["dropped"] for r in reports),
    )
    rounds: Counter[str] = Counter()
    for b in blocks:
        rounds.update(b.rounds)
    problems = [e for r in reports for e in r["errors"]] or subscribed.errors
    clients = (
        f"clients {client_cpu / outcome.received * 1e6:.1f} us CPU per delivery"
        if outcome.received
        else "nothing delivered"
    )
    # each change's last delivery (the latest over the worker processes), in the order sent
    last = [max(ms) for ms in zip(*(r["last_ms"] for r in reports), strict=True)]
    workers = subscribed.workers
    progress(
        f"    {target.role}: {subscribed.opened}/{scenario.subscribers} open in "
        f"{subscribed.opening:.1f} s ({workers} client process{'es' if workers > 1 else ''}, "
        f"{subscribed.probes}); {outcome.received}/{outcome.expected} delivered, "
        f"p50 {outcome.pct(50):.1f} ms, p99 {outcome.pct(99):.1f} ms, "
        f"max {outcome.max_ms:.1f} ms; server {outcome.cpu_per_delivery_us:.1f} us CPU per "
        f"delivery (median of {len(blocks)} blocks: "
        + ", ".join(f"{us:.1f}" for us in outcome.block_cpu_us)
        + f"; all blocks together {outcome.mean_cpu_per_delivery_us:.1f}); {clients}{sent}"
    )
    progress(
        f"    {target.role}: each change's last delivery, ms: "
        + " | ".join(
            " ".join(f"{ms:.0f}" for ms in last[i : i + scenario.changes])
            for i in range(0, len(last), scenario.changes)
        )
    )
    progress(
        f"    {target.role}: RSS {outcome.rss_before / MIB:.1f} MiB before, "
        f"{outcome.rss_connected / MIB:.1f} MiB connected "
        f"({outcome.rss_per_1000_mib:.2f} MiB per 1,000), {outcome.rss_after / MIB:.1f} MiB "
        f"after closing; changes up to {outcome.late_ms:.0f} ms late"
        + (f"; {outcome.duplicates} duplicates" if outcome.duplicates else "")
        + (f"; {outcome.dropped} sockets dropped" if outcome.dropped else "")
        + (f"; first problems: {problems[:2]}" if problems and outcome.lost else "")
        + (
            "; background rounds in the blocks: "
            + ", ".join(f"{loop} {n:g}" for loop, n in sorted(rounds.items()))
            if rounds
            else ""
        )
    )
    return outcome


async def scenario_pair(
    floor: Target, app: Target, scenario: Scenario, log: IO[bytes]
) -> tuple[Outcome, Outcome]:
    """Both servers' subscribers open at once, then their blocks in turns, floor and app
    alternating as ABBA (F A A F F A ...), so a drift of the machine's speed over the scenario
    weighs on both alike; (floor's outcome, app's)."""
    subscribed: list[Subscribed] = []
    try:
        for target in (floor, app):
            subscribed.append(await subscribe(target, scenario, log))
        order = [0, 1]
        for _ in range(scenario.blocks):
            for side in order:
                await block(subscribed[side], scenario)
            order.reverse()
        outcomes = [await outcome_of(s, scenario) for s in subscribed]
        subscribed = []
    finally:
        for s in subscribed:
            await s.pool.stop()
    return outcomes[0], outcomes[1]


# --------------------------------------------------------------------------- rows


def rows_of(scenario: Scenario, app: Outcome, floor: Outcome) -> list[Row]:
    name = f"{NAME}.{scenario.label}"
    return [
        at_most(
            f"{name}.cpu_per_delivery",
            app.cpu_per_delivery_us,
            "us",
            floor.cpu_per_delivery_us,
            MAX_RATIO,
        ),
        compared(f"{name}.p50", app.pct(50), "ms", floor.pct(50)),
        at_most(f"{name}.p99", app.pct(99), "ms", floor.pct(99), MAX_RATIO),
        compared(f"{name}.max", app.max_ms, "ms", floor.max_ms),
        Row(
            f"{name}.lost",
            app.lost,
            "deliveries",
            floor.lost,
            None,
            target="= 0",
            met=app.lost == 0,
        ),
        compared(f"{name}.rss_per_1000", app.rss_per_1000_mib, "MiB", floor.rss_per_1000_mib),
        compared(f"{name}.rss_after_close", app.rss_after / MIB, "MiB", app.rss_before / MIB),
    ]


def keep_series(ctx: BenchContext, name: str, benchmark: str, role: str, outcome: Outcome) -> None:
    """The delivery latencies, for ``make bench-plot`` (rate: deliveries per second)."""
    samples = outcome.latencies_ms
    if len(samples) > MAX_SAMPLES_KEPT:
        samples = sorted(random.Random(0).sample(samples, MAX_SAMPLES_KEPT))
    ctx.series[name] = {
        "benchmark": benchmark,
        "role": role,
        "unit": "ms",
        "requests_per_second": round(outcome.received / max(outcome.seconds, 1e-9), 1),
        "p50": round(outcome.pct(50), 3),
        "p99": round(outcome.pct(99), 3),
        "samples": [round(s, 3) for s in samples],
    }


async def run(ctx: BenchContext) -> list[Row]:
    chosen = scenarios(ctx.quick)
    needed = max(s.subscribers for s in chosen) + FD_MARGIN
    limit = raise_open_files(needed)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    floor = ServerProcess(
        "ws floor",
        [PYTHON, "bench/ws_floor.py"],
        {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port())},
        ctx.results_dir / "ws_floor.log",
    )
    targets: list[Target] = []
    rows: list[Row] = []
    with (ctx.results_dir / "live_clients.log").open("wb") as log:
        try:
            await floor.start()
            app = await ctx.app_server()
            progress(
                f"  {NAME}: open-file limit {limit} here; "
                + "; ".join(check_server_open_files(s, needed) for s in (floor, app))
            )
            targets = [
                Target("ws floor", floor, "bench", FloorEvents(floor)),
                Target(
                    "supplygraph",
                    app,
                    ctx.data.live_token,
                    Cancellations(
                        app,
                        ctx.data.live_token,
                        await live_orders(ctx, live_orders_needed(chosen)),
                    ),
                    background=True,
                ),
            ]
            for target in targets:
                await warm_up(target, log)
            for scenario in chosen:
                progress(
                    f"  {NAME} {scenario.label}: {scenario.subscribers:,} subscribers, "
                    f"{scenario.changes} changes one every {scenario.interval:g} s"
                )
                floor_outcome, app_outcome = await scenario_pair(
                    targets[0], targets[1], scenario, log
                )
                benchmark = f"{NAME}.{scenario.label}"
                keep_series(ctx, f"{benchmark}.floor", benchmark, "ws floor", floor_outcome)
                keep_series(ctx, benchmark, benchmark, "supplygraph", app_outcome)
                rows += rows_of(scenario, app_outcome, floor_outcome)
        finally:
            for target in targets:
                await target.changes.close()
            floor.stop()
    return rows


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker_main())
    else:
        uvloop.run(worker_main())
