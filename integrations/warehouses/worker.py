"""The background worker that talks to third-party warehouses for the domain's task queue.

Each round it takes the lease of due tasks (``domain.distribution.tasks``), makes the call with
``WarehouseClient`` (which retries transient failures itself, with the task's idempotency key),
and hands the outcome to the domain, which applies it once. A task whose warehouse stays
unreachable is tried again ``retry_delay`` x 2^(n-1) seconds later, up to ``task_attempts`` runs;
after that a push ends PUSH_FAILED and a withdraw WITHDRAW_FAILED, with the last error. Tasks
survive a restart: they are rows, and an expired lease is taken over.

It also reconciles: pushed orders and returns that the warehouse has not reported on for
``reconcile_after`` seconds are fetched and applied as if their callback had come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from domain.after_sales import commands as after_sales
from domain.after_sales.models import AfterSalesOrder
from domain.distribution import pushes as distribution_orders
from domain.distribution import tasks as warehouse_tasks
from domain.distribution import withdrawals
from domain.distribution.models import TaskKind, ThirdPartyWarehouse, WarehouseTask
from domain.errors import DomainError
from domain.request_context import request_id_var
from integrations.outbound import new_client
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


@dataclass(frozen=True)
class WorkerSettings:
    public_url: str = "http://127.0.0.1:8000"
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    task_attempts: int = 3
    retry_delay: float = 5.0
    lease_seconds: float = 120.0
    poll_interval: float = 1.0
    reconcile_after: float = 300.0
    batch: int = 20


class Unreachable(Exception):
    """The warehouse could not be reached (after the client's own retries)."""


def callback_url(public_url: str, third_party_warehouse_id: int) -> str:
    return f"{public_url.rstrip('/')}/webhooks/warehouses/{third_party_warehouse_id}"


class WarehouseWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self._transport = transport
        self._http: httpx.AsyncClient | None = None  # one pool for every warehouse call
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run(), name="warehouse-worker"),
            asyncio.create_task(self._reconcile_loop(), name="warehouse-reconciler"),
        ]

    async def stop(self) -> None:
        # ``wait_for`` may drop a cancellation that meets a wake-up (Python 3.11): the flag
        # ends the task loop all the same (as in ``integrations.background.WakeableLoop``).
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_interval)
            if self._stopping:
                return
            self._wake.clear()
            try:
                taken = await self.run_due()
                while taken:  # a full batch: more may be due at once
                    taken = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("warehouse worker round failed")

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
        """Run every task due now (concurrently); returns how many were taken."""
        tasks = await warehouse_tasks.claim_due(
            owner=self.owner, lease_seconds=self.settings.lease_seconds, limit=self.settings.batch
        )
        await asyncio.gather(*(self._run_task(task) for task in tasks))
        return len(tasks)

    async def _run_task(self, task: WarehouseTask) -> None:
        request_id_var.set(task.request_id)  # this task's own context (asyncio.gather copies it)
        try:
            await self._dispatch(task)
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

    def _client(self, third_party_warehouse: ThirdPartyWarehouse) -> WarehouseClient:
        """A client of this third-party warehouse on the worker's shared pool (making an
        ``httpx.AsyncClient`` per call costs about 20 ms of CPU)."""
        if self._http is None:
            self._http = new_client(transport=self._transport)
        return WarehouseClient(
            base_url=third_party_warehouse.api_url,
            api_key=third_party_warehouse.api_key,
            timeout=self.settings.timeout,
            retries=self.settings.retries,
            backoff=self.settings.backoff,
            http=self._http,
        )

    async def _dispatch(self, task: WarehouseTask) -> None:
        if (
            task.kind is TaskKind.CANCEL_ORDER
            and task.order_id is not None
            and await warehouse_tasks.has_pending(order_id=task.order_id, kind=TaskKind.PUSH_ORDER)
        ):
            # a push of this order is under way: cancel once it has landed (or failed)
            await warehouse_tasks.retry_later(
                task, delay=0.2, error="waiting for the push", count_run=False
            )
            return
        third_party_warehouse = (
            await ThirdPartyWarehouse.get_or_none(id=task.third_party_warehouse_id)
            if task.third_party_warehouse_id is not None
            else None
        )
        if third_party_warehouse is None:
            # nothing sits at a warehouse: a withdraw completes at once; a push cannot happen
            if task.kind in (TaskKind.CANCEL_ORDER, TaskKind.CANCEL_RETURN):
                await warehouse_tasks.record_attempt(task, ok=True, outcome="not at a warehouse")
                await withdrawals.withdraw_finished(task, ok=True)
            else:
                await self._give_up(task, "the third-party warehouse is gone")
            return
        handler = {
            TaskKind.PUSH_ORDER: self._push_order,
            TaskKind.CANCEL_ORDER: self._cancel_order,
            TaskKind.PUSH_RETURN: self._push_return,
            TaskKind.CANCEL_RETURN: self._cancel_return,
        }[task.kind]
        async with self._client(third_party_warehouse) as client:
            try:
                await handler(task, client, third_party_warehouse)
            except WarehouseApiError as error:
                if error.transient:
                    raise Unreachable(f"warehouse unreachable: {error.message}") from error
                await warehouse_tasks.record_attempt(task, ok=False, outcome=error.message)
                await self._finish(task, ok=False, error=f"warehouse refused: {error.message}")

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
            await warehouse_tasks.record_attempt(task, ok=False, outcome=str(error))
            await self._finish(task, ok=False, error=f"cannot be sent: {error}")
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
        self,
        task: WarehouseTask,
        client: WarehouseClient,
        third_party_warehouse: ThirdPartyWarehouse,
    ) -> None:
        assert task.order_id is not None
        reference = str(task.order_id)
        try:
            order = await client.cancel_outbound_order(
                reference, idempotency_key=f"sg-task-{task.id}"
            )
            outcome = f"cancelled at the warehouse ({order.status.value})"
        except WarehouseNotFound:
            outcome = "the warehouse never had it"
        except WarehouseRefused as error:
            await warehouse_tasks.record_attempt(task, ok=False, outcome=error.message)
            await withdrawals.withdraw_finished(
                task, ok=False, failure=f"the warehouse refused: {error.reason}"
            )
            return
        await warehouse_tasks.record_attempt(task, ok=True, outcome=outcome)
        await withdrawals.withdraw_finished(task, ok=True)

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
            await warehouse_tasks.record_attempt(task, ok=False, outcome=str(error))
            await self._finish(task, ok=False, error=f"cannot be sent: {error}")
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

    async def _cancel_return(
        self,
        task: WarehouseTask,
        client: WarehouseClient,
        third_party_warehouse: ThirdPartyWarehouse,
    ) -> None:
        item = await AfterSalesOrder.get(id=task.after_sales_id)
        try:
            await client.cancel_return(
                item.reference or f"R{item.id}", idempotency_key=f"sg-task-{task.id}"
            )
            outcome = "return cancelled at the warehouse"
        except WarehouseNotFound:
            outcome = "the warehouse never had it"
        except WarehouseRefused as error:
            await warehouse_tasks.record_attempt(task, ok=False, outcome=error.message)
            await withdrawals.withdraw_finished(
                task, ok=False, failure=f"the warehouse refused: {error.reason}"
            )
            return
        await warehouse_tasks.record_attempt(task, ok=True, outcome=outcome)
        await withdrawals.withdraw_finished(task, ok=True)

    # -- outcomes ----------------------------------------------------------------------------

    async def _finish(self, task: WarehouseTask, *, ok: bool, error: str | None = None) -> None:
        if task.kind is TaskKind.PUSH_ORDER:
            await distribution_orders.push_finished(task, ok=ok, error=error)
        elif task.kind is TaskKind.PUSH_RETURN:
            await after_sales.return_push_finished(task, ok=ok, error=error)
        else:
            await withdrawals.withdraw_finished(task, ok=ok, failure=error)

    async def _give_up(self, task: WarehouseTask, error: str) -> None:
        await warehouse_tasks.record_attempt(task, ok=False, outcome=error)
        await self._finish(task, ok=False, error=error)

    async def _unreachable(self, task: WarehouseTask, error: str) -> None:
        await warehouse_tasks.record_attempt(task, ok=False, outcome=error)
        if task.attempts >= self.settings.task_attempts:
            await self._finish(task, ok=False, error=f"{error}; gave up after {task.attempts} runs")
            return
        delay = self.settings.retry_delay * 2 ** (task.attempts - 1)
        await warehouse_tasks.retry_later(task, delay=delay, error=error)

    # -- reconciliation ----------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Fetch the state of pushed orders and returns that have waited too long for a
        callback; returns how many were checked. Each one tried goes to the back of the queue,
        answered or not, so a warehouse that is down does not hold up the others."""
        older = datetime.now(UTC) - timedelta(seconds=self.settings.reconcile_after)
        checked = 0
        for record in await distribution_orders.due_for_reconciliation(
            older_than=older, limit=self.settings.batch
        ):
            await distribution_orders.mark_checked(record.order_id)
            third_party_warehouse = await ThirdPartyWarehouse.get_or_none(
                id=record.third_party_warehouse_id
            )
            if third_party_warehouse is None or record.reference is None:
                continue
            try:
                async with self._client(third_party_warehouse) as client:
                    state = await client.get_outbound_order(record.reference)
            except WarehouseApiError as error:
                log.warning("reconciling order %s: %s", record.order_id, error)
                continue
            checked += 1
            await distribution_orders.apply_outbound_status(
                third_party_warehouse_id=third_party_warehouse.id,
                reference=record.reference,
                status=state.status.value,
                carrier=state.carrier,
                tracking_number=state.tracking_number,
                reason=state.reason,
            )
        for item in await after_sales.due_returns_for_reconciliation(
            older_than=older, limit=self.settings.batch
        ):
            await after_sales.mark_return_checked(item.id)
            third_party_warehouse = await ThirdPartyWarehouse.get_or_none(
                id=item.third_party_warehouse_id
            )
            if third_party_warehouse is None or item.reference is None:
                continue
            try:
                async with self._client(third_party_warehouse) as client:
                    state = await client.get_return(item.reference)
            except WarehouseApiError as error:
                log.warning("reconciling return %s: %s", item.number, error)
                continue
            checked += 1
            await after_sales.apply_return_status(
                third_party_warehouse_id=third_party_warehouse.id,
                reference=item.reference,
                status=state.status.value,
                received={line.sku: line.received_quantity for line in state.items},
                reason=state.reason,
            )
        return checked
