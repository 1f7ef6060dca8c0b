"""Many tenants live (issue 20): 10,000 subscribers across 2,000 organisations, each
organisation's dashboards getting one change a second, beside a hand-written floor.

The anchor is Hasura's published figure: 10,000 live queries on a 2-CPU instance, each
receiving an update every second. Here 2,000 buyer organisations (seeded set-based: the
organisations, their owners and one API token each, stored as ``domain.organisations.tokens``
stores them and checked by authenticating one) have 5 dashboards each: a graphql-transport-ws
socket with the organisation's token, running a document of the organisation's own,
``subscription Tenant<org id> { orderStatusChanged { eventId orderId fromStatus toStatus reason
at } }``. So the server runs 2,000 distinct executions, each shared by 5 sockets.

Events: the bench process records ``ORDER_STATUS_CHANGED`` events straight into the outbox, as
a writer would. Each is built by the catalogue's constructor (``OrderStatusChanged.of``) for an
order of one organisation, so its audience is that organisation alone, and carries a key of its
own as its orderId (the order is not stored: nothing on the delivery path reads it, and no row
but the event's changes). Organisations take turns, each getting ``rate / organisations`` events
a second, and every 20 ms the events due are recorded in one transaction: on PostgreSQL the
statement ``record_event`` runs there, executed for the whole batch in one round trip
(``recording_sql`` with ``event_parameters``, then ``recorded`` per event, as ``record_event``
does); elsewhere ``record_event`` per event. Each event is its own row with its own audience.
They reach the server as any other process's writes do: on PostgreSQL the outbox's trigger
notifies every instance (``integrations.wakeups``), whose publisher numbers, publishes (to
Redis with ``REDIS_URL``) and dispatches them. SQLite has no NOTIFY: there the server is started
with ``WORK_SWEEP_SECONDS=0.1`` and finds them within 100 ms (its other loops sweep as often).

Latency is commit to client: the client's receipt (``time.time()`` as the frame's bytes are
read) minus the moment the batch's ``COMMIT`` was sent (for the floor, its ``/emit_tenants``
request), one wall clock on this machine; p50, p99 and max over every delivery of a window.

Per server: the sockets open (``bench/ws_clients.py``: worker processes on the load generator's
core, a minimal client that notes only each frame's key and arrival; the open-file limits here
and of the servers are raised to what the sockets need); probe rounds (one event per
organisation, not measured, at most 4) until one reaches every socket; then a ladder of rates,
``STEPS`` times the base (one event per organisation a second: 2,000 events/s, 10,000
deliveries/s), each for a 10 s window and then until every delivery is in (or none came for
3 s). A rate is sustained when nothing is lost (each event's organisation's sockets x events -
deliveries; a socket that closed loses the rest), no socket got an event twice or out of order,
p99 is at most 1 s, and the events were made at 95 % of the rate or better (the generator
waits for each batch: the database's commit, or the floor sending its frames before it
answers). A rate not sustained is tried once more (on this shared machine one slow second of
another process can fail a window); the ladder stops at the first rate that fails twice. Each
window prints the server's CPU per delivery (``bench.common.cpu_ns``) and the CPU share of the
clients' core and of this process (the generator), so a bottleneck outside the server shows.

The floor (``bench/ws_floor.py``; the same clients, tokens, events and ladder): a hand-written
endpoint that knows each token's organisation and, per event, serialises one frame for that
organisation and sends it to that organisation's sockets only.

Two instances (PostgreSQL and Redis only; otherwise skipped, saying why): A on the server core,
B on the load generator's (as ``scale_out`` places them), the same events and ladder. The
sockets are split by organisation (``BENCH_TENANTS_SPLIT=organisations``: each instance serves
half the organisations, as a load balancer with tenant affinity would) or, with
``BENCH_TENANTS_SPLIT=sockets``, every organisation's sockets dealt to both (each instance then
runs every organisation's execution for 2 or 3 sockets).

Targets: at the base rate 0 lost and p99 <= 1 s (one instance, and two); the highest rate one
instance sustains at least 0.5x the floor's. Sizes: 2,000 organisations x 5, 10 s windows;
``--quick`` 400 x 5, 4 s; ``BENCH_TENANTS_ORGS``, ``BENCH_TENANTS_DASHBOARDS``,
``BENCH_TENANTS_SECONDS`` and ``BENCH_TENANTS_STEPS`` (multiples of the base: ``1``,
``1,2,4``) override them (the test runs 20 x 2 for 2 s at the base rate).

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/runner.py --only live_tenants
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import resource
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_urlsafe
from typing import IO, TYPE_CHECKING, Protocol

from bench.common import (
    LOADGEN_CORE,
    PYTHON,
    SERVER_CORE,
    RawConnection,
    Row,
    ServerProcess,
    compared,
    cpu_ns,
    free_port,
    make_req,
    percentile,
    progress,
)
from bench.database import is_postgres
from bench.ws_clients import Received, TenantClients, worker_count

if TYPE_CHECKING:
    from bench.context import BenchContext
    from domain.orders.models import Order

NAME = "live_tenants"
REQUIRES: tuple[str, ...] = ()
USES_DATABASE = True

FULL_ORGANISATIONS, QUICK_ORGANISATIONS = 2_000, 400
# Published events each organisation already has when the run starts (``seed_history``)
HISTORY_PER_ORGANISATION = 50
DASHBOARDS = 5
FULL_WINDOW, QUICK_WINDOW = 10.0, 4.0
STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)  # events/s per organisation
SPLITS = ("organisations", "sockets")  # how two instances share the sockets
TRIES = 2  # a rate not sustained is tried once more (the machine is shared) before it counts
TICK = 0.02  # the generator commits what is due every TICK seconds
MAX_BATCH = 2_000  # events per transaction at most
P99_TARGET_MS = 1_000.0
MIN_FLOOR_RATIO = 0.5
GENERATOR_SHORTFALL = 0.95  # below this share of the rate, the generator set the limit
DRAIN_IDLE = 3.0  # s without a new delivery: what has not arrived is lost
DRAIN_MAX = 60.0
PROBES = 4
PROBE_IDLE = 5.0
POLL = 0.05
SETTLE = 1.0  # s between two rates
STALE_AFTER = 3.0  # s idle before the floor's keep-alive connection is opened again
FD_MARGIN = 1_024
SQLITE_SWEEP = "0.1"  # WORK_SWEEP_SECONDS of a server on SQLite (see the module docstring)
MARKER = "/Order/"  # the key is the orderId's: gid://supplygraph/Order/<key>
DOCUMENT = (
    "subscription Tenant{org} "
    "{{ orderStatusChanged {{ eventId orderId fromStatus toStatus reason at }} }}"
)
MAX_SAMPLES_KEPT = 20_000  # per series in latencies.json, as bench.context keeps


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    organisations: int
    dashboards: int
    window: float
    steps: tuple[float, ...]
    split: str = "organisations"  # between two instances: "organisations" or "sockets"

    @property
    def subscribers(self) -> int:
        return self.organisations * self.dashboards


def sizes(quick: bool) -> Sizes:
    """The run's sizes, with ``BENCH_TENANTS_*`` overrides applied."""
    env = os.environ.get
    steps = tuple(float(s) for s in env("BENCH_TENANTS_STEPS", "").split(",") if s.strip())
    split = env("BENCH_TENANTS_SPLIT") or "organisations"
    if split not in SPLITS:
        raise ValueError(f"BENCH_TENANTS_SPLIT={split!r}: one of {', '.join(SPLITS)}")
    return Sizes(
        organisations=int(
            env("BENCH_TENANTS_ORGS") or (QUICK_ORGANISATIONS if quick else FULL_ORGANISATIONS)
        ),
        dashboards=int(env("BENCH_TENANTS_DASHBOARDS") or DASHBOARDS),
        window=float(env("BENCH_TENANTS_SECONDS") or (QUICK_WINDOW if quick else FULL_WINDOW)),
        steps=steps or STEPS,
        split=split,
    )


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Tenant:
    organisation_id: int
    token: str


async def seed_tenants(count: int) -> list[Tenant]:
    """``count`` buyer organisations, each with an owner and an API token, in a few set-based
    inserts (``create_organisation`` and ``issue_token`` take a transaction and several
    statements each: minutes for 2,000). Tokens are stored as ``issue_token`` stores them (the
    SHA-256 of the secret); one is authenticated through the domain to prove it."""
    from domain.db import transaction
    from domain.organisations import tokens
    from domain.organisations.models import (
        ApiToken,
        Organisation,
        OrganisationKind,
        Role,
        User,
    )

    run = uuid.uuid4().hex[:8]
    prefix = f"Tenant {run} "
    async with transaction():
        await Organisation.bulk_create(
            [
                Organisation(name=f"{prefix}{i:05d}", kind=OrganisationKind.BUYER)
                for i in range(count)
            ],
            batch_size=1_000,
        )
    organisations = list(
        await Organisation.filter(name__startswith=prefix)
        .order_by("id")
        .values_list("id", flat=True)
    )
    async with transaction():
        await User.bulk_create(
            [
                User(
                    organisation_id=org,
                    email=f"owner@tenant-{run}-{org}.bench.test",
                    name="Dashboard owner",
                    role=Role.OWNER,
                )
                for org in organisations
            ],
            batch_size=1_000,
        )
    owners = dict(
        await User.filter(organisation_id__in=organisations).values_list("organisation_id", "id")
    )
    secrets = {org: tokens.TOKEN_PREFIX + token_urlsafe(32) for org in organisations}
    expires = datetime.now(UTC) + tokens.DEFAULT_LIFETIME
    async with transaction():
        await ApiToken.bulk_create(
            [
                ApiToken(
                    user_id=owners[org],
                    organisation_id=org,
                    name="dashboard",
                    prefix=secret[:10],
                    secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                    expires_at=expires,
                )
                for org, secret in secrets.items()
            ],
            batch_size=1_000,
        )
    first = organisations[0]
    viewer = await tokens.authenticate(secret=secrets[first])
    if viewer is None or viewer.organisation_id != first:
        raise RuntimeError("a seeded token does not authenticate: see tokens.issue_token")
    return [Tenant(org, secrets[org]) for org in organisations]


async def seed_history(organisations: Sequence[int], per_organisation: int) -> int:
    """PostgreSQL: ``per_organisation`` published events for each organisation, numbered after
    those the database has, then ``ANALYZE``; the number written.

    An outbox in service holds the events of its past, and autovacuum keeps its statistics
    current. A fresh database whose ``event`` table is nearly empty when the first sessions
    record events makes PostgreSQL plan each session's foreign-key check of the event
    (``event_audience.event_id``) as a scan of the table, kept for the session until the next
    ``ANALYZE``: with autovacuum off (this machine's PostgreSQL) every event recorded then reads
    every event before it (28,069 scans reading 393 million rows in one 8 s window, the
    generator's session a whole core, 552 events/s made of 6,400 asked)."""
    from tortoise import connections

    db = connections.get("default")
    if db.capabilities.dialect != "postgres" or per_organisation <= 0:
        return 0
    count = len(organisations) * per_organisation
    await db.execute_query(
        """WITH base AS (SELECT COALESCE(MAX(seq), 0) AS last FROM event),
        history AS (
            INSERT INTO event (seq, type, subject_type, subject_id, payload, actor_user_id,
                               created_at, published_at)
            SELECT base.last + n, 'ORDER_STATUS_CHANGED', 'order', 'history-' || n,
                   '{}'::jsonb, NULL, now(), now()
            FROM base, generate_series(1, $1::integer) AS n
            RETURNING id, seq - (SELECT last FROM base) AS n
        )
        INSERT INTO event_audience (event_id, organisation_id)
        SELECT history.id, ($2::integer[])[1 + history.n % cardinality($2::integer[])]
        FROM history""",
        [count, list(organisations)],
    )
    await db.execute_script("ANALYZE")
    return count


# --------------------------------------------------------------------------- what makes events


class Sink(Protocol):
    """Where the generator's events go; ``emit`` returns the moment they count from."""

    async def emit(self, batch: list[tuple[int, int]]) -> float:
        """One event per (organisation id, key); the moment they count from (``time.time()``)."""
        ...


class Outbox:
    """supplygraph: events recorded in the outbox in one transaction per batch (see the module
    docstring); the moment is when ``COMMIT`` is sent."""

    def __init__(self, organisations: Sequence[int], *, postgres: bool) -> None:
        from domain.events.models import Event
        from domain.orders.models import Order
        from domain.persistence.events import recording_sql

        self._postgres = postgres
        self._sql = f"WITH {recording_sql(1)}\nSELECT 1"
        self._event_model = Event
        # One order object per organisation, renumbered per event: building a model instance
        # costs 30 us, the event's constructor reads only its id, number and parties.
        self._orders: dict[int, Order] = {
            org: Order(id=0, number="", buyer_id=org, supplier_id=None) for org in organisations
        }

    async def emit(self, batch: list[tuple[int, int]]) -> float:
        from compat import tortoise as orm
        from domain.db import transaction
        from domain.events import record_event, recorded
        from domain.events.catalogue import OrderStatusChanged
        from domain.orders.models import OrderStatus
        from domain.persistence.events import event_parameters

        events = []
        for org, key in batch:
            order = self._orders[org]
            order.id, order.number = key, f"LT{key}"
            events.append(
                OrderStatusChanged.of(
                    order,
                    OrderStatus.AWAITING_PAYMENT,
                    OrderStatus.CANCELLED,
                    reason=NAME,
                    actor_user_id=None,
                )
            )
        async with transaction():
            if self._postgres:
                db = orm.connection_of(self._event_model)
                await db.execute_many(self._sql, [event_parameters(e) for e in events])
                for event in events:
                    recorded(event)
            else:
                for event in events:
                    await record_event(event)
            stamp = time.time()
        return stamp


class FloorEmits:
    """The floor: ``POST /emit_tenants`` with the batch; the moment is when it is sent."""

    def __init__(self, server: ServerProcess) -> None:
        self._conn = RawConnection(server.host, server.port)
        self._used = 0.0
        self.send_seconds: list[float] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """One request on the keep-alive connection, opened again after ``STALE_AFTER`` idle
        (uvicorn closes an idle connection after 5 s: while sockets open, between phases)."""
        if time.monotonic() - self._used > STALE_AFTER:
            await self._conn.close()
        answer = await self._conn.send(
            make_req("POST", path, {"content-type": "application/json"}, body)
        )
        self._used = time.monotonic()
        return answer

    async def emit(self, batch: list[tuple[int, int]]) -> float:
        body = json.dumps({"events": batch}).encode()
        stamp = time.time()
        status, answer = await self.post("/emit_tenants", body)
        if status != 200:
            raise RuntimeError(f"/emit_tenants failed: {status} {answer[:300]!r}")
        self.send_seconds.append(json.loads(answer)["seconds"])
        return stamp

    async def close(self) -> None:
        await self._conn.close()


@dataclass
class Driven:
    """What the generator made in one window: each key's organisation and moment."""

    rate: float
    organisation: dict[int, int] = field(default_factory=dict)
    stamps: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0  # from the schedule's start to the last batch made

    @property
    def made(self) -> int:
        return len(self.stamps)

    @property
    def achieved(self) -> float:
        return self.made / self.seconds if self.seconds > 0 else math.nan


async def drive(
    sink: Sink, organisations: Sequence[int], rate: float, seconds: float, keys: Iterator[int]
) -> Driven:
    """``rate`` events a second for ``seconds``, organisations in turn: event k is due at
    k / rate s and made by the first batch at or after that (a batch every ``TICK``, or at
    once when the previous one took longer)."""
    total = max(1, round(rate * seconds))
    turn = itertools.cycle(organisations)
    driven = Driven(rate)
    start = time.perf_counter()
    ticks = 0
    while driven.made < total:
        due = min(total, math.floor(rate * (time.perf_counter() - start)) + 1)
        count = min(due - driven.made, MAX_BATCH)
        if count > 0:
            batch = [(next(turn), next(keys)) for _ in range(count)]
            stamp = await sink.emit(batch)
            for org, key in batch:
                driven.organisation[key] = org
                driven.stamps[key] = stamp
            driven.seconds = time.perf_counter() - start
        ticks += 1
        await asyncio.sleep(max(0.0, start + ticks * TICK - time.perf_counter()))
    driven.seconds = max(driven.seconds, (total - 1) / rate if rate else 0.0)
    return driven


# --------------------------------------------------------------------------- one rate


@dataclass
class Step:
    rate: float  # events/s wanted
    per_organisation: float
    made: int
    achieved: float  # events/s the generator made
    expected: int
    received: int
    lost: int
    extra: int  # deliveries beyond one per subscriber and event
    disorder: int
    latencies_ms: list[float]
    server_cpu: float  # s
    client_cpu: float  # s
    bench_cpu: float  # s, this process (the generator)
    seconds: float  # from the first event to the last delivery
    problems: list[str]
    instances: list[tuple[float, float]] = field(default_factory=list)  # (CPU s, p99) each

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def max_ms(self) -> float:
        return self.latencies_ms[-1] if self.latencies_ms else math.nan

    @property
    def generator_kept_up(self) -> bool:
        return self.achieved >= GENERATOR_SHORTFALL * self.rate

    @property
    def delivered_well(self) -> bool:
        return (
            self.lost == 0
            and self.extra == 0
            and self.disorder == 0
            and self.pct(99) <= P99_TARGET_MS
        )

    @property
    def sustained(self) -> bool:
        return self.delivered_well and self.generator_kept_up

    @property
    def cpu_per_delivery_us(self) -> float:
        return self.server_cpu / self.received * 1e6 if self.received else math.nan

    def verdict(self) -> str:
        if self.sustained:
            return "sustained"
        reasons = []
        if self.lost or self.extra or self.disorder:
            reasons.append(
                f"{self.lost} lost, {self.extra} extra, {self.disorder} duplicate or out of order"
            )
        if not self.pct(99) <= P99_TARGET_MS:
            reasons.append(f"p99 above {P99_TARGET_MS:.0f} ms")
        if not self.generator_kept_up:
            reasons.append(
                f"events made at only {self.achieved:,.0f}/s (the generator waits for each "
                "batch: the database's commit, or the floor's /emit sending its frames)"
            )
        return "NOT sustained: " + "; ".join(reasons)


@dataclass
class Target:
    """Servers taking the sockets (dealt to them in turn) and the sink making their events."""

    role: str
    servers: list[ServerProcess]
    sink: Sink

    def pids(self) -> list[list[int]]:
        """Each server's process tree; an error if one is no longer running."""
        pids = []
        for server in self.servers:
            process = server.process
            assert process is not None
            if process.poll() is not None:
                raise RuntimeError(
                    f"{server.name} exited with {process.returncode}; see {server.log_path}"
                )
            pids.append(process_tree(process.pid))
        return pids


def cpu_each(pids: list[list[int]]) -> list[int]:
    """CPU ns of each server (``Target.pids``)."""
    return [cpu_ns(tree) for tree in pids]


@dataclass
class Phase:
    role: str
    subscribers: int
    opened: int
    open_seconds: float
    steps: list[Step]

    @property
    def base(self) -> Step | None:
        """The base rate's window: the one sustained, else the last tried."""
        first = [s for s in self.steps if s.per_organisation == self.steps[0].per_organisation]
        return next((s for s in first if s.sustained), first[-1]) if first else None

    @property
    def best(self) -> Step | None:
        """The highest rate sustained (None: not even the first)."""
        sustained = [s for s in self.steps if s.sustained]
        return max(sustained, key=lambda s: s.rate) if sustained else None

    @property
    def max_rate(self) -> float:
        best = self.best
        return best.rate if best else 0.0

    @property
    def ceiling_reached(self) -> bool:
        """Every rate of the ladder was sustained: the true maximum is higher."""
        return bool(self.steps) and all(s.sustained for s in self.steps)


class Run:
    """One target's clients, events and measurements."""

    def __init__(
        self,
        target: Target,
        tenants: Sequence[Tenant],
        chosen: Sizes,
        clients: TenantClients,
        keys: Iterator[int],
    ) -> None:
        self.target = target
        self.tenants = tenants
        self.sizes = chosen
        self.clients = clients
        self.keys = keys
        self.organisations = [t.organisation_id for t in tenants]
        self.opened: Counter[int] = Counter()
        self.instance_of: dict[int, int] = {}  # organisation -> server, when split by them

    async def open(self) -> tuple[int, float, list[str]]:
        """Every dashboard's socket, dealt to the servers (``split``); (opened, seconds,
        errors)."""
        servers = self.target.servers
        specs: list[list[tuple[str, str, int]]] = [[] for _ in servers]
        n = 0
        for i, tenant in enumerate(self.tenants):
            document = DOCUMENT.format(org=tenant.organisation_id)
            for _ in range(self.sizes.dashboards):
                server = i if self.sizes.split == "organisations" else n
                if len(servers) > 1 and self.sizes.split == "organisations":
                    self.instance_of[tenant.organisation_id] = server % len(servers)
                specs[server % len(servers)].append(
                    (tenant.token, document, tenant.organisation_id)
                )
                n += 1
        started = time.perf_counter()
        errors: list[str] = []
        for server, share in zip(servers, specs, strict=True):
            if share:
                url = f"ws://{server.host}:{server.port}/graphql"
                opened, problems = await self.clients.open(url, share)
                self.opened.update(opened)
                errors += problems
        return sum(self.opened.values()), time.perf_counter() - started, errors

    def expected(self, organisations: Sequence[int]) -> int:
        return sum(self.opened[org] for org in organisations)

    async def wait_for(self, expected: int, idle: float) -> tuple[int, list[int], float]:
        """Until ``expected`` frames arrived (since the last report) or none came for
        ``idle`` s (or ``DRAIN_MAX`` passed); (received, each server's CPU ns, perf_counter) as
        of the last frame seen."""
        pids = self.target.pids()
        started = last_at = time.monotonic()
        last = -1
        mark = (cpu_each(pids), time.perf_counter())
        while True:
            got, _ = await self.clients.count()
            now = time.monotonic()
            if got != last:
                last, last_at = got, now
                mark = (cpu_each(pids), time.perf_counter())
            if got >= expected or now - last_at > idle or now - started > DRAIN_MAX:
                return got, *mark
            await asyncio.sleep(POLL)

    async def probe(self) -> str:
        """One event per organisation until one round reaches every socket (every execution
        is listening); what happened, for the progress line."""
        expected = self.expected(self.organisations)
        reached = []
        for attempt in range(1, PROBES + 1):
            orgs = self.organisations
            for start in range(0, len(orgs), MAX_BATCH):
                await self.target.sink.emit(
                    [(org, next(self.keys)) for org in orgs[start : start + MAX_BATCH]]
                )
            got, _, _ = await self.wait_for(expected, PROBE_IDLE)
            await self.clients.report()  # probes are not measured
            if got >= expected:
                return f"{attempt} probe round{'s' if attempt > 1 else ''}"
            reached.append(f"{got}/{expected}")
        return f"NO probe round reached every socket: {', '.join(reached)}"

    async def step(self, per_organisation: float) -> Step:
        rate = per_organisation * len(self.organisations)
        pids = self.target.pids()
        client_before = await self.clients.cpu()
        bench_before = time.process_time()
        server_before, clock_before = cpu_each(pids), time.perf_counter()
        driven = await drive(
            self.target.sink, self.organisations, rate, self.sizes.window, self.keys
        )
        expected = self.expected(list(driven.organisation.values()))
        _, server_after, clock_after = await self.wait_for(expected, DRAIN_IDLE)
        bench_cpu = time.process_time() - bench_before
        client_cpu = await self.clients.cpu() - client_before
        received = await self.clients.report()
        return self.tally(
            driven,
            received,
            per_organisation=per_organisation,
            server_cpu=[(a - b) / 1e9 for a, b in zip(server_after, server_before, strict=True)],
            client_cpu=client_cpu,
            bench_cpu=bench_cpu,
            seconds=clock_after - clock_before,
        )

    def tally(
        self,
        driven: Driven,
        received: Received,
        *,
        per_organisation: float,
        server_cpu: list[float],
        client_cpu: float,
        bench_cpu: float,
        seconds: float,
    ) -> Step:
        counts: Counter[int] = Counter()
        latencies = []
        by_instance: defaultdict[int, list[float]] = defaultdict(list)
        stamps, organisation, instance = driven.stamps, driven.organisation, self.instance_of
        stray = 0
        for key, at in zip(received.keys, received.times, strict=True):
            stamp = stamps.get(key)
            if stamp is None:
                stray += 1  # an event of an earlier window, come late
                continue
            counts[key] += 1
            latencies.append((at - stamp) * 1000.0)
            if instance:
                by_instance[instance[organisation[key]]].append(latencies[-1])
        lost = extra = 0
        for key, org in driven.organisation.items():
            difference = self.opened[org] - counts[key]
            lost += max(0, difference)
            extra += max(0, -difference)
        problems = list(received.errors)
        if stray:
            problems.append(f"{stray} deliveries of earlier events")
        if received.unexpected or received.dropped:
            problems.append(
                f"{received.unexpected} unexpected messages, {received.dropped} sockets dropped"
            )
        return Step(
            rate=driven.rate,
            per_organisation=per_organisation,
            made=driven.made,
            achieved=driven.achieved,
            expected=sum(self.opened[org] for org in driven.organisation.values()),
            received=sum(counts.values()),
            lost=lost,
            extra=extra,
            disorder=received.disorder,
            latencies_ms=sorted(latencies),
            server_cpu=sum(server_cpu),
            client_cpu=client_cpu,
            bench_cpu=bench_cpu,
            seconds=seconds,
            problems=problems,
            instances=[
                (cpu, percentile(sorted(by_instance[i]), 99)) for i, cpu in enumerate(server_cpu)
            ]
            if instance
            else [],
        )


def describe(role: str, step: Step) -> str:
    span = max(step.seconds, 1e-9)
    return (
        f"    {role} {step.rate:,.0f} events/s ({step.per_organisation:g} per organisation): "
        f"{step.made:,} made at {step.achieved:,.0f}/s; {step.received:,}/{step.expected:,} "
        f"delivered, p50 {step.pct(50):.1f} ms, p99 {step.pct(99):.1f} ms, max {step.max_ms:.1f} "
        f"ms; server {step.cpu_per_delivery_us:.1f} us CPU per delivery "
        f"({step.server_cpu / span:.0%} of a core); clients {step.client_cpu / span:.0%} and "
        f"bench {step.bench_cpu / span:.0%} of their core; "
        + "".join(
            f"instance {'AB'[i] if i < 2 else i}: {cpu / span:.0%} of a core, p99 {p99:.1f} ms; "
            for i, (cpu, p99) in enumerate(step.instances)
        )
        + step.verdict()
        + (f"; {'; '.join(step.problems[:3])}" if step.problems else "")
    )


async def phase(
    target: Target, tenants: Sequence[Tenant], chosen: Sizes, keys: Iterator[int], log: IO[bytes]
) -> Phase:
    """One target through the ladder (see the module docstring)."""
    clients = await TenantClients.start(worker_count(chosen.subscribers), MARKER, log)
    try:
        run = Run(target, tenants, chosen, clients, keys)
        opened, seconds, errors = await run.open()
        if not opened:
            target.pids()  # says so if a server has exited
            raise RuntimeError(f"{target.role}: no socket opened: {errors[:3]}")
        probed = await run.probe()
        progress(
            f"  {target.role}: {opened:,}/{chosen.subscribers:,} sockets open in {seconds:.1f} s "
            f"({len(clients.processes)} client processes); {probed}"
            + (f"; first problems: {errors[:2]}" if errors else "")
        )
        steps: list[Step] = []
        for multiple in chosen.steps:
            for _ in range(TRIES):
                await asyncio.sleep(SETTLE)
                step = await run.step(multiple)
                steps.append(step)
                progress(describe(target.role, step))
                if step.sustained:
                    break
            if not step.sustained:
                break
        await clients.close()
    finally:
        await clients.stop()
    return Phase(target.role, chosen.subscribers, opened, seconds, steps)


# --------------------------------------------------------------------------- servers


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server with several workers forks them)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def raise_open_files(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``needed`` (the client workers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"open files: hard limit {hard} < {needed} needed (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


def allow_open_files(server: ServerProcess, needed: int) -> None:
    """Raise a running server's soft RLIMIT_NOFILE to ``needed`` with ``prlimit``."""
    assert server.process is not None
    for pid in process_tree(server.process.pid):
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            if hard != resource.RLIM_INFINITY and hard < needed:
                raise RuntimeError(f"{server.name}: open files hard limit {hard} < {needed}")
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (needed, hard))


def app_server(ctx: BenchContext, name: str, log: str, core: int) -> ServerProcess:
    """``python main.py serve`` on the run's database (``ctx.app_environment``); on SQLite,
    sweeping every ``SQLITE_SWEEP`` s (nothing else tells it of events this process writes)."""
    env = {**ctx.app_environment(), "HOST": "127.0.0.1", "PORT": str(free_port())}
    if not is_postgres(ctx.database_url):
        env["WORK_SWEEP_SECONDS"] = SQLITE_SWEEP
    return ServerProcess(name, [PYTHON, "main.py", "serve"], env, ctx.results_dir / log, core=core)


async def start(servers: Sequence[ServerProcess], needed: int) -> None:
    for server in servers:
        await server.start()
        allow_open_files(server, needed)


def stop(servers: Sequence[ServerProcess]) -> None:
    for server in servers:
        server.stop()


def two_instances_unsupported(ctx: BenchContext) -> str | None:
    if not is_postgres(ctx.database_url):
        return "needs PostgreSQL in DATABASE_URL (SQLite serves one process)"
    if not os.environ.get("REDIS_URL"):
        return "needs REDIS_URL (without Redis each instance has its own broadcast)"
    return None


# --------------------------------------------------------------------------- rows


def _p99_row(name: str, step: Step | None, baseline: float | None) -> Row:
    value = step.pct(99) if step else math.nan
    ratio = value / baseline if baseline else None
    met = step is not None and value <= P99_TARGET_MS
    return Row(name, value, "ms", baseline, ratio, target=f"<= {P99_TARGET_MS:g} ms", met=met)


def _lost_row(name: str, step: Step | None, baseline: float | None) -> Row:
    lost = (step.lost + step.extra + step.disorder) if step else math.nan
    return Row(name, lost, "deliveries", baseline, None, target="= 0", met=lost == 0)


def rows_of(app: Phase, floor: Phase, two: Phase | None) -> list[Row]:
    base, floor_base = app.base, floor.base
    rows = [
        Row(
            f"{NAME}.subscribers",
            app.opened,
            "sockets",
            app.subscribers,
            app.opened / app.subscribers,
            target=f"= {app.subscribers}",
            met=app.opened == app.subscribers,
        ),
        _lost_row(
            f"{NAME}.base.lost",
            base,
            (floor_base.lost + floor_base.extra + floor_base.disorder) if floor_base else None,
        ),
        compared(
            f"{NAME}.base.p50",
            base.pct(50) if base else math.nan,
            "ms",
            floor_base.pct(50) if floor_base else None,
        ),
        _p99_row(f"{NAME}.base.p99", base, floor_base.pct(99) if floor_base else None),
        compared(
            f"{NAME}.base.max",
            base.max_ms if base else math.nan,
            "ms",
            floor_base.max_ms if floor_base else None,
        ),
        compared(
            f"{NAME}.base.cpu_per_delivery",
            base.cpu_per_delivery_us if base else math.nan,
            "us",
            floor_base.cpu_per_delivery_us if floor_base else None,
        ),
        compared(
            f"{NAME}.max_rate",
            app.max_rate,
            "events/s",
            floor.max_rate or None,
            min_ratio=MIN_FLOOR_RATIO,
        ),
    ]
    best = app.best
    if best is not None:
        rows.append(
            compared(
                f"{NAME}.max_rate.p99",
                best.pct(99),
                "ms",
                floor.best.pct(99) if floor.best else None,
            )
        )
    if two is not None:
        rows += [
            _lost_row(f"{NAME}.two.base.lost", two.base, base.lost if base else None),
            _p99_row(f"{NAME}.two.base.p99", two.base, base.pct(99) if base else None),
            compared(f"{NAME}.two.max_rate", two.max_rate, "events/s", app.max_rate or None),
        ]
    return rows


def keep_series(ctx: BenchContext, name: str, role: str, step: Step | None) -> None:
    """The base rate's delivery latencies, for ``make bench-plot``."""
    if step is None:
        return
    samples = step.latencies_ms
    if len(samples) > MAX_SAMPLES_KEPT:
        samples = sorted(random.Random(0).sample(samples, MAX_SAMPLES_KEPT))
    ctx.series[name] = {
        "benchmark": f"{NAME}.base",
        "role": role,
        "unit": "ms",
        "requests_per_second": round(step.received / max(step.seconds, 1e-9), 1),
        "p50": round(step.pct(50), 3),
        "p99": round(step.pct(99), 3),
        "samples": [round(s, 3) for s in samples],
    }


def summary(role: str, phase_: Phase, against: tuple[str, Phase] | None = None) -> str:
    """The highest rate ``phase_`` sustained, and its ratio to ``against`` (name, phase)."""
    rate = f"{phase_.max_rate:,.0f} events/s" if phase_.best else "no rate"
    more = " (every rate of the ladder: at least this)" if phase_.ceiling_reached else ""
    ratio = ""
    if against is not None and against[1].max_rate:
        name, other = against
        ratio = f", {phase_.max_rate / other.max_rate:.2f}x {name}'s {other.max_rate:,.0f}"
    return f"  {role}: highest rate sustained {rate}{more}{ratio}"


# --------------------------------------------------------------------------- the benchmark


async def floor_phase(
    ctx: BenchContext, tenants: Sequence[Tenant], chosen: Sizes, keys: Iterator[int], log: IO[bytes]
) -> Phase:
    """The floor, told every token's organisation, through the ladder."""
    server = ServerProcess(
        "ws floor (tenants)",
        [PYTHON, "bench/ws_floor.py"],
        {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port())},
        ctx.results_dir / "live_tenants_floor.log",
        core=SERVER_CORE,
    )
    emits = FloorEmits(server)
    try:
        await start([server], chosen.subscribers + FD_MARGIN)
        mapping = json.dumps({t.token: t.organisation_id for t in tenants}).encode()
        status, answer = await emits.post("/tenants", mapping)
        if status != 200:
            raise RuntimeError(f"/tenants failed: {status} {answer[:300]!r}")
        return await phase(Target("ws floor", [server], emits), tenants, chosen, keys, log)
    finally:
        await emits.close()
        stop([server])


async def app_phase(
    ctx: BenchContext,
    role: str,
    servers: list[ServerProcess],
    tenants: Sequence[Tenant],
    chosen: Sizes,
    keys: Iterator[int],
    log: IO[bytes],
) -> Phase:
    """supplygraph on ``servers`` (sockets dealt to them in turn) through the ladder."""
    outbox = Outbox([t.organisation_id for t in tenants], postgres=is_postgres(ctx.database_url))
    try:
        await start(servers, chosen.subscribers + FD_MARGIN)
        return await phase(Target(role, servers, outbox), tenants, chosen, keys, log)
    finally:
        stop(servers)


async def run(ctx: BenchContext) -> list[Row]:
    from bench.hot_paths import bench_database

    chosen = sizes(ctx.quick)
    limit = raise_open_files(chosen.subscribers + FD_MARGIN)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    progress(
        f"  {NAME}: {chosen.subscribers:,} subscribers = {chosen.organisations:,} organisations x "
        f"{chosen.dashboards}, base {chosen.organisations:,} events/s "
        f"({chosen.subscribers:,} deliveries/s), {chosen.window:g} s per rate, rates x "
        f"{', '.join(f'{s:g}' for s in chosen.steps)}; open-file limit {limit}"
    )
    keys = itertools.count(1)  # each event's key, unique over the run
    two: Phase | None = None
    with (ctx.results_dir / "live_tenants_clients.log").open("wb") as log:
        async with bench_database(ctx):
            started = time.perf_counter()
            tenants = await seed_tenants(chosen.organisations)
            history = await seed_history(
                [t.organisation_id for t in tenants], HISTORY_PER_ORGANISATION
            )
            seeded = time.perf_counter() - started
            progress(
                f"  {NAME}: seeded {len(tenants):,} tenants and {history:,} past events in "
                f"{seeded:.1f} s"
            )

            floor = await floor_phase(ctx, tenants, chosen, keys, log)
            progress(summary("ws floor", floor))

            single = [
                app_server(ctx, "supplygraph (tenants)", "live_tenants_server.log", SERVER_CORE)
            ]
            app = await app_phase(ctx, "supplygraph", single, tenants, chosen, keys, log)
            progress(summary("supplygraph", app, ("the floor", floor)))

            unsupported = two_instances_unsupported(ctx)
            if unsupported:
                progress(f"  {NAME}: two instances skipped: {unsupported}")
            else:
                pair = [
                    app_server(ctx, "supplygraph A", "live_tenants_server_a.log", SERVER_CORE),
                    app_server(ctx, "supplygraph B", "live_tenants_server_b.log", LOADGEN_CORE),
                ]
                progress(f"  {NAME}: two instances, the sockets split by {chosen.split[:-1]}")
                two = await app_phase(ctx, "supplygraph A+B", pair, tenants, chosen, keys, log)
                progress(summary("supplygraph A+B", two, ("one instance", app)))
    keep_series(ctx, f"{NAME}.base.floor", "ws floor", floor.base)
    keep_series(ctx, f"{NAME}.base", "supplygraph", app.base)
    if two is not None:
        keep_series(ctx, f"{NAME}.two.base", "supplygraph A+B", two.base)
    return rows_of(app, floor, two)
