"""The background worker that talks to third-party warehouses for the domain's task queue.

It takes the lease of due tasks (``domain.distribution.tasks``) and runs up to ``concurrency``
of them at once, claiming more as runs end (``run_due``: a pipeline, so a slow warehouse holds
up its own tasks only). The leases are short (``lease_seconds``) and renewed while the runs go
on (``integrations.heartbeat``): a slow call keeps its task, and the tasks of an instance that
died or hangs are taken over ``lease_seconds`` after its last renewal. A run makes the call with
``WarehouseClient`` (which retries transient failures itself, with the task's idempotency key)
and hands the outcome to the domain, which applies it once; cancels that come together go to a
warehouse in one request (``cancel_batches``), and successful cancels of orders that end at the
same time are applied together (``_Together``: one statement, one lock of the wallet they
refund). A task whose warehouse stays unreachable is tried again ``retry_delay`` x 2^(n-1)
seconds later, up to ``task_attempts`` runs; after that a push ends PUSH_FAILED and a withdraw
WITHDRAW_FAILED, with the last error. Tasks survive a restart: they are rows, and an expired
lease is taken over; a stopping worker gives its leases back at once (``stop``).

It also reconciles: pushed orders and returns that the warehouse has not reported on for
``reconcile_after`` seconds are fetched and applied as if their callback had come, one instance
at a time (a named lease, renewed while the round runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx

from domain.after_sales import commands as after_sales
from domain.after_sales.models import AfterSalesOrder
from domain.distribution import pushes as distribution_orders
from domain.distribution import tasks as warehouse_tasks
from domain.distribution import withdrawals
from domain.distribution.models import (
    TaskKind,
    TaskState,
    ThirdPartyWarehouse,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
)
from domain.distribution.withdrawn import Cancelled, withdrawn_together
from domain.errors import DomainError
from domain.leases import LEASE_SECONDS, NamedLease, RowLeases
from domain.request_context import request_id_var
from domain.work_due import next_task_due
from integrations.background import WakeableLoop
from integrations.heartbeat import Heartbeat, LeaseLapsed
from integrations.outbound import new_client
from integrations.request_load import RequestLoad
from integrations.warehouses.cancel_batches import CancelBatches
from integrations.warehouses.client import (
    WarehouseApiError,
    WarehouseClient,
    WarehouseNotFound,
    WarehouseRefused,
)
from integrations.warehouses.protocol import (
    OutboundItem,
    Recipient,
    ReturnItem,
    WarehousePayloadError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerSettings:
    public_url: str = "http://127.0.0.1:8000"
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    task_attempts: int = 3
    retry_delay: float = 5.0
    lease_seconds: float = LEASE_SECONDS  # renewed every third of it while a run goes on
    poll_interval: float = 30.0  # the safety sweep: seconds between rounds nothing woke
    reconcile_after: float = 300.0
    batch: int = 20  # records a reconciliation round fetches
    # task runs (so warehouse calls) in flight at most; while the process is busy serving
    # requests, also the share of its event loop the runs get
    concurrency: int = 64
    # while tasks run, tasks due meanwhile are claimed this often, the pause doubling (up to
    # ``refill_pause_max``) while claims find none
    refill_interval: float = 0.05
    refill_pause_max: float = 1.0
    # while the instance is busy answering requests (``integrations.request_load``), a batch
    # of runs is claimed at most this often (0: as often as when idle): at least
    # ``concurrency`` tasks a second, about a twentieth of the core for a withdraw's cascade
    busy_pause: float = 1.0


# Connections of one pool. httpcore looks at each connection of a pool, at a cost, on every
# request: 32 calls at once against the simulator took 2.0-2.4 ms of CPU a call through one
# pool of 36 connections, 0.75-1.0 ms through pools of 4 or 8.
POOL_CONNECTIONS = 4
RECONCILE_POOL = -1  # the pool reconciliation calls through, apart from the task runs'
RECONCILIATION = "warehouse reconciliation"  # the named lease of a reconciliation round
RECONCILE_CALLS = 2  # a reconciliation round's calls in flight to one warehouse at most


class Unreachable(Exception):
    """The warehouse could not be reached (after the client's own retries)."""


class _Pools:
    """The worker's keep-alive connections to warehouses, shared by every warehouse, in pools
    of ``POOL_CONNECTIONS``: the run in slot ``n`` calls through pool ``n // POOL_CONNECTIONS``,
    so a pool never has more calls at once than connections, and none is closed between calls
    (httpcore closes idle connections beyond its keep-alive bound, and queues calls beyond its
    size, looking at every connection for every queued call)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._transport = transport
        self._pools: dict[int, httpx.AsyncClient] = {}

    def get(self, pool: int) -> httpx.AsyncClient:
        found = self._pools.get(pool)
        if found is None:
            size = httpx.Limits(
                max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS
            )
            found = self._pools[pool] = new_client(transport=self._transport, limits=size)
        return found

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


@dataclass
class _Claimed:
    """Tasks claimed together, and what their runs share: their third-party warehouses (read
    once) with a client of each per pool (made on first use), and the orders among them whose
    push is under way."""

    tasks: list[WarehouseTask]
    warehouses: dict[int, ThirdPartyWarehouse]
    pushing: set[int]
    together: _Together
    cancels: CancelBatches
    at: float = field(default_factory=time.monotonic)  # when they were claimed
    clients: dict[tuple[int, int], WarehouseClient] = field(default_factory=dict)


class _Together:
    """Successful cancels of orders, applied together (``withdrawn_together``): runs hand
    theirs in and wait while one writer at a time takes all handed in meanwhile, at most
    ``limit``, into one statement. Every refund of a distributor credits one wallet row,
    which each write locks until it commits: written one at a time, its withdrawals queue on
    that lock; together, a batch takes it once. Nothing waits for a batch to fill: a lone
    outcome is written at once, and outcomes gather only while a write is under way."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._waiting: list[tuple[Cancelled, asyncio.Future[Withdrawal | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, task: WarehouseTask, attempt: str) -> Withdrawal | None:
        """The withdrawal, WITHDRAWN; None when it was not applied together (nothing was
        written for it: the caller applies it on its own)."""
        applied: asyncio.Future[Withdrawal | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((Cancelled(task, attempt), applied))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await applied

    async def _write(self) -> None:
        request_id_var.set(None)  # not the request of the run that happened to start it
        while self._waiting:
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                outcomes = await withdrawn_together([c for c, _ in batch])
            except Exception:
                log.exception("applying %d withdrawals together failed", len(batch))
                outcomes = [None] * len(batch)  # each is applied on its own
            except BaseException:
                for _, applied in batch:
                    applied.cancel()
                raise
            for (_, applied), outcome in zip(batch, outcomes, strict=True):
                if not applied.done():  # (its run may have been cancelled)
                    applied.set_result(outcome)

    async def close(self) -> None:
        """Once no run waits: the write under way (if any) is let finish."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


def callback_url(public_url: str, third_party_warehouse_id: int) -> str:
    return f"{public_url.rstrip('/')}/webhooks/warehouses/{third_party_warehouse_id}"


class _TaskLoop(WakeableLoop):
    """The worker's task loop: woken when a task is queued (``integrations.wakeups``), asleep
    until the first retry or lease falls due, or until its safety sweep."""

    name = "warehouse worker"

    def __init__(self, worker: WarehouseWorker) -> None:
        super().__init__(sweep_interval=worker.settings.poll_interval)
        self._worker = worker

    async def round(self) -> None:
        taken = 1
        while taken:  # tasks were taken: more may be due at once
            taken = await self._worker.run_due()

    async def next_due(self) -> datetime | None:
        return await next_task_due()


class _Lane:
    """A reconciliation round's calls to one warehouse: ``RECONCILE_CALLS`` in flight at
    most; once one got no answer the rest are skipped (counted) until the next round."""

    def __init__(self) -> None:
        self.calls = asyncio.Semaphore(RECONCILE_CALLS)
        self.unreachable = False
        self.skipped = 0


class WarehouseWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        load: RequestLoad | None = None,
    ) -> None:
        self.settings = settings
        self.load = load if load is not None else RequestLoad(busy_at=0)
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self.heartbeat = Heartbeat(
            RowLeases(
                "warehouse tasks", WarehouseTask, self.owner, held={"state": TaskState.PENDING}
            ),
            seconds=settings.lease_seconds,
        )
        self._reconcile_lease = NamedLease(RECONCILIATION, self.owner)
        self._reconciling = Heartbeat(self._reconcile_lease, seconds=settings.lease_seconds)
        self._transport = transport
        self._http: _Pools | None = None  # the connections to every warehouse
        self._task_loop = _TaskLoop(self)
        self._reconciler: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._task_loop.wake()

    async def start(self) -> None:
        await self._task_loop.start()
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="warehouse-reconciler")

    async def stop(self) -> None:
        """Take no more tasks, cancel the runs under way and give their leases back: another
        instance takes them at once (a call already made is made again with the task's
        idempotency key)."""
        await self._task_loop.stop()
        reconciler, self._reconciler = self._reconciler, None
        if reconciler is not None:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
        await self.heartbeat.close()
        await self._reconciling.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _reconcile_loop(self) -> None:
        """Apart from the task loop, so slow or unreachable warehouses never delay pushes and
        withdraws."""
        interval = min(self.settings.reconcile_after, 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("warehouse reconciliation failed")

    # -- tasks -------------------------------------------------------------------------------

    async def run_due(self) -> int:
        """Run the tasks due now, and those that fall due while they run, up to
        ``concurrency`` at once, until none is due and none runs; returns how many were taken.

        A pipeline rather than rounds: as runs finish, more tasks are claimed (once a quarter
        of the slots is free, and while runs are in flight every ``refill_interval``, less
        often while claims find nothing), so a slow warehouse call holds up its own task only,
        not the tasks claimed with it or after it. While the instance is busy answering
        requests, a batch is claimed at most every ``busy_pause`` seconds: requests first,
        the cascades they queued a little later (``integrations.request_load``). A task this
        worker is still running is never claimed again, even once its lease has run out
        (another instance may take it over then, as before). The leases are renewed while
        anything runs (``heartbeat``)."""
        async with self.heartbeat.holding():
            return await self._run_due()

    async def _run_due(self) -> int:
        settings = self.settings
        limit = max(1, settings.concurrency)
        refill = max(1, limit // 4)
        clock = asyncio.get_running_loop().time
        running: dict[asyncio.Task[None], tuple[int, int]] = {}  # run -> (task id, slot)
        slots = list(range(limit))  # free slots, a heap: the lowest first, so few pools serve
        together = _Together(limit)
        cancels = CancelBatches(in_flight=POOL_CONNECTIONS)
        taken = 0
        full = True  # the last claim took all it asked for: more may be due at once
        claimed_at, pause = -math.inf, settings.refill_interval
        try:
            while True:
                free = limit - len(running)
                yielding = settings.busy_pause > 0 and self.load.busy(within=settings.busy_pause)
                gap = max(pause, settings.busy_pause) if yielding else pause
                if free and (
                    (full and free >= refill and not yielding) or clock() - claimed_at >= gap
                ):
                    try:
                        claimed = await self._claim(
                            free,
                            exclude=[t for t, _ in running.values()],
                            together=together,
                            cancels=cancels,
                        )
                    except Exception:
                        if not running:
                            raise
                        log.exception("claiming warehouse tasks failed; the runs go on")
                        claimed = _Claimed([], {}, set(), together, cancels)
                    claimed_at, full = clock(), len(claimed.tasks) == free
                    found = settings.refill_interval if claimed.tasks else pause * 2
                    pause = min(found, max(settings.refill_pause_max, settings.refill_interval))
                    taken += len(claimed.tasks)
                    for task in claimed.tasks:
                        slot = heapq.heappop(slots)
                        run = asyncio.create_task(self._run_task(task, claimed, slot))
                        running[run] = (task.id, slot)
                if not running:
                    if not full:
                        return taken
                    if yielding:  # the next batch after the gap, unless the load falls first
                        until = max(0.0, gap - (clock() - claimed_at))
                        await asyncio.sleep(min(until, settings.refill_interval))
                    continue
                timeout = None  # every slot taken: until a run finishes
                if len(running) < limit:
                    timeout = max(0.0, gap - (clock() - claimed_at))
                    if yielding:  # looking again as often as when idle: the load may fall
                        timeout = min(timeout, settings.refill_interval)
                done, _ = await asyncio.wait(
                    running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for run in done:
                    heapq.heappush(slots, running.pop(run)[1])
                if not running and not full:
                    return taken  # drained (the caller's next round takes what came since)
        finally:
            for run in running:  # stopped: the leases run out and the tasks are taken again
                run.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await cancels.close()
            await together.close()

    async def _claim(
        self, limit: int, *, exclude: Iterable[int], together: _Together, cancels: CancelBatches
    ) -> _Claimed:
        """Lease up to ``limit`` due tasks, with what their runs share, read once for all of
        them: their third-party warehouses and the orders whose push is under way."""
        at = time.monotonic()
        tasks = await warehouse_tasks.claim_due(
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            limit=limit,
            exclude=list(exclude),
        )
        wanted = {t.third_party_warehouse_id for t in tasks} - {None}
        warehouses = (
            {w.id: w for w in await ThirdPartyWarehouse.filter(id__in=wanted)} if wanted else {}
        )
        cancelled = [t.order_id for t in tasks if t.kind is TaskKind.CANCEL_ORDER and t.order_id]
        pushing = await warehouse_tasks.pushes_under_way(cancelled) if cancelled else set()
        return _Claimed(tasks, warehouses, pushing, together, cancels, at)

    async def _run_task(self, task: WarehouseTask, claimed: _Claimed, slot: int) -> None:
        request_id_var.set(task.request_id)  # this run's own context (create_task copies it)
        try:
            await self._dispatch(task, claimed, slot // POOL_CONNECTIONS)
        except LeaseLapsed as lapsed:  # hung past the lease: the task may be another's now
            log.info("warehouse task %s stopped: %s", task.id, lapsed)
        except Unreachable as error:
            await self._unreachable(task, str(error))
        except DomainError as error:
            # the order moved on meanwhile (shipped, delivered, refunded): a domain refusal,
            # given as the reason rather than as an internal error
            log.info("warehouse task %s refused: %s", task.id, error.message)
            await self._give_up(task, error.message)
        except Exception as error:  # a bug must not wedge the task: fail it, visibly
            log.exception("warehouse task %s failed", task.id)
            await self._give_up(task, f"internal error: {type(error).__name__}")

    def _client(
        self,
        third_party_warehouse: ThirdPartyWarehouse,
        pool: int = RECONCILE_POOL,
        *,
        claimed_at: float | None = None,
        retries: int | None = None,
    ) -> WarehouseClient:
        """A client of this third-party warehouse on one of the worker's shared pools (making
        an ``httpx.AsyncClient`` per call costs about 20 ms of CPU); for tasks claimed at
        ``claimed_at``, its calls stop once their lease may have lapsed. ``retries``: the
        settings' unless given."""
        if self._http is None:
            self._http = _Pools(self._transport)
        return WarehouseClient(
            base_url=third_party_warehouse.api_url,
            api_key=third_party_warehouse.api_key,
            timeout=self.settings.timeout,
            retries=self.settings.retries if retries is None else retries,
            backoff=self.settings.backoff,
            http=self._http.get(pool),
            before_attempt=(
                None if claimed_at is None else functools.partial(self.heartbeat.check, claimed_at)
            ),
        )

    async def _dispatch(self, task: WarehouseTask, claimed: _Claimed, pool: int) -> None:
        if task.kind is TaskKind.CANCEL_ORDER and task.order_id in claimed.pushing:
            # a push of this order is under way: cancel once it has landed (or failed)
            await warehouse_tasks.retry_later(
                task, delay=0.2, error="waiting for the push", count_run=False
            )
            return
        third_party_warehouse = (
            claimed.warehouses.get(task.third_party_warehouse_id)
            if task.third_party_warehouse_id is not None
            else None
        )
        if third_party_warehouse is None:
            # nothing sits at a warehouse: a withdraw completes at once; a push cannot happen
            if task.kind is TaskKind.CANCEL_ORDER:
                await self._withdrawn(task, "not at a warehouse", claimed.together)
            elif task.kind is TaskKind.CANCEL_RETURN:
                await withdrawals.withdraw_finished(task, ok=True, attempt="not at a warehouse")
            else:
                await self._give_up(task, "the third-party warehouse is gone")
            return
        key = (third_party_warehouse.id, pool)
        client = claimed.clients.get(key)
        if client is None:
            client = claimed.clients[key] = self._client(
                third_party_warehouse, pool, claimed_at=claimed.at
            )
        try:
            if task.kind is TaskKind.PUSH_ORDER:
                await self._push_order(task, client, third_party_warehouse)
            elif task.kind is TaskKind.CANCEL_ORDER:
                await self._cancel_order(task, client, third_party_warehouse.id, claimed)
            elif task.kind is TaskKind.PUSH_RETURN:
                await self._push_return(task, client, third_party_warehouse)
            else:
                await self._cancel_return(task, client)
        except WarehouseApiError as error:
            if error.transient:
                raise Unreachable(f"warehouse unreachable: {error.message}") from error
            await self._finish(
                task, ok=False, error=f"warehouse refused: {error.message}", attempt=error.message
            )

    async def _push_order(
        self,
        task: WarehouseTask,
        client: WarehouseClient,
        third_party_warehouse: ThirdPartyWarehouse,
    ) -> None:
        assert task.order_id is not None
        request = await distribution_orders.outbound_request(task.order_id)
        try:
            recipient = Recipient.from_shipping_address(request.shipping_address)
            items = [
                OutboundItem(sku, qty, title[:255] or None) for sku, qty, title in request.items
            ]
        except WarehousePayloadError as error:
            await self._finish(task, ok=False, error=f"cannot be sent: {error}", attempt=str(error))
            return
        order = await client.create_outbound_order(
            reference=request.reference,
            recipient=recipient,
            items=items,
            callback_url=callback_url(self.settings.public_url, third_party_warehouse.id),
            idempotency_key=f"sg-task-{task.id}",
        )
        await warehouse_tasks.record_attempt(
            task, ok=True, outcome=f"warehouse order {order.id} {order.status.value}"
        )
        await distribution_orders.push_finished(
            task, ok=True, warehouse_order_id=order.id, warehouse_status=order.status.value
        )

    async def _cancel_order(
        self, task: WarehouseTask, client: WarehouseClient, warehouse_id: int, claimed: _Claimed
    ) -> None:
        """Sent alone, or with the cancels that came while this warehouse's calls were busy
        (``CancelBatches``)."""
        assert task.order_id is not None
        reference = str(task.order_id)
        try:
            order = await claimed.cancels.cancel(
                warehouse_id, client, reference, idempotency_key=f"sg-task-{task.id}"
            )
            outcome = f"cancelled at the warehouse ({order.status.value})"
        except WarehouseNotFound:
            outcome = "the warehouse never had it"
        except WarehouseRefused as error:
            await withdrawals.withdraw_finished(
                task,
                ok=False,
                failure=f"the warehouse refused: {error.reason}",
                attempt=error.message,
            )
            return
        await self._withdrawn(task, outcome, claimed.together)

    async def _withdrawn(self, task: WarehouseTask, attempt: str, together: _Together) -> None:
        """The order is off the warehouse: the outcome applied with others that came in at the
        same time, or on its own when it could not be."""
        if await together.apply(task, attempt) is None:
            await withdrawals.withdraw_finished(task, ok=True, attempt=attempt)

    async def _push_return(
        self,
        task: WarehouseTask,
        client: WarehouseClient,
        third_party_warehouse: ThirdPartyWarehouse,
    ) -> None:
        item = await AfterSalesOrder.get(id=task.after_sales_id)
        try:
            items = [
                ReturnItem(it["sku"], int(it["quantity"]), (it.get("reason") or None))
                for it in item.items
            ]
        except WarehousePayloadError as error:
            await self._finish(task, ok=False, error=f"cannot be sent: {error}", attempt=str(error))
            return
        created = await client.create_return(
            reference=item.reference or f"R{item.id}",
            items=items,
            original_reference=str(item.order_id),
            callback_url=callback_url(self.settings.public_url, third_party_warehouse.id),
            idempotency_key=f"sg-task-{task.id}",
        )
        await warehouse_tasks.record_attempt(
            task, ok=True, outcome=f"warehouse return {created.id} {created.status.value}"
        )
        await after_sales.return_push_finished(task, ok=True, warehouse_return_id=created.id)

    async def _cancel_return(self, task: WarehouseTask, client: WarehouseClient) -> None:
        item = await AfterSalesOrder.get(id=task.after_sales_id)
        try:
            await client.cancel_return(
                item.reference or f"R{item.id}", idempotency_key=f"sg-task-{task.id}"
            )
            outcome = "return cancelled at the warehouse"
        except WarehouseNotFound:
            outcome = "the warehouse never had it"
        except WarehouseRefused as error:
            await withdrawals.withdraw_finished(
                task,
                ok=False,
                failure=f"the warehouse refused: {error.reason}",
                attempt=error.message,
            )
            return
        await withdrawals.withdraw_finished(task, ok=True, attempt=outcome)

    # -- outcomes ----------------------------------------------------------------------------

    async def _finish(
        self, task: WarehouseTask, *, ok: bool, error: str | None = None, attempt: str
    ) -> None:
        """Apply the task's outcome, with ``attempt``, how its last call went, recorded as one
        of the task's attempts (a withdraw applies both together)."""
        if task.kind in (TaskKind.CANCEL_ORDER, TaskKind.CANCEL_RETURN):
            await withdrawals.withdraw_finished(task, ok=ok, failure=error, attempt=attempt)
            return
        await warehouse_tasks.record_attempt(task, ok=ok, outcome=attempt)
        if task.kind is TaskKind.PUSH_ORDER:
            await distribution_orders.push_finished(task, ok=ok, error=error)
        else:
            await after_sales.return_push_finished(task, ok=ok, error=error)

    async def _give_up(self, task: WarehouseTask, error: str) -> None:
        await self._finish(task, ok=False, error=error, attempt=error)

    async def _unreachable(self, task: WarehouseTask, error: str) -> None:
        if task.attempts >= self.settings.task_attempts:
            gave_up = f"{error}; gave up after {task.attempts} runs"
            await self._finish(task, ok=False, error=gave_up, attempt=error)
            return
        await warehouse_tasks.record_attempt(task, ok=False, outcome=error)
        delay = self.settings.retry_delay * 2 ** (task.attempts - 1)
        await warehouse_tasks.retry_later(task, delay=delay, error=error)

    # -- reconciliation ----------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Fetch the state of pushed orders and returns that have waited too long for a
        callback; returns how many were checked. Each one tried goes to the back of the queue,
        answered or not, so a warehouse that is down does not hold up the others. One instance
        reconciles at a time: a round another instance holds is left to it (0)."""
        if not await self._reconcile_lease.take_until(self._reconciling.until()):
            return 0
        try:
            async with self._reconciling.holding():
                return await self._reconcile()
        finally:
            await self._reconcile_lease.release()

    async def _reconcile(self) -> int:
        """The round's records go to the back of the queue together (one statement a kind),
        then its calls go out together, at most ``RECONCILE_CALLS`` at a time to one
        warehouse, each tried once (the next round is the retry): one that is down or slow
        holds up its own records only, and once one of its calls got no answer the rest of its
        records wait for the next round."""
        older = datetime.now(UTC) - timedelta(seconds=self.settings.reconcile_after)
        orders = await distribution_orders.due_for_reconciliation(
            older_than=older, limit=self.settings.batch
        )
        returns = await after_sales.due_returns_for_reconciliation(
            older_than=older, limit=self.settings.batch
        )
        await distribution_orders.mark_checked([r.order_id for r in orders])
        await after_sales.mark_returns_checked([r.id for r in returns])
        wanted = {r.third_party_warehouse_id for r in orders}
        wanted |= {r.third_party_warehouse_id for r in returns}
        warehouses = {w.id: w for w in await ThirdPartyWarehouse.filter(id__in=wanted - {None})}
        lanes: defaultdict[int, _Lane] = defaultdict(_Lane)
        outcomes = await asyncio.gather(
            *(self._reconcile_order(record, warehouses, lanes) for record in orders),
            *(self._reconcile_return(item, warehouses, lanes) for item in returns),
            return_exceptions=True,
        )
        checked = 0
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                log.error("reconciling failed", exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                checked += outcome
        for warehouse_id, lane in lanes.items():
            if lane.skipped:
                log.warning(
                    "reconciling: warehouse %s did not answer; %d of its records wait for the "
                    "next round",
                    warehouse_id,
                    lane.skipped,
                )
        return checked

    async def _fetched(
        self,
        what: str,
        warehouse_id: int | None,
        reference: str | None,
        fetch: Callable[[WarehouseClient, str], Awaitable[T]],
        warehouses: dict[int, ThirdPartyWarehouse],
        lanes: defaultdict[int, _Lane],
    ) -> tuple[ThirdPartyWarehouse, T] | None:
        """``fetch(client, reference)`` from the record's warehouse in its lane, one attempt;
        None when the warehouse is gone, the record was never referenced there, the call
        failed, or an earlier call of the round to that warehouse got no answer."""
        third_party_warehouse = warehouses.get(warehouse_id or 0)
        if third_party_warehouse is None or reference is None:
            return None
        lane = lanes[third_party_warehouse.id]
        async with lane.calls:
            if lane.unreachable:
                lane.skipped += 1
                return None
            try:
                async with self._client(third_party_warehouse, retries=0) as c:
                    return third_party_warehouse, await fetch(c, reference)
            except WarehouseApiError as error:
                lane.unreachable |= error.status is None and error.transient
                log.warning("reconciling %s: %s", what, error)
                return None

    async def _reconcile_order(
        self,
        record: WarehouseOrder,
        warehouses: dict[int, ThirdPartyWarehouse],
        lanes: defaultdict[int, _Lane],
    ) -> int:
        fetched = await self._fetched(
            f"order {record.order_id}",
            record.third_party_warehouse_id,
            record.reference,
            WarehouseClient.get_outbound_order,
            warehouses,
            lanes,
        )
        if fetched is None or record.reference is None:
            return 0
        third_party_warehouse, state = fetched
        await distribution_orders.apply_outbound_status(
            third_party_warehouse_id=third_party_warehouse.id,
            reference=record.reference,
            status=state.status.value,
            carrier=state.carrier,
            tracking_number=state.tracking_number,
            reason=state.reason,
        )
        return 1

    async def _reconcile_return(
        self,
        item: AfterSalesOrder,
        warehouses: dict[int, ThirdPartyWarehouse],
        lanes: defaultdict[int, _Lane],
    ) -> int:
        fetched = await self._fetched(
            f"return {item.number}",
            item.third_party_warehouse_id,
            item.reference,
            WarehouseClient.get_return,
            warehouses,
            lanes,
        )
        if fetched is None or item.reference is None:
            return 0
        third_party_warehouse, state = fetched
        await after_sales.apply_return_status(
            third_party_warehouse_id=third_party_warehouse.id,
            reference=item.reference,
            status=state.status.value,
            received={line.sku: line.received_quantity for line in state.items},
            reason=state.reason,
        )
        return 1
