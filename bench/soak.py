"""``make soak``: a bounded soak of the server as ``make run`` serves it.

    .venv/bin/python bench/soak.py [--duration 600] [--subscribers 1000] [--clients 8]
    SOAK_SECONDS=120 make soak;  make soak SOAK_ARGS="--duration 60 --subscribers 300"

The server runs as ``python main.py serve`` (``bench.common.ServerProcess``; REDIS_URL passes
through) on a database of its own, as ``make bench`` makes one (``bench.runner``): a fresh
PostgreSQL database ``bench_<random>`` next to DATABASE_URL's when that names PostgreSQL (dropped
afterwards), else a temporary SQLite file. Seeded in this process through the domain layer: a
supplier with a one-SKU catalogue and a logistics method, a buyer with a funded wallet and
``SEED_ORDERS`` unpaid manual orders, an API token for each side.

For ``--duration`` seconds (default ``SOAK_SECONDS``, else 600):

- ``--clients`` HTTP clients (keep-alive, one request at a time each, together at most
  ``--rate`` requests a second) send a mix of queries (orders page as buyer and as supplier, one
  order with its timeline, events, inventory, wallets, order counts, me, products) and, one
  step in ``MUTATION_SHARE``, the next mutation of an order lifecycle of the client's own orders
  (create a manual order; quote, top up and pay it; cancel one; ship; mark delivered; rename the
  buyer), so that no two clients touch one order and every mutation is expected to succeed;
- ``--subscribers`` WebSocket subscribers (graphql-transport-ws at ``/graphql`` with the
  ``websockets`` client, ``connection_init`` payload ``{"Authorization": "Bearer <token>"}``),
  started over the first ``RAMP_SHARE`` of the run, each one opening a socket, subscribing to
  one of ``SUBSCRIPTIONS``, reading events for a random lifetime (``--lifetime``, default 10 to
  40 s), completing and closing, then opening again: a churning population of that size. The
  sockets ask for permessage-deflate as browsers do (``--compression none``: they do not).

An error is any HTTP status other than 200, a GraphQL error, a ``userError``, a request that
fails or takes longer than ``REQUEST_TIMEOUT``; a socket that fails to open, is not
acknowledged, gets an ``error`` or an unasked ``complete``, or is closed by the server; an ERROR
or CRITICAL line in the server's log; the server exiting. The server's RSS (VmRSS of
``/proc/<pid>/status``, its process tree) is sampled every ``--sample-every`` seconds. Warm-up
is the first ``WARM_UP_SHARE`` (20 %) of the run.

Pass rule (exit 0): no error, and the RSS at the end of the run at most ``MAX_GROWTH`` (10 %)
above the RSS at the end of the warm-up. The least-squares slope of the samples after the
warm-up (MB/min) and the time it would take to double the memory at that slope are printed
beside it, but do not decide: doubling in a day is about 0.1 MB/min for a 150 MB server, less
than RSS moves by on its own over a few minutes (allocator arenas, freed pages kept by the
process, caches filling up to their bounds), so such a bound would fail runs that do not leak.
A leak too slow for the 10 % bound in one run shows as a steady positive slope over a longer
``--duration``. The summary line starts with ``soak: PASS`` or ``soak: FAIL``; after a failure
the server's log is kept and its path printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

if __name__ == "__main__":  # run by path: import from the checkout's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.command_line import command_app, exit_code, run_async
from bench.common import (
    PYTHON,
    RawConnection,
    ServerProcess,
    free_port,
    make_req,
    pin_load_generator,
    progress,
)
from bench.database import admin, migrate, scratch_database
from bench.live_subscribers import check_server_open_files, process_tree, raise_open_files
from schema.global_ids import gid

DEFAULT_DURATION = 600.0
WARM_UP_SHARE = 0.2
RAMP_SHARE = 0.1  # subscribers start spread over this share of the run (at most RAMP_MAX s)
RAMP_MAX = 20.0
MAX_GROWTH = 0.10  # RSS growth after warm-up that fails the run
MUTATION_SHARE = 0.3
REQUEST_TIMEOUT = 30.0
OPEN_TIMEOUT = 30.0  # WebSocket handshake, and connection_ack after connection_init
SEED_ORDERS = 20
OWN_ORDERS = 4  # unpaid orders a client keeps at most
FD_MARGIN = 256
MIB = 1024 * 1024
ERRORS_KEPT = 20
ERROR_PAUSE = 1.0  # s a subscriber waits after an error before it opens again
PROTOCOL = "graphql-transport-ws"

ORDERS_PAGE = """query($after: String) { orders(first: 20, after: $after) { edges { node {
  id number status paidAmount lines { quantity unitPrice sku { code } }
  latestTransition { toStatus at } } } pageInfo { hasNextPage endCursor } } }"""
ORDER = """query($id: ID!) { order(id: $id) { id number status paidAmount refundedAmount
  timeline { fromStatus toStatus reason at } lines { title quantity unitPrice } } }"""
EVENTS = "{ events(first: 20) { edges { node { id type subjectId } } pageInfo { hasNextPage } } }"
INVENTORY = "{ inventory { nodes { id onHand reserved available } } }"
WALLETS = "{ wallets { nodes { id balance currency } } }"
ORDER_COUNTS = "{ orderCounts { status count } }"
ME = "{ me { user { email role } organisation { name kind } } }"
PRODUCTS = "{ products { nodes { id title skus { code unitPrice } } } }"

CREATE = """mutation($k: ID!, $m: ID!, $q: Int!) { createManualOrder(input: {lines: [{skuId: $k,
  quantity: $q}], logisticsMethodId: $m, shippingAddress: {name: "Soak", address1: "1 High St",
  city: "London", zip: "N1", countryCode: "GB"}}) { order { id } userErrors { code message } } }"""
QUOTE = "query($o: [ID!]!) { freightQuote(orderIds: $o) { total currency } }"
TOP_UP = """mutation($b: ID!, $a: Decimal!, $c: String!) { topUpWallet(buyerId: $b, amount: $a,
  currency: $c, note: "soak") { userErrors { code message } } }"""
PAY = "mutation($o: [ID!]!) { payOrders(orderIds: $o) { userErrors { code message } } }"
CANCEL = """mutation($o: [ID!]!) { cancelOrders(orderIds: $o, reason: "soak") {
  userErrors { code message } } }"""
SHIP = """mutation($o: ID!) { shipOrder(orderId: $o, carrier: "DHL", trackingNumber: "SOAK1") {
  userErrors { code message } } }"""
DELIVER = "mutation($o: ID!) { markDelivered(orderId: $o) { userErrors { code message } } }"
RENAME = """mutation($n: String!) { renameOrganisation(input: {name: $n}) {
  userErrors { code message } } }"""

# (weight, whose token, document): the buyer sees every order event, the supplier its wallets'
SUBSCRIPTIONS: list[tuple[int, str, str]] = [
    (2, "buyer", "subscription { events { id type subjectId } }"),
    (3, "buyer", "subscription { orderStatusChanged { eventId orderId fromStatus toStatus } }"),
    (3, "buyer", "subscription { events(types: [ORGANISATION_UPDATED]) { id type } }"),
    (2, "supplier", "subscription { events(types: [WALLET_CHANGED]) { id type } }"),
]


@dataclass(frozen=True)
class Options:
    """A soak as its command line asks for it (``--help``)."""

    duration: float
    subscribers: int
    clients: int
    rate: float
    lifetime: tuple[float, float]
    sample_every: float
    compression: str
    seed: int


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Seeded:
    buyer_id: int
    buyer_token: str
    supplier_token: str
    sku_id: int
    method_id: int
    currency: str
    order_ids: tuple[int, ...]


async def seed(database_url: str, secrets_key: str) -> Seeded:
    """Supplier, buyer, wallet and orders through the domain layer, in this process."""
    from tortoise import Tortoise

    from bench.hot_paths import supplier_catalogue
    from bench.seed import ADDRESS, buyer_with_token
    from domain import secrets
    from domain.db import tortoise_config
    from domain.orders import intake as order_intake
    from domain.organisations import tokens
    from domain.organisations.models import User
    from domain.payments import commands as payments

    secrets.configure(secrets_key)  # the key the server gets as SECRETS_KEY
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        cat = await supplier_catalogue("Soak supplier", "supplier@soak.test")
        supplier_user = await User.get(id=cat.supplier.user_id)
        _, supplier_token = await tokens.issue_token(user=supplier_user, name="soak")
        buyer, buyer_token = await buyer_with_token("Soak buyer", "buyer@soak.test")
        order_ids = []
        for n in range(SEED_ORDERS):
            order = await order_intake.create_manual_order(
                viewer=buyer,
                lines=[order_intake.ManualLine(cat.sku.id, 1 + n % 3)],
                shipping_address=ADDRESS,
                logistics_method_id=cat.method_id,
            )
            order_ids.append(order.id)
        # after the orders: a supplier tops up only buyers it trades with
        await payments.top_up(
            viewer=cat.supplier,
            buyer_id=buyer.organisation_id,
            amount=Decimal("1000.00"),
            currency=cat.sku.currency,
        )
        return Seeded(
            buyer_id=buyer.organisation_id,
            buyer_token=buyer_token,
            supplier_token=supplier_token,
            sku_id=cat.sku.id,
            method_id=cat.method_id,
            currency=cat.sku.currency,
            order_ids=tuple(order_ids),
        )
    finally:
        await Tortoise.close_connections()


# --------------------------------------------------------------------------- the tallies


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    events: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since start, RSS bytes)

    def error(self, what: str) -> None:
        self.errors += 1
        self.outcomes["error"] += 1
        if len(self.first_errors) < ERRORS_KEPT:
            self.first_errors.append(what[:300])

    @property
    def live(self) -> int:
        return self.opened - self.closed


class Pacer:
    """At most ``rate`` requests a second over all clients (closed loop beneath it)."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.gap
        if slot > now:
            await asyncio.sleep(slot - now)


# --------------------------------------------------------------------------- HTTP clients


class Client:
    """One keep-alive connection sending queries and its own orders' lifecycle."""

    def __init__(
        self, number: int, host: str, port: int, data: Seeded, tally: Tally, pacer: Pacer
    ) -> None:
        self.number = number
        self.host = host
        self.conn = RawConnection(host, port)
        self.data, self.tally, self.pacer = data, tally, pacer
        self.rng = random.Random(f"client-{number}")
        self.unpaid: list[str] = []
        self.paid: list[str] = []
        self.shipped: list[str] = []
        self.seen: list[str] = [gid("Order", i) for i in data.order_ids]  # as the API names them
        self.renames = itertools.count(1)

    async def call(
        self, kind: str, query: str, variables: dict[str, Any], token: str
    ) -> dict[str, Any] | None:
        """The ``data`` of one request, or None after counting it as an error."""
        await self.pacer.wait()
        body = json.dumps({"query": query, "variables": variables}).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        req = make_req("POST", "/graphql", headers, body, host=self.host)
        label = query.split("{", 1)[0].strip() or query[:40]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, raw = await self.conn.send(req)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            self.tally.error(f"{kind} {label}: {type(exc).__name__} {exc}")
            return None
        if status != 200:
            self.tally.error(f"{kind} {label}: HTTP {status} {raw[:200]!r}")
            return None
        try:
            answer = json.loads(raw)
        except ValueError:
            self.tally.error(f"{kind} {label}: not JSON {raw[:200]!r}")
            return None
        if answer.get("errors"):
            self.tally.error(f"{kind} {label}: {answer['errors']}")
            return None
        data = answer["data"]
        payload = next(iter(data.values()))
        if isinstance(payload, dict) and payload.get("userErrors"):
            self.tally.error(f"{kind} {label}: {payload['userErrors']}")
            return None
        self.tally.outcomes[kind] += 1
        return data

    async def query(self) -> None:
        buyer, supplier = self.data.buyer_token, self.data.supplier_token
        choice = self.rng.randrange(9)
        if choice == 0:
            await self.call("query", ORDERS_PAGE, {"after": None}, buyer)
        elif choice == 1:
            await self.call("query", ORDERS_PAGE, {"after": None}, supplier)
        elif choice == 2:
            await self.call("query", ORDER, {"id": self.rng.choice(self.seen)}, buyer)
        elif choice == 3:
            await self.call("query", EVENTS, {}, buyer)
        elif choice == 4:
            await self.call("query", INVENTORY, {}, buyer)
        elif choice == 5:
            await self.call("query", WALLETS, {}, self.rng.choice((buyer, supplier)))
        elif choice == 6:
            await self.call("query", ORDER_COUNTS, {}, buyer)
        elif choice == 7:
            await self.call("query", ME, {}, buyer)
        else:
            await self.call("query", PRODUCTS, {}, supplier)

    async def mutation(self) -> None:
        """The next step of this client's orders (each step valid by construction)."""
        step = self.rng.choices(
            ("create", "pay", "cancel", "ship", "deliver", "rename"), weights=(3, 3, 1, 2, 2, 1)
        )[0]
        if step == "deliver" and not self.shipped:
            step = "ship"
        if step == "ship" and not self.paid:
            step = "pay"
        if step in ("pay", "cancel") and not self.unpaid:
            step = "create"
        if step == "create" and len(self.unpaid) >= OWN_ORDERS:
            step = "cancel"
        buyer, supplier = self.data.buyer_token, self.data.supplier_token
        match step:
            case "create":
                variables = {
                    "k": gid("Sku", self.data.sku_id),
                    "m": gid("LogisticsMethod", self.data.method_id),
                    "q": self.rng.randint(1, 3),
                }
                data = await self.call("mutation", CREATE, variables, buyer)
                if data is not None:
                    order_id = data["createManualOrder"]["order"]["id"]
                    self.unpaid.append(order_id)
                    self.seen = [*self.seen[-200:], order_id]
            case "pay":
                order_id = self.unpaid.pop(0)
                quote = await self.call("query", QUOTE, {"o": [order_id]}, buyer)
                if quote is None:
                    return
                total = quote["freightQuote"]["total"]
                variables = {
                    "b": gid("Organisation", self.data.buyer_id),
                    "a": total,
                    "c": self.data.currency,
                }
                if await self.call("mutation", TOP_UP, variables, supplier) is None:
                    return
                if await self.call("mutation", PAY, {"o": [order_id]}, buyer) is not None:
                    self.paid.append(order_id)
            case "cancel":
                await self.call("mutation", CANCEL, {"o": [self.unpaid.pop(0)]}, buyer)
            case "ship":
                order_id = self.paid.pop(0)
                if await self.call("mutation", SHIP, {"o": order_id}, supplier) is not None:
                    self.shipped.append(order_id)
            case "deliver":
                await self.call("mutation", DELIVER, {"o": self.shipped.pop(0)}, supplier)
            case "rename":
                name = f"Soak buyer {self.number}-{next(self.renames)}"
                await self.call("mutation", RENAME, {"n": name}, buyer)

    async def run(self, stop_at: float) -> None:
        try:
            while time.monotonic() < stop_at:
                if self.rng.random() < MUTATION_SHARE:
                    await self.mutation()
                else:
                    await self.query()
        finally:
            await self.conn.close()


# --------------------------------------------------------------------------- subscribers


class Subscriber:
    """One member of the population: open, subscribe, read a while, complete, close, again."""

    def __init__(self, number: int, url: str, data: Seeded, tally: Tally, options: Options) -> None:
        self.url, self.tally = url, tally
        self.rng = random.Random(f"subscriber-{options.seed}-{number}")
        self.lifetime: tuple[float, float] = options.lifetime
        self.compression: str | None = "deflate" if options.compression == "deflate" else None
        weights = [w for w, _, _ in SUBSCRIPTIONS]
        _, role, document = self.rng.choices(SUBSCRIPTIONS, weights=weights)[0]
        token = data.buyer_token if role == "buyer" else data.supplier_token
        self.init = json.dumps(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        )
        self.subscribe = json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": document, "variables": {}}}
        )
        self.label = document.split("{", 2)[1].strip()

    async def run(self, start_after: float, stop_at: float) -> None:
        await asyncio.sleep(start_after)
        while (left := stop_at - time.monotonic()) > 0.5:
            if not await self.session(min(self.rng.uniform(*self.lifetime), left)):
                await asyncio.sleep(ERROR_PAUSE)

    async def session(self, lifetime: float) -> bool:
        """One socket's life; False after an error (counted)."""
        subscribed = False
        try:
            async with websockets.connect(
                self.url,
                subprotocols=[websockets.Subprotocol(PROTOCOL)],
                open_timeout=OPEN_TIMEOUT,
                close_timeout=10,
                ping_interval=None,  # the server pings every 20 s; answered automatically
                compression=self.compression,
            ) as ws:
                await ws.send(self.init)
                async with asyncio.timeout(OPEN_TIMEOUT):
                    ack = json.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    self.tally.error(f"subscriber {self.label}: {ack} instead of connection_ack")
                    return False
                await ws.send(self.subscribe)
                subscribed = True
                self.tally.opened += 1
                deadline = time.monotonic() + lifetime
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            message = json.loads(await ws.recv())
                    except TimeoutError:
                        break
                    kind = message.get("type")
                    if kind == "next" and not message["payload"].get("errors"):
                        self.tally.events += 1
                    elif kind == "ping":
                        await ws.send('{"type":"pong"}')
                    elif kind != "pong":
                        self.tally.error(f"subscriber {self.label}: {str(message)[:200]}")
                        return False
                await ws.send('{"id":"1","type":"complete"}')
            return True
        except ConnectionClosed as exc:
            self.tally.error(f"subscriber {self.label}: closed by the server ({exc})")
        except (OSError, TimeoutError, InvalidHandshake, ValueError) as exc:
            self.tally.error(f"subscriber {self.label}: {type(exc).__name__} {exc}")
        finally:
            if subscribed:
                self.tally.closed += 1
        return False


# --------------------------------------------------------------------------- memory


def rss_bytes(pids: list[int]) -> int:
    """VmRSS of these processes, summed."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass(frozen=True)
class Memory:
    warm: int  # bytes at the end of the warm-up
    end: int  # bytes at the end of the run
    slope: float  # MB/min after the warm-up (least squares)
    peak: int

    @property
    def growth(self) -> float:
        return (self.end - self.warm) / self.warm if self.warm else 0.0

    @property
    def doubling(self) -> str:
        if self.slope <= 0:
            return "never (not growing)"
        minutes = self.warm / MIB / self.slope
        return f"{minutes / 60:.1f} h" if minutes < 2880 else f"{minutes / 1440:.1f} days"


def memory(samples: list[tuple[float, int]], warm_up: float) -> Memory:
    after = [(t, rss) for t, rss in samples if t >= warm_up]
    if not after:
        after = samples[-1:]
    slope = 0.0
    if len(after) >= 3:
        fit = statistics.linear_regression([t for t, _ in after], [rss / MIB for _, rss in after])
        slope = fit.slope * 60
    return Memory(
        warm=after[0][1], end=samples[-1][1], slope=slope, peak=max(r for _, r in samples)
    )


# --------------------------------------------------------------------------- the run


def server_log_errors(path: Path) -> list[str]:
    """ERROR and CRITICAL lines of the server's (JSON) log."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("ERROR", "CRITICAL"):
                found.append(f"{entry.get('logger')}: {entry.get('message')}")
    return found


async def soak(options: Options, server: ServerProcess, data: Seeded) -> Tally:
    tally = Tally()
    assert server.process is not None
    pids = process_tree(server.process.pid)
    loop_started = time.monotonic()
    stop_at = loop_started + options.duration
    warm_up = options.duration * WARM_UP_SHARE
    ramp = min(RAMP_MAX, options.duration * RAMP_SHARE)
    pacer = Pacer(options.rate)
    clients = [
        Client(n, server.host, server.port, data, tally, pacer) for n in range(options.clients)
    ]
    url = f"ws://{server.host}:{server.port}/graphql"
    subscribers = [Subscriber(n, url, data, tally, options) for n in range(options.subscribers)]
    starts = random.Random(options.seed)

    async def sampler() -> None:
        report_every = max(10.0, options.duration / 10)
        next_report = loop_started + report_every
        while True:
            now = time.monotonic()
            if server.process is not None and server.process.poll() is not None:
                tally.error(f"the server exited with {server.process.returncode}")
                return
            tally.samples.append((now - loop_started, rss_bytes(pids)))
            if now >= next_report:
                next_report += report_every
                phase = "warm-up" if now - loop_started < warm_up else "measured"
                progress(
                    f"  {now - loop_started:6.0f} s ({phase}): "
                    f"{sum(tally.outcomes.values()):,} requests, {tally.errors} errors, "
                    f"{tally.live} subscribers, {tally.opened:,} opened, {tally.events:,} "
                    f"events, RSS {tally.samples[-1][1] / MIB:.1f} MB"
                )
            if now >= stop_at:
                return
            await asyncio.sleep(min(options.sample_every, stop_at - now))

    await asyncio.gather(
        sampler(),
        *(c.run(stop_at) for c in clients),
        *(s.run(starts.uniform(0, ramp), stop_at) for s in subscribers),
    )
    return tally


async def run(options: Options) -> int:
    """The soak: 0 if it passed, 1 if not (after printing why)."""
    started = time.perf_counter()
    pinning = pin_load_generator()
    needed = options.subscribers + options.clients + FD_MARGIN
    limit = raise_open_files(needed)  # the server, started from here, inherits it
    source = os.environ.get("DATABASE_URL", "")
    url, pg_name, folder = scratch_database(source)
    logs = Path(tempfile.mkdtemp(prefix="supplygraph-soak-"))
    server: ServerProcess | None = None
    database = "PostgreSQL" if pg_name else "SQLite"
    redis = "Redis" if os.environ.get("REDIS_URL") else "in-memory broadcast"
    progress(
        f"soak: {options.duration:g} s, {options.subscribers} subscribers (lifetime "
        f"{options.lifetime[0]:g}-{options.lifetime[1]:g} s), {options.clients} HTTP clients "
        f"at most {options.rate:g} req/s; {database}, {redis}; {pinning}; open-file limit {limit}"
    )
    try:
        if pg_name:
            await admin(source, f'CREATE DATABASE "{pg_name}"')
        migrate(url)
        from domain.secrets import generate_key

        key = generate_key()
        data = await seed(url, key)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECRETS_KEY": key,
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        server = ServerProcess(
            "supplygraph", [PYTHON, "main.py", "serve"], env, logs / "server.log"
        )
        await server.start()
        progress(f"  {check_server_open_files(server, needed)}; log {server.log_path}")
        tally = await soak(options, server, data)
        await asyncio.sleep(2.0)  # the closed sockets' memory settles
        assert server.process is not None
        after_close = rss_bytes(process_tree(server.process.pid))
    finally:
        if server is not None:
            server.stop()
        if pg_name:
            await admin(source, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    for line in server_log_errors(server.log_path):
        tally.error(f"server log: {line}")
    mem = memory(tally.samples, options.duration * WARM_UP_SHARE)
    requests = sum(n for k, n in tally.outcomes.items() if k != "error")
    passed = tally.errors == 0 and mem.growth <= MAX_GROWTH
    print()
    print(
        f"requests: {requests:,} ok ({tally.outcomes['query']:,} queries, "
        f"{tally.outcomes['mutation']:,} mutations), {requests / options.duration:.1f} req/s"
    )
    print(
        f"subscriptions: {tally.opened:,} opened, {tally.closed:,} closed, {tally.events:,} "
        f"events received"
    )
    print(f"errors: {tally.errors}")
    for problem in tally.first_errors:
        print(f"  {problem}")
    print(
        f"server RSS: {mem.warm / MIB:.1f} MB at the end of the warm-up "
        f"({options.duration * WARM_UP_SHARE:g} s), {mem.end / MIB:.1f} MB at the end, peak "
        f"{mem.peak / MIB:.1f} MB, {after_close / MIB:.1f} MB 2 s after the last socket closed"
    )
    print(
        f"growth after warm-up: {mem.growth:+.1%} (bound {MAX_GROWTH:.0%}); slope "
        f"{mem.slope:+.2f} MB/min, doubling in {mem.doubling}; {len(tally.samples)} samples"
    )
    print(
        f"soak: {'PASS' if passed else 'FAIL'} {requests:,} requests, {tally.errors} errors, "
        f"{tally.opened:,} subscriptions, {tally.events:,} events; RSS "
        f"{mem.warm / MIB:.1f} -> {mem.end / MIB:.1f} MB ({mem.growth:+.1%}, "
        f"{mem.slope:+.2f} MB/min) in {time.perf_counter() - started:.0f} s"
    )
    if passed:
        shutil.rmtree(logs, ignore_errors=True)
        return 0
    print(f"server log: {server.log_path}")
    return 1


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter("must be positive")
    return value


def _lifetime(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter("takes MIN,MAX seconds", param_hint="'--lifetime'") from None
    if not 0 < low <= high:
        raise typer.BadParameter("0 < MIN <= MAX", param_hint="'--lifetime'")
    return low, high


app = command_app()


@app.command(help=(__doc__ or "").splitlines()[0])
def soak_command(
    duration: Annotated[
        float,
        typer.Option(envvar="SOAK_SECONDS", callback=_positive, help="seconds of load"),
    ] = DEFAULT_DURATION,
    subscribers: Annotated[
        int, typer.Option(min=0, help="WebSocket population, each reopening after its lifetime")
    ] = 1000,
    clients: Annotated[int, typer.Option(min=1, help="HTTP clients")] = 8,
    rate: Annotated[
        float, typer.Option(callback=_positive, help="HTTP requests per second, all clients")
    ] = 40.0,
    lifetime: Annotated[
        str,
        typer.Option(
            metavar="MIN,MAX",
            help="seconds a subscriber stays before it closes and reopens",
        ),
    ] = "10,40",
    sample_every: Annotated[
        float | None,
        typer.Option(help="seconds between RSS samples (default: run / 60, within 1-5)"),
    ] = None,
    compression: Annotated[
        Literal["deflate", "none"],
        typer.Option(help="WebSocket permessage-deflate, as browsers ask for it, or none"),
    ] = "deflate",
    mix_seed: Annotated[int, typer.Option("--seed", help="random seed of the mix")] = 1,
) -> None:
    options = Options(
        duration=duration,
        subscribers=subscribers,
        clients=clients,
        rate=rate,
        lifetime=_lifetime(lifetime),
        sample_every=(
            sample_every if sample_every is not None else min(5.0, max(1.0, duration / 60))
        ),
        compression=compression,
        seed=mix_seed,
    )
    raise typer.Exit(run_async(run(options)))


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None): 0 if the soak passed, 1 if
    not, 2 after a usage error."""
    return exit_code(app, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
