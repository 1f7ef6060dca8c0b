"""Faults with real services and real processes.

* A matrix of warehouse faults (timeouts, 5xx, 429, connection refused, dropped connections,
  slow answers, refusal after pick): every withdraw ends WITHDRAWN or WITHDRAW_FAILED with a
  reason, within the deadline the WAREHOUSE_* settings imply (``task_deadline``).
* Redis killed and restarted under two instances while subscribers listen and mutations run:
  mutations keep committing, broken sockets resume with ``afterEventId``, and every subscriber
  gets every event of the ``events`` history exactly once, in order.
* A private PostgreSQL cluster restarted, crashed or hung under a running app: ``/readyz``
  answers 503 within the readiness timeout, then 200 again, and queries work, without
  restarting the app.
* The app (``python main.py serve``) SIGKILLed with a withdraw, then a push, in flight at the
  warehouse (before it acted, and after it acted but before the answer arrived): the next
  process finishes the work, and the warehouse and the ledger see it once.

Each test prints its figures (times, counts) whether it passes or not.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from domain.distribution.models import TaskKind, TaskState
from integrations.warehouses.protocol import PATH_OUTBOUND_ORDERS
from service.app import READINESS_TIMEOUT
from service.settings import Settings
from tests.conftest import MakeMember, Member, ServerFactory
from tests.support.distribution import (
    FAST_WAREHOUSE,
    WarehouseSim,
    eventually,
    order_state,
    paid_order,
    partnered,
    push,
    warehouse_reference,
    warehouse_simulator,
)
from tests.support.faults import (
    AppProcess,
    KillableRedis,
    PostgresCluster,
    ResumingSubscriber,
    event_history,
    held_warehouse_simulator,
    postgres_cluster_unavailable,
    run_cli,
    task_deadline,
)
from tests.support.graphql_client import GraphQLHttp
from tests.support.redis_server import redis_server_available
from tests.support.server import free_port
from tests.support.services import SKIPPED_SUITES, require_postgres, unavailable
from tests.test_distribution_faults import (
    api_calls,
    attempts,
    both_sides,
    distributor_wallet,
    pushed_order,
    refunds,
    tasks_of,
    withdraw,
    withdrawal_is,
)
from tests.test_order_flow import supplier_catalogue

RENAME = "mutation($n: String!) { renameOrganisation(input: {name: $n}) { userErrors { code } } }"
ME = "{ me { organisation { id name } } }"


@pytest.fixture
def figures(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> Iterator[list]:
    """Lines a test reports; printed (even without ``-s``) when it ends, passed or failed."""
    lines: list[str] = []
    yield lines
    if lines:
        with capsys.disabled():
            print(f"\n[figures] {request.node.name}")
            for line in lines:
                print(f"  {line}")


# --- 1. the warehouse fault matrix -------------------------------------------------------------

# The worker's timings for the matrix: a 0.8 s timeout, one client retry, two runs 0.2 s apart.
MATRIX_WAREHOUSE = {**FAST_WAREHOUSE, "warehouse_timeout": 0.8}
TASK_RUNS = MATRIX_WAREHOUSE["warehouse_task_attempts"]
CALLS_PER_RUN = MATRIX_WAREHOUSE["warehouse_retries"] + 1
DEADLINE_SLACK = 3.0  # database work and scheduling on a loaded machine


@dataclass(frozen=True)
class WarehouseFault:
    """One kind of fault: how to cause it, and the withdraw's expected end."""

    name: str
    cause: str  # "faults" (the simulator's /_sim/faults), "stopped", "picked"
    ends: str  # WITHDRAWN or WITHDRAW_FAILED
    reason: tuple[str, ...] = ()  # all in the failure reason
    sim_faults: dict[str, Any] = field(default_factory=dict)
    cancel_calls: int | None = None  # calls the simulator receives (None: it is not running)
    runs: int = 1  # cancel runs recorded on the order


UNREACHABLE = ("warehouse unreachable",)  # and it ends "; gave up after TASK_RUNS runs"
ALL_FAIL = TASK_RUNS * CALLS_PER_RUN

FAULTS = [
    WarehouseFault(
        "timeout",
        "faults",
        "WITHDRAW_FAILED",
        (*UNREACHABLE, "Timeout"),
        {"delay": 2 * MATRIX_WAREHOUSE["warehouse_timeout"]},
        ALL_FAIL,
        TASK_RUNS,
    ),
    WarehouseFault(
        "5xx",
        "faults",
        "WITHDRAW_FAILED",
        (*UNREACHABLE, "HTTP 502", "SIMULATED_FAILURE"),
        {"fail_next": 1000, "status": 502},
        ALL_FAIL,
        TASK_RUNS,
    ),
    WarehouseFault(
        "429",
        "faults",
        "WITHDRAW_FAILED",
        (*UNREACHABLE, "HTTP 429"),
        {"fail_next": 1000, "status": 429},
        ALL_FAIL,
        TASK_RUNS,
    ),
    WarehouseFault(
        "connection-refused",
        "stopped",
        "WITHDRAW_FAILED",
        (*UNREACHABLE, "ConnectError"),
        runs=TASK_RUNS,
    ),
    WarehouseFault(
        "connection-dropped",
        "faults",
        "WITHDRAW_FAILED",
        (*UNREACHABLE, "RemoteProtocolError"),
        {"drop_next": 1000},
        ALL_FAIL,
        TASK_RUNS,
    ),
    WarehouseFault(
        "5xx-then-recovers",
        "faults",
        "WITHDRAWN",
        sim_faults={"fail_next": CALLS_PER_RUN, "status": 503},
        cancel_calls=CALLS_PER_RUN + 1,
        runs=2,
    ),
    WarehouseFault(
        "slow",
        "faults",
        "WITHDRAWN",
        sim_faults={"delay": 0.3 * MATRIX_WAREHOUSE["warehouse_timeout"]},
        cancel_calls=1,
    ),
    WarehouseFault(
        "refused-after-pick",
        "picked",
        "WITHDRAW_FAILED",
        ("the warehouse refused", "PICKING"),
        cancel_calls=1,
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_withdraw_under_a_warehouse_fault_ends_with_a_reason_within_the_deadline(
    fault: WarehouseFault,
    make_server: ServerFactory,
    make_member: MakeMember,
    figures: list[str],
) -> None:
    server = await make_server(**MATRIX_WAREHOUSE)
    client = GraphQLHttp(server.url)
    running = warehouse_simulator()
    sim = await anext(running)
    try:
        d = await partnered(client, make_member, sim)
        order_id = await pushed_order(client, d)
        if fault.cause == "stopped":
            await running.aclose()  # the port is closed: connections are refused
        elif fault.cause == "picked":
            await sim.advance(order_id, "PICKING")
        else:
            await sim.faults(**fault.sim_faults)
        worker = server.app.state.warehouses.settings
        assert (worker.timeout, worker.retries, worker.task_attempts, worker.retry_delay) == (
            server.settings.warehouse_timeout,
            server.settings.warehouse_retries,
            server.settings.warehouse_task_attempts,
            server.settings.warehouse_retry_delay,
        )
        deadline = task_deadline(worker, slack=DEADLINE_SLACK)

        loop = asyncio.get_running_loop()
        began = loop.time()
        answered = await withdraw(client, d.distributor.token, order_id)
        assert answered["userErrors"] == [] and answered["withdrawal"]["status"] == "WITHDRAWING"
        state = await eventually(
            lambda: order_state(client, d.distributor.token, order_id),
            lambda s: s["distribution"]["withdrawalStatus"] != "WITHDRAWING",
            timeout=deadline + 10,
        )
        took = loop.time() - began
        failure = state["withdrawals"][-1]["failure"]
        calls = None if fault.cause == "stopped" else len(await api_calls(sim, "/cancel"))
        figures.append(
            f"{fault.name}: {state['distribution']['withdrawalStatus']} after {took:.2f}s "
            f"(deadline {deadline:.2f}s = {deadline - DEADLINE_SLACK:.2f}s + {DEADLINE_SLACK}s "
            f"slack); cancel calls at the warehouse: {calls}; reason: {failure!r}"
        )

        assert state["distribution"]["withdrawalStatus"] == fault.ends, state
        assert took <= deadline, f"WITHDRAWING for {took:.2f}s, past the {deadline:.2f}s deadline"
        state = await both_sides(client, d, order_id, withdrawal_is(fault.ends))
        assert [w["status"] for w in state["withdrawals"]] == [fault.ends]
        [task] = await tasks_of(order_id, TaskKind.CANCEL_ORDER)
        assert task.lease_owner is None
        balance, entries = await distributor_wallet(client, d)
        cancels = attempts(state, "CANCEL_ORDER")
        assert len(cancels) == fault.runs, cancels
        if fault.ends == "WITHDRAWN":
            assert task.state is TaskState.DONE
            assert failure is None and cancels[-1]["ok"]
            assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
            assert balance == "8.00" and len(refunds(entries)) == 1
        else:
            assert task.state is TaskState.FAILED
            assert failure and all(part in failure for part in fault.reason), failure
            if fault.reason[:1] == UNREACHABLE:
                assert failure.endswith(f"; gave up after {TASK_RUNS} runs"), failure
            assert not any(a["ok"] for a in cancels)
            assert state["status"] == "AWAITING_SHIPPING" and state["refundedAmount"] == "0.00"
            assert balance == "0.00" and refunds(entries) == []
        if fault.cause != "stopped":
            assert calls == fault.cancel_calls
            expected = 1 if fault.ends == "WITHDRAWN" else 0
            if fault.cause == "faults" and "delay" in fault.sim_faults:
                await sim.faults(reset=True)
                await asyncio.sleep(fault.sim_faults["delay"] + 0.2)  # slow calls end
            assert (await sim.effects())["outbound_cancelled"] == expected
    finally:
        await running.aclose()
        await client.close()


# --- 2. Redis killed and restarted under two instances -----------------------------------------

NO_SAFETY_POLL = 300.0  # only the broadcast (and its reconnect) can carry B's events to A
OUTAGE_SECONDS = 3.0

CREATE_ORDER = """mutation($k: ID!, $m: ID!) { createManualOrder(input: {lines: [{skuId: $k, quantity: 1}],
  logisticsMethodId: $m, shippingAddress: {name: "Ann", address1: "1 High St", city: "London", zip: "N1", countryCode: "GB"}})
  { order { id } userErrors { code field message } } }"""
CANCEL_ORDER = (
    "mutation($o: ID!) { cancelOrders(orderIds: [$o]) { orders { status } userErrors { code } } }"
)


class MutationLoop:
    """Mutations on one instance, one after another, counted by the phase they ran in."""

    def __init__(self, client: GraphQLHttp, buyer: Member, supplier: Member, catalogue: dict):
        self.client = client
        self.buyer = buyer
        self.supplier = supplier
        self.catalogue = catalogue
        self.phase = "before"
        self.committed: Counter[str] = Counter()
        self.failed: list[tuple[str, str]] = []
        self._stop = asyncio.Event()

    async def _mutate(self, query: str, variables: dict[str, Any], token: str) -> dict:
        phase = self.phase
        try:
            data = await self.client.data(query, variables, token=token)
        except Exception as error:
            self.failed.append((phase, repr(error)[:300]))
            return {}
        payload = next(iter(data.values()))
        if payload["userErrors"]:
            self.failed.append((phase, repr(payload["userErrors"])))
        else:
            self.committed[phase] += 1
        return payload

    async def run(self) -> None:
        round_ = 0
        while not self._stop.is_set():
            round_ += 1
            await self._mutate(RENAME, {"n": f"Buyer {round_}"}, self.buyer.token)
            made = await self._mutate(
                CREATE_ORDER,
                {"k": self.catalogue["skus"]["TEE-R-M"], "m": self.catalogue["method"]},
                self.buyer.token,
            )
            if made.get("order"):
                await self._mutate(CANCEL_ORDER, {"o": made["order"]["id"]}, self.buyer.token)
            await self._mutate(RENAME, {"n": f"Supplier {round_}"}, self.supplier.token)

    def stop(self) -> None:
        self._stop.set()


async def _ready(url: str, timeout: float) -> float:
    """Seconds until ``url``/readyz answers 200."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=READINESS_TIMEOUT + 3) as http:
        while (await http.get(f"{url}/readyz")).status_code != 200:
            assert time.monotonic() - began < timeout, f"{url} not ready after {timeout}s"
            await asyncio.sleep(0.1)
    return time.monotonic() - began


async def test_redis_killed_and_restarted_loses_no_event_and_no_mutation(
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Any,
    figures: list[str],
) -> None:
    suite = "faults: redis restart under two instances"
    if not redis_server_available():
        unavailable(suite, "redis-server is not installed")
    require_postgres(suite)  # two processes share one database
    redis = KillableRedis()
    b = AppProcess(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "EVENT_RESYNC_INTERVAL": str(NO_SAFETY_POLL),
            "OUTBOX_RETRY_INTERVAL": "0.2",
            "SECRETS_KEY": base_settings.secrets_key,
        },
        tmp_path / "instance-b.log",
    )
    subscribers: list[ResumingSubscriber] = []
    clients: list[GraphQLHttp] = []
    mutations: MutationLoop | None = None
    try:
        redis.start()
        a = await make_server(
            redis_url=redis.url, event_resync_interval=NO_SAFETY_POLL, outbox_retry_interval=0.2
        )
        await b.start()
        on_a, on_b = GraphQLHttp(a.url), GraphQLHttp(b.url)
        clients += [on_a, on_b]
        supplier, buyer = await make_member("SUPPLIER"), await make_member("BUYER")
        catalogue = await supplier_catalogue(on_a, supplier)
        steady = ResumingSubscriber("buyer, stays on A", buyer.token, a.ws_url)
        dropped = ResumingSubscriber("buyer, socket broken in the outage", buyer.token, a.ws_url)
        moved = ResumingSubscriber("supplier, moves to B in the outage", supplier.token, a.ws_url)
        late = ResumingSubscriber("buyer, socket broken as Redis returns", buyer.token, a.ws_url)
        supplier_steady = ResumingSubscriber("supplier, stays on A", supplier.token, a.ws_url)
        subscribers += [steady, dropped, moved, late, supplier_steady]
        for subscriber in subscribers:
            await subscriber.start()
        await a.wait_for_subscribers(len(subscribers))

        mutations = MutationLoop(on_b, buyer, supplier, catalogue)
        running = asyncio.create_task(mutations.run())
        await asyncio.sleep(1.0)
        mutations.phase = "outage"
        killed_at = time.monotonic()
        redis.kill()
        await asyncio.sleep(0.5)
        dropped.break_socket()  # resumes on A while Redis is down
        moved.url = b.ws_url
        moved.break_socket()  # resumes on B (where the mutations run) while Redis is down
        await asyncio.sleep(OUTAGE_SECONDS - 0.5)
        a_ready_during = (await on_a.http.get("/readyz")).status_code
        backlog = {  # the last event of each organisation made during the outage
            member.token: (await event_history(on_b, member.token))[-1]["id"]
            for member in (buyer, supplier)
        }
        await asyncio.to_thread(redis.start)
        back_at = time.monotonic()
        mutations.phase = "after"
        late.break_socket()
        a_ready_in, b_ready_in = await _ready(a.url, 20), await _ready(b.url, 20)
        await asyncio.sleep(1.0)
        mutations.stop()
        await running

        truth = {
            buyer.token: await event_history(on_b, buyer.token),
            supplier.token: await event_history(on_b, supplier.token),
        }
        stuck: list[str] = []
        for subscriber in subscribers:
            try:
                await subscriber.received(truth[subscriber.token][-1]["id"], timeout=20)
            except (TimeoutError, AssertionError) as error:
                stuck.append(str(error))
        await asyncio.sleep(0.5)  # anything sent twice would arrive now

        figures.append(
            f"Redis down {back_at - killed_at:.2f}s (SIGKILL, restarted on port {redis.port}); "
            f"A /readyz during the outage: {a_ready_during}; ready again after "
            f"A {a_ready_in:.2f}s, B {b_ready_in:.2f}s"
        )
        figures.append(
            f"mutations on B committed: {dict(mutations.committed)}; failed: "
            f"{len(mutations.failed)} {mutations.failed[:3]}"
        )
        figures.append(
            f"events in the history: buyer {len(truth[buyer.token])}, "
            f"supplier {len(truth[supplier.token])}"
        )
        for subscriber in subscribers:
            expected_ids = [e["id"] for e in truth[subscriber.token]]
            got_ids = [e["id"] for e in subscriber.events]
            counts = Counter(got_ids)
            caught_up = (subscriber.arrived(backlog[subscriber.token]) or math.inf) - back_at
            figures.append(
                f"{subscriber.name}: received {len(got_ids)}/{len(expected_ids)}, "
                f"lost {len(set(expected_ids) - set(got_ids))}, "
                f"duplicated {sum(n - 1 for n in counts.values())}, "
                f"reconnects {subscriber.reconnects} (afterEventId {subscriber.resumed_after}), "
                f"had the outage's events {caught_up:+.2f}s after Redis returned"
            )

        assert stuck == []
        assert mutations.failed == []
        assert mutations.committed["outage"] > 0 and mutations.committed["after"] > 0
        for subscriber in subscribers:
            assert subscriber.events == truth[subscriber.token], subscriber.name
        for subscriber in (dropped, moved, late):
            assert subscriber.reconnects == 1, subscriber.name
        assert steady.reconnects == supplier_steady.reconnects == 0
    finally:
        if mutations is not None:  # a failure above must not leave the loop running
            mutations.stop()
        for subscriber in subscribers:
            await subscriber.close()
        for client in clients:
            await client.close()
        b.terminate()
        redis.cleanup()


# --- 3. PostgreSQL stopped, crashed or hung under a running app --------------------------------

READY_BOUND = READINESS_TIMEOUT + 1.5  # the longest one /readyz answer may take


def _private_postgres(suite: str) -> PostgresCluster:
    """A started private cluster; skipped where none can run (failed under CI=true when one
    should: the binaries and a non-root user are there)."""
    reason = postgres_cluster_unavailable()
    if reason is not None:
        SKIPPED_SUITES[suite] = reason
        pytest.skip(f"{suite}: {reason}")
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
    except (RuntimeError, OSError) as error:
        cluster.cleanup()
        unavailable(suite, f"a private PostgreSQL cluster did not start: {error}")
    return cluster


@dataclass
class PostgresApp:
    """The app (a real process) on a private PostgreSQL cluster, and a token of one user."""

    cluster: PostgresCluster
    app: AppProcess
    client: GraphQLHttp
    token: str
    pid: int

    @property
    def ready(self) -> str:
        return f"{self.app.url}/readyz"

    async def mutation_meanwhile(self, timeout: float) -> tuple[str, float]:
        """A mutation sent while the database is away: how it was answered, and when."""
        began = time.monotonic()
        async with httpx.AsyncClient(timeout=timeout) as once:  # (the app may close it)
            try:
                answer = await once.post(
                    f"{self.app.url}/graphql",
                    json={"query": RENAME, "variables": {"n": "during"}},
                    headers={"authorization": f"Bearer {self.token}"},
                )
                seen = f"HTTP {answer.status_code} {answer.text[:160]!r}"
            except httpx.TimeoutException:
                seen = "no answer"
        return seen, time.monotonic() - began

    async def works_again(self, name: str) -> list[dict[str, Any]]:
        """One change, then reads on several pooled connections at once: those that failed."""
        renamed = await self.client.post(RENAME, {"n": name}, token=self.token)
        reads = await asyncio.gather(*(self.client.post(ME, token=self.token) for _ in range(8)))
        failed = [r for r in [renamed, *reads] if "errors" in r]
        if not failed:
            assert {r["data"]["me"]["organisation"]["name"] for r in reads} == {name}
        return failed

    async def healthy(self) -> None:
        """Back to a running database and a ready app (whatever an earlier test left)."""
        self.cluster.thaw()
        if not self.cluster.running:
            await asyncio.to_thread(self.cluster.start)
        await _readyz_until(self.client.http, self.ready, 200, within=20)


@pytest.fixture(scope="module")
async def postgres_cluster_app(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PostgresApp]:
    """One cluster and one app process for the module's PostgreSQL outage tests."""
    cluster = _private_postgres("faults: PostgreSQL outages")
    key = run_cli({}, "generate-key").strip()
    app = AppProcess(
        {
            "DATABASE_URL": cluster.url,
            "SECRETS_KEY": key,
            "EVENT_RESYNC_INTERVAL": "1",
            "RESPONSE_CACHE": "false",  # every read goes to the database
        },
        tmp_path_factory.mktemp("pg-app") / "app.log",
    )
    client = GraphQLHttp(app.url)
    try:
        env = {"DATABASE_URL": cluster.url, "SECRETS_KEY": key}
        run_cli(env, "migrate")
        created = run_cli(
            env,
            *("create-org", "--name", "PG Co", "--kind", "BUYER"),
            *("--owner-email", "pg@example.test", "--with-token"),
        )
        token = created.rsplit("token (shown once):", 1)[1].strip()
        await app.start()
        assert app.process is not None
        yield PostgresApp(cluster, app, client, token, app.process.pid)
    finally:
        await client.close()
        cluster.thaw()
        app.terminate()
        cluster.cleanup()


@pytest.fixture
async def postgres_app(postgres_cluster_app: PostgresApp) -> PostgresApp:
    await postgres_cluster_app.healthy()
    assert await postgres_cluster_app.works_again("before") == []
    return postgres_cluster_app


async def _timed_get(http: httpx.AsyncClient, url: str) -> tuple[int | None, float]:
    """The status of one GET (None: no answer within the client's timeout), and its time."""
    began = time.monotonic()
    try:
        status: int | None = (await http.get(url)).status_code
    except httpx.TimeoutException:
        status = None
    return status, time.monotonic() - began


async def _readyz_until(
    http: httpx.AsyncClient, url: str, status: int, within: float
) -> tuple[float, float]:
    """Poll ``/readyz`` until it answers ``status``: (seconds it took, slowest answer)."""
    began = time.monotonic()
    slowest = 0.0
    while True:
        answer, took = await _timed_get(http, url)
        slowest = max(slowest, took)
        if answer == status:
            return time.monotonic() - began, slowest
        assert time.monotonic() - began < within, f"/readyz not {status} after {within}s"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("outage", ["restart", "crash"])
async def test_postgres_restart_or_crash_turns_readyz_503_then_200_without_restarting_the_app(
    outage: str, postgres_app: PostgresApp, figures: list[str]
) -> None:
    pg = postgres_app
    mode = {"restart": "fast", "crash": "immediate"}[outage]  # immediate: recovery on start
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.to_thread(pg.cluster.stop, mode)
        to_503, slowest = await _readyz_until(http, pg.ready, 503, within=READY_BOUND)
        problems = (await http.get(pg.ready)).json()["problems"]
        during, during_took = await pg.mutation_meanwhile(timeout=30)
        for _ in range(5):  # and it stays 503 while the database is away
            status, took = await _timed_get(http, pg.ready)
            slowest = max(slowest, took)
            assert status == 503
            await asyncio.sleep(0.2)
        await asyncio.to_thread(pg.cluster.start)
        to_200, slowest_back = await _readyz_until(http, pg.ready, 200, within=20)
        slowest = max(slowest, slowest_back)
        failed = await pg.works_again(f"after {outage}")
        figures.append(
            f"PG {outage} (pg_ctl stop -m {mode}): /readyz 503 after {to_503:.2f}s ({problems}); "
            f"a mutation meanwhile: {during} after {during_took:.2f}s; PG back: /readyz 200 "
            f"after {to_200:.2f}s; slowest /readyz {slowest:.2f}s (readiness timeout "
            f"{READINESS_TIMEOUT}s); then {9 - len(failed)}/9 requests ok; app process "
            f"{pg.pid} {'still running' if pg.app.alive else 'gone'}"
        )
    assert slowest <= READY_BOUND, f"a /readyz took {slowest:.2f}s"
    assert during_took <= 30
    # refused as unavailable, in GraphQL's shape, for the client to retry: not a bare 500
    assert during.startswith("HTTP 503") and "SERVICE_UNAVAILABLE" in during, during
    assert failed == [], failed[:2]
    assert pg.app.alive and pg.app.process is not None and pg.app.process.pid == pg.pid


async def test_readyz_answers_503_within_the_readiness_timeout_while_postgres_hangs(
    postgres_app: PostgresApp, figures: list[str]
) -> None:
    """Every process of the cluster stopped (SIGSTOP): connections stay open and nothing
    answers, as with a hung server or a network partition."""
    pg = postgres_app
    wait = READY_BOUND + 2
    async with httpx.AsyncClient(timeout=wait) as http:
        await asyncio.to_thread(pg.cluster.freeze)

        async def later(delay: float, probe: Awaitable[tuple[Any, float]]) -> tuple[Any, float]:
            await asyncio.sleep(delay)
            return await probe

        # two probes and a mutation side by side, each on a connection of the pool
        (status, took), (again, took_again), (during, during_took) = await asyncio.gather(
            _timed_get(http, pg.ready),
            later(0.2, _timed_get(http, pg.ready)),
            later(0.4, pg.mutation_meanwhile(timeout=wait)),
        )
        healthz, _ = await _timed_get(http, f"{pg.app.url}/healthz")
        await asyncio.to_thread(pg.cluster.thaw)
        to_200, _ = await _readyz_until(http, pg.ready, 200, within=20)
        failed = await pg.works_again("after hang")
        figures.append(
            f"PG hung: /readyz answered {status} after {took:.2f}s, another one {again} after "
            f"{took_again:.2f}s (readiness timeout {READINESS_TIMEOUT}s; None = no answer "
            f"within the client's {wait:.1f}s); /healthz {healthz}; a mutation meanwhile: "
            f"{during} after {during_took:.2f}s; PG thawed: /readyz 200 after {to_200:.2f}s, "
            f"then {9 - len(failed)}/9 requests ok"
        )
    assert failed == [], failed[:2]
    assert (status, again) == (503, 503), (
        f"/readyz gave {status} after {took:.2f}s and {again} after {took_again:.2f}s while "
        f"PostgreSQL hung: not 503 within READINESS_TIMEOUT={READINESS_TIMEOUT}s"
    )
    assert max(took, took_again) <= READY_BOUND


# --- 4. SIGKILL with a withdraw, then a push, in flight at the warehouse ------------------------

LEASE_SECONDS = 1.0
SLOW_WAREHOUSE = 4.0  # seconds the warehouse sits on a request before acting


async def _wait(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "acted", [False, True], ids=["before-the-warehouse-acts", "after-it-acted"]
)
async def test_sigkill_mid_withdraw_and_mid_push_resumes_on_restart_and_acts_once(
    acted: bool,
    make_server: ServerFactory,
    make_member: MakeMember,
    database_url: str,
    base_settings: Settings,
    tmp_path: Any,
    figures: list[str],
) -> None:
    # Members are made through an in-process server, stopped before the app processes start:
    # from then on only they use the database (SQLite is for one process).
    setup = await make_server()
    supplier, distributor = await make_member("SUPPLIER"), await make_member("BUYER")
    await setup.stop()

    async def premade(kind: str = "BUYER", **_: Any) -> Member:
        return distributor

    env = {
        "DATABASE_URL": database_url,
        "SECRETS_KEY": base_settings.secrets_key,
        "WAREHOUSE_TIMEOUT": "15",
        "WAREHOUSE_RETRIES": "1",
        "WAREHOUSE_TASK_ATTEMPTS": "3",
        "WAREHOUSE_RETRY_DELAY": "0.2",
        "WORK_LEASE_SECONDS": str(LEASE_SECONDS),
        "WAREHOUSE_RECONCILE_AFTER": "3600",
        "EVENT_RESYNC_INTERVAL": "1",
        "OUTBOX_RETRY_INTERVAL": "0.2",
    }
    port = free_port()  # every process of the service listens here (and so calls back here)
    processes: list[AppProcess] = []
    clients: list[GraphQLHttp] = []

    async def start_process() -> GraphQLHttp:
        process = AppProcess(env, tmp_path / f"app-{len(processes) + 1}.log", port=port)
        processes.append(process)
        await process.start()
        client = GraphQLHttp(process.url)
        clients.append(client)
        return client

    running = held_warehouse_simulator()
    held = await anext(running)
    sim: WarehouseSim = held.sim

    async def catch() -> None:
        if acted:
            held.hold.arm()
        else:
            await sim.faults(delay=SLOW_WAREHOUSE)

    async def let_go() -> None:
        if acted:
            held.hold.release()
        else:
            await sim.faults(reset=True)

    async def in_flight(path_end: str, calls: int, effect: str) -> bool:
        """The ``calls``-th call to ``path_end`` has reached the warehouse (and, if ``acted``,
        had its effect, the ``calls``-th of its kind, and its answer is held back)."""
        if len(await api_calls(sim, path_end)) < calls:
            return False
        return not acted or ((await sim.effects())[effect] >= calls and held.hold.held >= calls)

    try:
        first = await start_process()
        d = await partnered(first, premade, sim, supplier=supplier)
        withdrawn = await pushed_order(first, d)
        to_push = await paid_order(first, d)
        _, entries_before = await distributor_wallet(first, d)

        # a withdraw in flight at the warehouse when the process is killed
        await catch()
        answered = await withdraw(first, distributor.token, withdrawn)
        assert answered["withdrawal"]["status"] == "WITHDRAWING"
        await _wait(
            lambda: in_flight(f"/{warehouse_reference(withdrawn)}/cancel", 1, "outbound_cancelled"),
            "a cancel",
        )
        processes[-1].kill()
        killed_at = time.monotonic()
        await let_go()
        second = await start_process()
        state = await both_sides(second, d, withdrawn, withdrawal_is("WITHDRAWN"))
        withdraw_done_in = time.monotonic() - killed_at

        # a push in flight at the warehouse when the next process is killed
        await catch()
        assert (await push(second, d, to_push))["userErrors"] == []
        await _wait(lambda: in_flight(PATH_OUTBOUND_ORDERS, 2, "outbound_created"), "a push")
        processes[-1].kill()
        killed_at = time.monotonic()
        await let_go()
        third = await start_process()
        pushed = await eventually(
            lambda: order_state(third, supplier.token, to_push),
            lambda s: s["distribution"]["pushStatus"] in ("PUSHED", "PUSH_FAILED"),
            timeout=30,
        )
        push_done_in = time.monotonic() - killed_at

        await asyncio.sleep(SLOW_WAREHOUSE + 0.5 if not acted else 0.2)  # abandoned calls end
        effects = await sim.effects()
        cancels = await api_calls(sim, f"/{warehouse_reference(withdrawn)}/cancel")
        posts = (await api_calls(sim, PATH_OUTBOUND_ORDERS))[1:]  # (the first pushed `withdrawn`)
        balance, entries = await distributor_wallet(third, d)
        state = await order_state(third, distributor.token, withdrawn)
        figures.append("process start-up: " + ", ".join(f"{p.started_in:.2f}s" for p in processes))
        figures.append(
            f"withdraw: SIGKILL with the cancel in flight -> WITHDRAWN {withdraw_done_in:.2f}s "
            f"later (lease {LEASE_SECONDS}s); cancel calls "
            f"{[(c['idempotency_key'], c['status'], c['replayed']) for c in cancels]}; "
            f"cancelled at the warehouse {effects['outbound_cancelled']}x; refunds "
            f"{len(refunds(entries))}"
        )
        figures.append(
            f"push: SIGKILL with the create in flight -> {pushed['distribution']['pushStatus']} "
            f"{push_done_in:.2f}s later; create calls "
            f"{[(c['idempotency_key'], c['status'], c['replayed']) for c in posts]}; "
            f"orders created at the warehouse {effects['outbound_created']} (1 before); "
            f"warehouse order {pushed['distribution']['warehouseOrderId']}"
        )

        # the withdraw: cancelled once, refunded once, one run recorded (the killed one
        # recorded nothing), and both calls carried the task's one idempotency key
        assert state["status"] == "CANCELLED" and state["refundedAmount"] == "8.00"
        assert [w["status"] for w in state["withdrawals"]] == ["WITHDRAWN"]
        assert [a["ok"] for a in attempts(state, "CANCEL_ORDER")] == [True]
        assert effects["outbound_cancelled"] == 1
        assert len(cancels) == 2 and len({c["idempotency_key"] for c in cancels}) == 1
        killed_call = (200 if acted else None, False)
        assert [(c["status"], c["replayed"]) for c in cancels] == [killed_call, (200, acted)]
        # the push: one warehouse order, recorded once, no second charge
        assert pushed["distribution"]["pushStatus"] == "PUSHED", pushed
        assert pushed["distribution"]["warehouseOrderId"] == "WO-2"
        assert [a["ok"] for a in attempts(pushed, "PUSH_ORDER")] == [True]
        assert effects["outbound_created"] == 2
        assert len(posts) == 2 and len({c["idempotency_key"] for c in posts}) == 1
        killed_call = (201 if acted else None, False)
        assert [(c["status"], c["replayed"]) for c in posts] == [killed_call, (201, acted)]
        # the ledger: what it held before, plus exactly one refund of the withdrawn order
        assert refunds(entries) == [{"kind": "REFUND", "amount": "8.00", "orderId": withdrawn}]
        assert sorted(map(str, entries)) == sorted(map(str, [*entries_before, *refunds(entries)]))
        assert balance == "8.00"
    finally:
        for client in clients:
            await client.close()
        for process in processes:
            process.terminate()
        held.hold.release()
        await running.aclose()
