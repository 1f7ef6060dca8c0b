"""Hot paths: payment (wallet, and wallet + cloud-stock reservation) and withdraw requests, from
32 concurrent clients, every request on an order of its own.

- ``hot_paths.pay``: ``payOrders(orderIds: [id])`` of one AWAITING_PAYMENT manual order (one
  line, 5.00 goods + 3.00 freight) from the buyer's wallet, funded for the whole pool. All
  payments debit the same wallet row (one buyer paying many orders at once, the contended case).
- ``hot_paths.pay_from_stock``: the same with ``stockWarehouseId``: freight only is charged and
  one unit of the buyer's stock in a cloud warehouse is reserved in the payment's transaction
  (one stock item: every payment also updates that one row).
- ``hot_paths.withdraw``: ``withdrawOrder(orderId)`` of a paid distribution order pushed to the
  partnership's third-party warehouse. It answers WITHDRAWING at once; the server's background
  worker cancels the order at the warehouse (``integrations.warehouses.simulator`` run as its
  own uvicorn process, on the load generator's core) and applies WITHDRAWN (order CANCELLED,
  payment refunded). Beside the request throughput: the cascade of the timed load's
  withdrawals, from the first created to the last cancel task finished (server timestamps),
  the withdrawals it completed per second over that span (ratio to the request rate: at least
  1 means the background work keeps up with the requests), and each withdrawal's time from
  request to WITHDRAWN.

Baseline, measured in the same run with the same clients: ``order(id:)`` as the paying buyer,
cycling over the orders of the payment pool, selecting what the mutations return (id, status,
paid amount), with an ``extensions`` member so that the response cache never answers it: the
same HTTP, authentication, GraphQL and database path and the same answer size, without a
write. It is measured at the start (``hot_paths.baseline``: its rate sizes the warm-up pools)
and again right before each write path's timed load, after that path's warm-up and seeding,
and each path's ratios are to the read measured next to it: the machine's speed drifts over
the minutes a run takes (a read measured once at the start was up to two minutes older than
the withdraw load it was compared with). Each ratio is write req/s ÷ read req/s: the share of
the read throughput a write request reaches (1.0: a write costs no more than reading the
order). Issue 20's targets (``MIN_RATIOS``): pay >= 0.6, pay_from_stock >= 0.5, withdraw >=
0.8, and the cascade >= 0.5x the withdraw request rate (``MIN_CASCADE_RATIO``); latencies,
each rate against ``write_floor`` (``*.vs_write_floor``) and the cascade's timings are
reported.

Data: organisations, catalogue, wallets, partnership and third-party warehouse through the
domain layer in this process; the order pools set-based (``bulk_create``) in the shape the
domain gives them (paid orders with their PAYMENT ledger entries, pushed orders with their
warehouse record and the order created at the simulator through ``WarehouseClient``).

Pools are sized from what the server does in this run, not from a fixed rate (the write paths
get faster, and a pool that runs dry turns the rest of the load into refused requests): each
path's warm-up runs first on its own, on a pool sized for the read baseline's rate (no write
outruns reading the order; if it ran dry all the same it grows and runs again); its rate x
``HEADROOM`` over the warm-up and repetitions sizes the pool the timed load gets, seeded
before it starts. If a repetition still drains the pool, the repetitions from that one on are
set aside, the pool grows (for twice the rate seen) and they are measured again: no figure
reported comes from a pool that ran dry (``measured_on_pool``).

Checks after each run, read from the database: every order answered paid is AWAITING_SHIPPING
with exactly one PAYMENT entry and no other order of the pool is paid; the wallet balance equals
the sum of its ledger; stock figures equal the sum of the stock ledger and the reservations
match the paid orders; every withdraw answered WITHDRAWING reaches WITHDRAWN, its order
CANCELLED and refunded once, and the simulator applied exactly that many cancellations.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tortoise.expressions import F

from bench.common import (
    LOADGEN_CORE,
    PYTHON,
    LoadStats,
    RawConnection,
    Repetition,
    Req,
    Row,
    ServerProcess,
    allow_local_simulators,
    compared,
    cpu_ns,
    free_port,
    load_rows,
    make_req,
    measure,
    percentile,
    progress,
)
from bench.context import BenchContext
from bench.seed import ADDRESS, buyer_with_token, owner_viewer
from compat import tortoise as orm
from domain import secrets
from domain.access import Viewer
from domain.catalogue import commands as catalogue
from domain.db import tortoise_config, transaction
from domain.distribution import partnerships
from domain.distribution.models import (
    PushStatus,
    TaskKind,
    TaskState,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalStatus,
)
from domain.models import Sku, StockItem, StockMovement, Wallet
from domain.orders.models import (
    LineSource,
    Order,
    OrderKind,
    OrderLine,
    OrderStatus,
    OrderTransition,
)
from domain.organisations import commands as organisations
from domain.organisations.models import OrganisationKind
from domain.payments import commands as payments
from domain.payments.models import EntryKind, WalletEntry
from domain.stock import commands as stock
from domain.stock.models import MovementKind, ReservationState, StockReservation
from integrations.warehouses.client import WarehouseClient
from integrations.warehouses.protocol import OutboundItem, Recipient
from integrations.warehouses.worker import callback_url
from schema.global_ids import gid

NAME = "hot_paths"
REQUIRES: tuple[str, ...] = ("write_floor",)
USES_DATABASE = True
HEADROOM = 1.5  # a pool holds the measured rate x this over the load it must last
READ_ORDERS = 1_000  # orders of the payment pool seeded first: the baseline reads them
MAX_ATTEMPTS = 5  # a warm-up or the repetitions measured again on a grown pool, at most
BATCH = 2_000
UNIT_PRICE = Decimal("5.00")
FREIGHT = Decimal("3.00")  # the method's first 500 g to any country; one line weighs 200 g
WAREHOUSE_KEY = "bench-warehouse-key"
PUSH_CONCURRENCY = 32
CASCADE_STALL = 60.0  # seconds without a withdrawal finishing before the wait gives up
TARGET = "report"
PAY_PREFIX, STOCK_PREFIX, WITHDRAW_PREFIX = "HPPAY", "HPSTK", "HPWDR"  # order numbers

PAY = (
    "mutation($o: [ID!]!) { payOrders(orderIds: $o) "
    "{ orders { id status paidAmount } userErrors { code message } } }"
)
PAY_FROM_STOCK = (
    "mutation($o: [ID!]!, $w: ID!) { payOrders(orderIds: $o, stockWarehouseId: $w) "
    "{ orders { id status paidAmount } userErrors { code message } } }"
)
WITHDRAW = (
    'mutation($o: ID!) { withdrawOrder(orderId: $o, reason: "bench") '
    "{ withdrawal { id status } userErrors { code message } } }"
)
READ = "query($o: ID!) { order(id: $o) { id status paidAmount } }"
# a request with an ``extensions`` member is never answered by the response cache
# (``service/response_cache.py``): it runs the query every time
EXECUTE_EVERY_TIME = {"bench": "execute every request"}


# --------------------------------------------------------------------------- servers


def simulator_server(ctx: BenchContext, port: int, *, callback_secret: str) -> ServerProcess:
    """The warehouse simulator as its own process (``python -m ...simulator``), on the load
    generator's core: it stands for the outside world, like the clients."""
    command = [PYTHON, "-m", "integrations.warehouses.simulator", "--port", str(port)]
    command += ["--key", WAREHOUSE_KEY, "--secret", callback_secret]
    return ServerProcess(
        "warehouse simulator",
        command,
        {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
        ctx.results_dir / "warehouse_simulator.log",
        core=LOADGEN_CORE,
        health_path="/_sim/effects",
    )


@contextlib.asynccontextmanager
async def bench_database(ctx: BenchContext) -> AsyncIterator[None]:
    """Tortoise on the run's database in this process (seeding and checks)."""
    from tortoise import Tortoise

    secrets.configure(ctx.secrets_key)  # the key the servers get as SECRETS_KEY
    await Tortoise.init(config=tortoise_config(ctx.database_url))
    try:
        yield
    finally:
        await Tortoise.close_connections()


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Catalogue:
    supplier: Viewer
    sku: Sku
    method_id: int


async def supplier_catalogue(name: str, email: str) -> Catalogue:
    """A supplier with one product of one SKU (5.00, 200 g) and a logistics method (3.00 for
    the first 500 g to any country)."""
    org, user = await organisations.create_organisation(
        name=name, kind=OrganisationKind.SUPPLIER, owner_email=email, owner_name=name
    )
    viewer = owner_viewer(org, user)
    product = await catalogue.create_product(
        viewer=viewer,
        title="Hot tee",
        skus=[
            catalogue.SkuSpec(
                code="HOT-M", attributes={"size": "M"}, weight_grams=200, unit_price=UNIT_PRICE
            )
        ],
    )
    sku = await Sku.get(product_id=product.id)
    method = await catalogue.create_logistics_method(
        viewer=viewer,
        name="Air",
        min_days=3,
        max_days=7,
        rules=[catalogue.FreightRuleSpec("*", 500, FREIGHT, 500, Decimal("1.00"))],
    )
    return Catalogue(viewer, sku, method.id)


async def bulk_orders(
    *,
    prefix: str,
    buyer_id: int,
    cat: Catalogue,
    count: int,
    paid: bool = False,
    first: int = 0,
) -> list[int]:
    """``count`` manual orders of one line (the catalogue's SKU, quantity 1), numbered
    ``prefix`` + 8 digits from ``first`` on: AWAITING_PAYMENT, or with ``paid``
    AWAITING_SHIPPING as a payment leaves them (amounts, unit price, timeline). Ids in number
    order."""
    ids: list[int] = []
    sku = cat.sku
    title = f"Hot tee ({sku.code})"
    now = datetime.now(UTC)
    status = OrderStatus.AWAITING_SHIPPING if paid else OrderStatus.AWAITING_PAYMENT
    extra: dict[str, Any] = (
        {
            "goods_amount": UNIT_PRICE,
            "freight_amount": FREIGHT,
            "paid_amount": UNIT_PRICE + FREIGHT,
            "paid_at": now,
            "version": 2,
        }
        if paid
        else {}
    )
    for start in range(first, first + count, BATCH):
        numbers = [f"{prefix}{i:08d}" for i in range(start, min(start + BATCH, first + count))]
        async with transaction():
            await Order.bulk_create(
                [
                    Order(
                        number=number,
                        kind=OrderKind.MANUAL,
                        status=status,
                        buyer_id=buyer_id,
                        supplier_id=cat.supplier.organisation_id,
                        currency=sku.currency,
                        customer_name=ADDRESS["name"],
                        shipping_address=ADDRESS,
                        logistics_method_id=cat.method_id,
                        **extra,
                    )
                    for number in numbers
                ]
            )
            found = dict(await Order.filter(number__in=numbers).values_list("number", "id"))
            batch = [int(found[n]) for n in numbers]
            await OrderLine.bulk_create(
                [
                    OrderLine(
                        order_id=oid,
                        title=title,
                        quantity=1,
                        sku_id=sku.id,
                        source=LineSource.DIRECT,
                        unit_price=UNIT_PRICE if paid else None,
                    )
                    for oid in batch
                ]
            )
            steps = [(None, OrderStatus.AWAITING_PAYMENT, "placed by the buyer")]
            if paid:
                steps.append(
                    (
                        OrderStatus.AWAITING_PAYMENT,
                        OrderStatus.AWAITING_SHIPPING,
                        f"paid {UNIT_PRICE + FREIGHT} {sku.currency}",
                    )
                )
            await OrderTransition.bulk_create(
                [
                    OrderTransition(
                        order_id=oid, from_status=before, to_status=after, reason=reason
                    )
                    for oid in batch
                    for before, after, reason in steps
                ]
            )
        ids += batch
    return ids


class Payer:
    """The paying buyer: one wallet, one stock item in a cloud warehouse, and two pools of
    AWAITING_PAYMENT orders (plain payments, payments from stock) that grow on demand: each
    addition funds the wallet for what it adds (and, for the stock pool, receives as many
    units), so whatever the pools hold can be paid."""

    def __init__(
        self, cat: Catalogue, buyer_id: int, token: str, warehouse_id: int, stock_item_id: int
    ) -> None:
        self.cat = cat
        self.buyer_id, self.token = buyer_id, token
        self.warehouse_id, self.stock_item_id = warehouse_id, stock_item_id
        self.wallet_id = 0  # made by the first top-up
        self.pay_ids: list[int] = []
        self.stock_ids: list[int] = []

    @classmethod
    async def seed(cls, cat: Catalogue, pay_orders: int) -> Payer:
        """The buyer, its cloud warehouse and (empty) stock item, and ``pay_orders`` orders in
        the plain-payment pool (the baseline reads them)."""
        payer, token = await buyer_with_token("Hot payer", "payer@hot.bench.test")
        warehouse, _ = await stock.create_cloud_warehouse(
            viewer=cat.supplier, name="Hot cloud warehouse", address=ADDRESS
        )
        item = await StockItem.create(
            buyer_id=payer.organisation_id, warehouse_id=warehouse.id, sku_id=cat.sku.id
        )
        made = cls(cat, payer.organisation_id, token, warehouse.id, item.id)
        await made.add_pay(pay_orders)
        return made

    async def _fund(self, amount: Decimal) -> None:
        # after the orders: a supplier tops up only buyers it trades with
        wallet = await payments.top_up(
            viewer=self.cat.supplier,
            buyer_id=self.buyer_id,
            amount=amount + (Decimal("100.00") if not self.wallet_id else Decimal("0.00")),
            currency=self.cat.sku.currency,
        )
        self.wallet_id = wallet.id

    async def add_pay(self, count: int) -> list[int]:
        """``count`` more orders to pay from the wallet (5.00 goods + 3.00 freight each)."""
        ids = await bulk_orders(
            prefix=PAY_PREFIX,
            buyer_id=self.buyer_id,
            cat=self.cat,
            count=count,
            first=len(self.pay_ids),
        )
        self.pay_ids += ids
        await self._fund(count * (UNIT_PRICE + FREIGHT))
        return ids

    async def add_stock(self, count: int) -> list[int]:
        """``count`` more orders to pay from stock: as many units received into the stock
        item (one RECEIVED movement) and the freight funded."""
        ids = await bulk_orders(
            prefix=STOCK_PREFIX,
            buyer_id=self.buyer_id,
            cat=self.cat,
            count=count,
            first=len(self.stock_ids),
        )
        self.stock_ids += ids
        async with transaction():
            await StockMovement.create(
                stock_item_id=self.stock_item_id,
                kind=MovementKind.RECEIVED,
                on_hand_delta=count,
                reason="bench",
            )
            await StockItem.filter(id=self.stock_item_id).update(
                on_hand=F("on_hand") + count, available=F("available") + count
            )
        await self._fund(count * FREIGHT)
        return ids


class Distributor:
    """The withdrawing distributor: its wallet, and a pool of paid orders pushed to the
    simulator's warehouse (the partnership's third-party warehouse) that grows on demand."""

    def __init__(
        self,
        cat: Catalogue,
        buyer_id: int,
        token: str,
        third_party_warehouse_id: int,
        sim_url: str,
        callback: str,
    ) -> None:
        self.cat = cat
        self.buyer_id, self.token = buyer_id, token
        self.third_party_warehouse_id = third_party_warehouse_id
        self.sim_url, self.callback = sim_url, callback
        self.wallet_id = 0  # made by the first top-up
        self.order_ids: list[int] = []

    @classmethod
    async def seed(cls, cat: Catalogue, sim_url: str, app_url: str) -> Distributor:
        """A partnered distributor whose warehouse is run by the simulator (no orders yet)."""
        distributor, token = await buyer_with_token("Hot distributor", "distributor@hot.bench.test")
        applied = await partnerships.apply_for_partnership(
            viewer=distributor, supplier_id=cat.supplier.organisation_id, message=""
        )
        accepted = await partnerships.decide_partnership(
            viewer=cat.supplier, partnership_id=applied.id, accept=True
        )
        assert accepted.warehouse_id is not None
        allow_local_simulators()  # the simulator runs on 127.0.0.1
        authorised = await partnerships.authorise_warehouse(
            viewer=cat.supplier,
            provider="SimWMS",
            name="Sim",
            api_url=sim_url,
            api_key=WAREHOUSE_KEY,
        )
        third_party_warehouse = authorised.third_party_warehouse
        await partnerships.select_distribution_warehouse(
            viewer=cat.supplier,
            partnership_id=accepted.id,
            warehouse_id=accepted.warehouse_id,
            third_party_warehouse_id=third_party_warehouse.id,
        )
        callback = callback_url(app_url, third_party_warehouse.id)
        return cls(
            cat, distributor.organisation_id, token, third_party_warehouse.id, sim_url, callback
        )

    async def add(self, count: int) -> list[int]:
        """``count`` more paid orders, pushed: the wallet topped up and the payments written
        (PAYMENT entries, the balance lowered by as much), the orders created at the
        simulator, then recorded PUSHED."""
        cat, price = self.cat, UNIT_PRICE + FREIGHT
        wallet = await payments.top_up(
            viewer=cat.supplier,
            buyer_id=self.buyer_id,
            amount=count * price,
            currency=cat.sku.currency,
        )
        self.wallet_id = wallet.id
        ids = await bulk_orders(
            prefix=WITHDRAW_PREFIX,
            buyer_id=self.buyer_id,
            cat=cat,
            count=count,
            paid=True,
            first=len(self.order_ids),
        )
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            async with transaction():
                await WalletEntry.bulk_create(
                    [
                        WalletEntry(
                            wallet_id=wallet.id,
                            kind=EntryKind.PAYMENT,
                            amount=-price,
                            order_id=oid,
                            note="bench payment",
                        )
                        for oid in batch
                    ]
                )
                # the top-up, all spent (refunds of earlier withdrawals stay in the balance)
                cents = int(price * 100) * len(batch)
                await Wallet.filter(id=wallet.id).update(balance_cents=F("balance_cents") - cents)

        started = time.perf_counter()
        pushed = await _push_to_simulator(ids, base_url=self.sim_url, callback=self.callback)
        took = time.perf_counter() - started
        progress(f"  {NAME}: {len(ids):,} orders created at the simulator in {took:.1f} s")
        now = datetime.now(UTC)
        for start in range(0, len(ids), BATCH):
            await WarehouseOrder.bulk_create(
                [
                    WarehouseOrder(
                        order_id=oid,
                        supplier_id=cat.supplier.organisation_id,
                        third_party_warehouse_id=self.third_party_warehouse_id,
                        reference=str(oid),
                        push_status=PushStatus.PUSHED,
                        warehouse_order_id=pushed[oid],
                        warehouse_status="RECEIVED",
                        pushed_at=now,
                        checked_at=now,
                    )
                    for oid in ids[start : start + BATCH]
                ]
            )
        self.order_ids += ids
        return ids


async def _push_to_simulator(
    order_ids: list[int], *, base_url: str, callback: str
) -> dict[int, str]:
    """Create each order at the warehouse as the worker's push does; warehouse ids by order."""
    recipient = Recipient.from_shipping_address(ADDRESS)
    items = [OutboundItem("HOT-M", 1, "Hot tee (HOT-M)")]
    created: dict[int, str] = {}
    todo = iter(order_ids)

    async def pusher(client: WarehouseClient) -> None:
        for oid in todo:
            order = await client.create_outbound_order(
                reference=str(oid),
                recipient=recipient,
                items=items,
                callback_url=callback,
                idempotency_key=f"bench-push-{oid}",
            )
            created[oid] = order.id

    async with WarehouseClient(base_url=base_url, api_key=WAREHOUSE_KEY) as client:
        await asyncio.gather(*(pusher(client) for _ in range(PUSH_CONCURRENCY)))
    return created


async def seed_hot_paths(
    ctx: BenchContext, sim_url: str, app_url: str
) -> tuple[Payer, Distributor]:
    """The supplier, the payer with the orders the baseline reads (the first of the payment
    pool) and the distributor; every pool grows from there as the load needs
    (``measured_on_pool``)."""
    cat = await supplier_catalogue("Hot supplier", "supplier@hot.bench.test")
    payer = await Payer.seed(cat, READ_ORDERS)
    return payer, await Distributor.seed(cat, sim_url, app_url)


# --------------------------------------------------------------------------- workloads


def graphql_req(
    token: str, query: str, variables: dict[str, Any], *, uncached: bool = False
) -> Req:
    """A GraphQL POST; ``uncached``: with ``EXECUTE_EVERY_TIME`` as its extensions."""
    document: dict[str, Any] = {"query": query, "variables": variables}
    if uncached:
        document["extensions"] = EXECUTE_EVERY_TIME
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    return make_req("POST", "/graphql", headers, body)


def graphql_data(body: bytes) -> dict[str, Any] | None:
    """The ``data`` of a GraphQL answer without ``errors``, else None."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("errors") or not answer.get("data"):
        return None
    return answer["data"]


class DistinctOrders:
    """A workload that names each order of a pool in one request only (``build`` makes it) and
    counts an answer as a success when ``accept`` approves its ``data``. The pool grows with
    ``add``. Once it is used up the workload sends a request for order 0, which the server
    refuses: counted in ``dry``, the first one's time in ``dry_since`` (both cleared by
    ``measuring``, before each measurement), all of them in ``dry_total``."""

    def __init__(
        self,
        order_ids: Sequence[int],
        build: Callable[[int], Req],
        accept: Callable[[dict[str, Any]], bool],
    ) -> None:
        self._pool: list[int] = list(order_ids)
        self._taken = 0
        self.build, self.accept = build, accept
        self.order_of: dict[Req, int] = {}
        self.sent: list[int] = []
        self.succeeded: list[int] = []
        self.refused: dict[int, str] = {}
        self.dry = 0
        self.dry_total = 0
        self.dry_since: float | None = None  # perf_counter of the first request beyond the pool
        self._dry_req = build(0)

    @property
    def remaining(self) -> int:
        """Orders of the pool not sent yet."""
        return len(self._pool) - self._taken

    def add(self, order_ids: Sequence[int]) -> None:
        self._pool += order_ids

    def measuring(self) -> None:
        """A measurement starts: forget when the pool last ran dry."""
        self.dry, self.dry_since = 0, None

    def next_request(self) -> Req:
        if self._taken >= len(self._pool):
            if self.dry_since is None:
                self.dry_since = time.perf_counter()
            self.dry += 1
            self.dry_total += 1
            return self._dry_req
        order_id = self._pool[self._taken]
        self._taken += 1
        req = self.build(order_id)
        self.order_of[req] = order_id
        self.sent.append(order_id)
        return req

    def observe(self, req: Req, status: int, body: bytes) -> bool:
        if req is self._dry_req:
            return False
        order_id = self.order_of.pop(req)
        data = graphql_data(body) if status == 200 else None
        if data is not None and self.accept(data):
            self.succeeded.append(order_id)
            return True
        self.refused[order_id] = f"HTTP {status}: {body[:300]!r}"
        return False

    @property
    def unanswered(self) -> int:
        """Requests sent that got no answer (connection error or time-out)."""
        return len(self.sent) - len(self.succeeded) - len(self.refused)

    def summary(self) -> str:
        text = (
            f"{len(self.sent)} sent of a pool of {len(self._pool)}, {len(self.succeeded)} "
            f"accepted, {len(self.refused)} refused, {self.unanswered} unanswered"
        )
        if self.refused:
            text += f" (first refusal: {next(iter(self.refused.values()))})"
        if self.dry:
            text += f"; POOL USED UP: {self.dry} requests beyond it in the figures reported"
        elif self.dry_total:
            text += f"; {self.dry_total} requests beyond the pool, in repetitions set aside"
        return text


class OrderReads:
    """The baseline: ``order(id:)`` cycling over a list of orders, run every time (not from
    the response cache); a success names the order."""

    def __init__(self, token: str, order_ids: Sequence[int]) -> None:
        self.requests = itertools.cycle(
            [graphql_req(token, READ, {"o": gid("Order", oid)}, uncached=True) for oid in order_ids]
        )

    def next_request(self) -> Req:
        return next(self.requests)

    def observe(self, req: Req, status: int, body: bytes) -> bool:
        data = graphql_data(body) if status == 200 else None
        return data is not None and bool(data.get("order"))


def _paid(data: dict[str, Any]) -> bool:
    payload = data.get("payOrders") or {}
    orders = payload.get("orders") or []
    return payload.get("userErrors") == [] and [o["status"] for o in orders] == [
        "AWAITING_SHIPPING"
    ]


def _withdrawing(data: dict[str, Any]) -> bool:
    payload = data.get("withdrawOrder") or {}
    withdrawal = payload.get("withdrawal") or {}
    return payload.get("userErrors") == [] and withdrawal.get("status") == "WITHDRAWING"


# --------------------------------------------------------------------------- checks


@dataclass
class Check:
    verified: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


async def _wallet_matches_ledger(check: Check, wallet_id: int) -> None:
    wallet = await Wallet.get(id=wallet_id)
    amounts = await WalletEntry.filter(wallet_id=wallet_id).values_list("amount", flat=True)
    ledger = sum((Decimal(str(a)) for a in amounts), Decimal("0.00"))
    check.expect(
        wallet.balance == ledger, f"wallet {wallet_id}: balance {wallet.balance}, ledger {ledger}"
    )


async def check_payments(
    workload: DistinctOrders,
    *,
    buyer_id: int,
    prefix: str,
    wallet_id: int,
    charged: Decimal,
    stock_item_id: int | None = None,
) -> Check:
    """Every order answered paid is paid once (one PAYMENT of ``charged``); no other order of
    the pool (numbers ``prefix``...) is paid; the wallet equals its ledger; with
    ``stock_item_id``, one unit is held per paid order and the item's figures equal its
    ledger."""
    check = Check()
    status = dict(
        await Order.filter(buyer_id=buyer_id, number__startswith=prefix).values_list("id", "status")
    )
    paid = {int(oid) for oid, st in status.items() if st == OrderStatus.AWAITING_SHIPPING}
    accepted, refused = set(workload.succeeded), set(workload.refused)
    check.expect(not accepted - paid, f"{len(accepted - paid)} answered paid but not paid")
    check.expect(not paid & refused, f"{len(paid & refused)} refused orders were paid")
    check.expect(
        paid <= set(workload.sent), f"{len(paid - set(workload.sent))} orders never sent are paid"
    )
    entries = await WalletEntry.filter(wallet_id=wallet_id, kind=EntryKind.PAYMENT).values_list(
        "order_id", "amount"
    )
    per_order = Counter(int(oid) for oid, _ in entries if oid in status)
    amounts = {Decimal(str(amount)) for oid, amount in entries if oid in status}
    check.expect(
        set(per_order) == paid,
        f"PAYMENT entries for {len(per_order)} orders of the pool, {len(paid)} paid",
    )
    twice = [oid for oid, n in per_order.items() if n != 1]
    check.expect(not twice, f"{len(twice)} orders charged more than once")
    check.expect(amounts <= {-charged}, f"payment amounts {sorted(amounts)}, not -{charged}")
    await _wallet_matches_ledger(check, wallet_id)
    if stock_item_id is not None:
        await _check_stock(check, stock_item_id, paid)
    check.expect(workload.dry == 0, f"the pool ran dry ({workload.dry} requests beyond it)")
    check.verified = len(paid)
    return check


async def _check_stock(check: Check, stock_item_id: int, paid: set[int]) -> None:
    item = await StockItem.get(id=stock_item_id)
    moves = await StockMovement.filter(stock_item_id=stock_item_id).values_list(
        "on_hand_delta", "reserved_delta"
    )
    ledger = (sum(m[0] for m in moves), sum(m[1] for m in moves))
    check.expect(
        ledger == (item.on_hand, item.reserved),
        f"stock {item.on_hand}/{item.reserved} (on hand/reserved), ledger {ledger}",
    )
    check.expect(
        item.available == item.on_hand - item.reserved,
        f"available {item.available}, on hand {item.on_hand}, reserved {item.reserved}",
    )
    held = await StockReservation.filter(
        stock_item_id=stock_item_id, state=ReservationState.HELD
    ).values_list("order_id", "quantity")
    check.expect(
        {int(oid) for oid, _ in held} == paid and all(q == 1 for _, q in held),
        f"{len(held)} reservations held for {len(paid)} orders paid from stock",
    )
    check.expect(item.reserved == len(paid), f"{item.reserved} reserved, {len(paid)} paid")


async def wait_withdrawn(distributor_id: int) -> bool:
    """Until no withdrawal of the distributor is WITHDRAWING (False: none finished for
    ``CASCADE_STALL`` seconds)."""
    last, changed = -1, time.monotonic()
    while True:
        pending = await Withdrawal.filter(
            distributor_id=distributor_id, status=WithdrawalStatus.WITHDRAWING
        ).count()
        if pending == 0:
            return True
        if pending != last:
            last, changed = pending, time.monotonic()
        elif time.monotonic() - changed > CASCADE_STALL:
            progress(f"  {NAME}: {pending} withdrawals still WITHDRAWING; giving up")
            return False
        await asyncio.sleep(0.1)


class _CpuShares:
    """The share of a core each process (and the database's processes together) spent from
    now until ``report``: where a phase's time went."""

    def __init__(self, servers: dict[str, ServerProcess]) -> None:
        self.pids = {name: [s.process.pid] for name, s in servers.items() if s.process is not None}
        self.pids["database"] = _postgres_pids()
        self.started = time.perf_counter()
        self.cpu = {name: cpu_ns(pids) for name, pids in self.pids.items()}

    def report(self, label: str, done: int = 0) -> None:
        """Print each one's share of a core; with ``done`` (requests or withdrawals), also
        its CPU per one of them. Around a ``measure`` the CPU spans its warm-up, whose
        requests ``done`` does not count: per request it reads high by the warm-up's share
        (1 s in 4 in a quick run), alike for the read and the write it is set beside."""
        seconds = time.perf_counter() - self.started
        spent = {name: (cpu_ns(pids) - self.cpu[name]) / 1e9 for name, pids in self.pids.items()}
        progress(
            f"  {label}: {seconds:.2f} s; share of a core: "
            + ", ".join(f"{name} {cpu / seconds:.2f}" for name, cpu in spent.items())
            + (
                "; CPU per one: "
                + ", ".join(f"{name} {cpu / done * 1000:.2f} ms" for name, cpu in spent.items())
                if done
                else ""
            )
        )


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


@dataclass
class Cascade:
    seconds: float  # first withdrawal created → last cancel task finished
    finished_at: float  # the last one, epoch seconds
    to_withdrawn_ms: list[float]  # per withdrawal, sorted


async def check_withdrawals(
    workload: DistinctOrders,
    data: Distributor,
    sim: ServerProcess,
    *,
    settled: bool,
    since: float = 0.0,
) -> tuple[Check, Cascade | None]:
    """Every accepted withdraw has one withdrawal, WITHDRAWN; exactly those orders are
    CANCELLED, refunded once and WITHDRAWN at the warehouse record; the simulator cancelled as
    many; the wallet equals its ledger. Also the cascade's timing, over the withdrawals created
    from ``since`` on (``time.time()``: the timed load's start; the warm-up's are checked,
    not timed)."""
    check = Check()
    check.expect(settled, "the cascade did not finish")
    rows = await Withdrawal.filter(distributor_id=data.buyer_id).values_list(
        "id", "order_id", "status", "failure", "created_at"
    )
    per_order = Counter(int(r[1]) for r in rows)
    accepted = set(workload.succeeded)
    check.expect(
        accepted <= set(per_order),
        f"{len(accepted - set(per_order))} accepted withdraws have no withdrawal",
    )
    check.expect(all(n == 1 for n in per_order.values()), "an order has several withdrawals")
    failed = [r for r in rows if r[2] != WithdrawalStatus.WITHDRAWN]
    check.expect(
        not failed,
        f"{len(failed)} withdrawals not WITHDRAWN"
        + (f" (first: {failed[0][2]} {failed[0][3]})" if failed else ""),
    )
    withdrawn = {int(r[1]) for r in rows if r[2] == WithdrawalStatus.WITHDRAWN}
    orders = await Order.filter(
        buyer_id=data.buyer_id, number__startswith=WITHDRAW_PREFIX
    ).values_list("id", "status", "refunded_amount")
    wrong = [
        oid
        for oid, st, refunded in orders
        if (int(oid) in withdrawn)
        != (st == OrderStatus.CANCELLED and Decimal(str(refunded)) == UNIT_PRICE + FREIGHT)
    ]
    check.expect(not wrong, f"{len(wrong)} orders not CANCELLED and refunded as withdrawn")
    records = dict(
        await WarehouseOrder.filter(
            third_party_warehouse_id=data.third_party_warehouse_id
        ).values_list("order_id", "withdrawal_status")
    )
    check.expect(
        {int(oid) for oid, st in records.items() if st == WithdrawalStatus.WITHDRAWN} == withdrawn,
        "the warehouse records marked WITHDRAWN are not the withdrawn orders",
    )
    refunds = Counter(
        int(oid)
        for oid in await WalletEntry.filter(
            wallet_id=data.wallet_id, kind=EntryKind.REFUND
        ).values_list("order_id", flat=True)
    )
    check.expect(
        set(refunds) == withdrawn and all(n == 1 for n in refunds.values()),
        f"{sum(refunds.values())} refunds for {len(withdrawn)} withdrawn orders",
    )
    await _wallet_matches_ledger(check, data.wallet_id)
    effects = await _simulator_effects(sim)
    check.expect(
        effects.get("outbound_cancelled") == len(withdrawn),
        f"the warehouse cancelled {effects.get('outbound_cancelled')}, {len(withdrawn)} withdrawn",
    )
    check.expect(workload.dry == 0, f"the pool ran dry ({workload.dry} requests beyond it)")
    check.verified = len(withdrawn)

    finished = dict(
        await WarehouseTask.filter(
            kind=TaskKind.CANCEL_ORDER, state=TaskState.DONE, withdrawal_id__isnull=False
        ).values_list("withdrawal_id", "finished_at")
    )
    spans = [
        (r[4], finished[r[0]])
        for r in rows
        if finished.get(r[0]) is not None and r[4].timestamp() >= since
    ]
    if not spans:
        return check, None
    first = min(created for created, _ in spans)
    last = max(done for _, done in spans)
    cascade = Cascade(
        seconds=(last - first).total_seconds(),
        finished_at=last.timestamp(),
        to_withdrawn_ms=sorted((done - created).total_seconds() * 1000 for created, done in spans),
    )
    return check, cascade


async def _simulator_effects(sim: ServerProcess) -> dict[str, int]:
    conn = RawConnection(sim.host, sim.port)
    try:
        status, body = await conn.send(make_req("GET", "/_sim/effects", {}))
    finally:
        await conn.close()
    return json.loads(body) if status == 200 else {}


def check_row(name: str, check: Check, target: str) -> Row:
    for problem in check.problems:
        progress(f"  {name}: CHECK FAILED: {problem}")
    return Row(name, float(check.verified), "orders", target=target, met=check.ok)


# --------------------------------------------------------------------------- the benchmark


# issue 20's targets: each write path's rate against the order(id:) read of the same run, and
# the withdraw cascade's rate against the withdraw requests'
MIN_RATIOS = {"pay": 0.6, "pay_from_stock": 0.5, "withdraw": 0.8}
MIN_CASCADE_RATIO = 0.5

Grow = Callable[[int], Awaitable[list[int]]]  # seeds that many more orders of a pool: their ids


def _write_rows(
    name: str, stats: LoadStats, baseline: LoadStats, write_floor: float | None
) -> list[Row]:
    label = name.removeprefix(f"{NAME}.")
    rate = compared(name, stats.rate, "req/s", baseline.rate, min_ratio=MIN_RATIOS.get(label))
    rows = [rate, *load_rows(name, stats, baseline)]
    if write_floor is not None:  # the same rate against the physical limit (bench/write_floor)
        rows.append(compared(f"{name}.vs_write_floor", stats.rate, "req/s", write_floor))
    for row in rows[1:]:
        row.target = TARGET
    return rows


def pool_for(rate: float, seconds: float, clients: int) -> int:
    """Orders a load of ``seconds`` at ``rate`` req/s takes, with ``HEADROOM``, plus the
    requests still in flight when it ends."""
    return math.ceil(rate * HEADROOM * seconds) + 2 * clients


async def _grow_to(workload: DistinctOrders, grow: Grow, needed: int) -> int:
    """Seed what the pool lacks for ``needed`` more requests; how many were added."""
    short = needed - workload.remaining
    if short <= 0:
        return 0
    workload.add(await grow(short))
    await _analyzed()
    return short


async def _analyzed() -> None:
    """PostgreSQL: statistics of the rows just seeded. Left to autoanalyze, the write paths'
    statements are planned on the statistics of before the seeding (thousands of orders
    fewer) until it runs, in the middle of the repetitions, and the rate falls from one
    repetition to the next."""
    connection = orm.connection_of(Order)
    if connection.capabilities.dialect == "postgres":
        await connection.execute_script("ANALYZE")


def _combined(reps: list[Repetition]) -> LoadStats:
    """The figures of repetitions measured in more than one go (medians, as ``measure``)."""
    return LoadStats(
        rate=statistics.median(r.rate for r in reps),
        p50_ms=statistics.median(r.p50_ms for r in reps),
        p99_ms=statistics.median(r.p99_ms for r in reps),
        errors=sum(r.errors for r in reps),
        repetitions=reps,
        samples_ms=[x for r in reps for x in r.samples_ms],
    )


async def measured_on_pool(
    ctx: BenchContext,
    server: ServerProcess,
    label: str,
    workload: DistinctOrders,
    grow: Grow,
    *,
    ceiling: float,
    read: Callable[[str], Awaitable[LoadStats]],
    between: Callable[[], Awaitable[object]] | None = None,
) -> tuple[LoadStats, LoadStats, float]:
    """One write path's figures, on a pool that never runs dry in what is reported; the read
    baseline measured right before its timed load (``read``, once: a repetition measured again
    on a larger pool keeps it); and when the load those figures come from started
    (``time.time()``).

    The warm-up runs alone first, on a pool for ``ceiling`` req/s (the read baseline's rate),
    grown and run again if it still ran dry. Its rate sizes the pool of the timed load (its own
    warm-up, after the pause, and the repetitions), seeded before it starts; ``between`` runs
    then (the withdraw path waits for the warm-up's cascade). A repetition during which the
    pool ran dry is set aside with those after it, the pool grows from the rate seen and they
    are measured again on a pool for twice the rate seen (at most ``MAX_ATTEMPTS`` times;
    after that the figures are those of the last attempt and the path's check fails)."""
    load, name = ctx.load, f"{NAME}.{label}"
    host, port = server.host, server.port
    warm_seconds = load.warmup if load.warmup > 0 else load.duration
    warm_load = replace(load, warmup=0.0, repetitions=1, duration=warm_seconds)
    rate = ceiling
    for _ in range(MAX_ATTEMPTS):
        await _grow_to(workload, grow, pool_for(rate, warm_seconds, load.clients))
        workload.measuring()
        warm = await measure(f"{name} warm-up", host, port, workload, warm_load)
        if workload.dry_since is None:
            break
        rate = max(rate, warm.rate) * 2
        progress(f"  {name}: the warm-up outran its pool; again on one for {rate:.0f} req/s")
    rate = warm.rate
    kept: list[Repetition] = []
    started = time.time()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        todo = load.repetitions - len(kept)
        added = await _grow_to(
            workload, grow, pool_for(rate, load.warmup + todo * load.duration, load.clients)
        )
        progress(
            f"  {name}: pool sized for {rate:.0f} req/s x {HEADROOM:g} over "
            f"{load.warmup + todo * load.duration:g} s: {workload.remaining:,} orders "
            f"({added:,} seeded now)"
        )
        if between is not None:
            await between()
        if attempt == 1:
            shares = _CpuShares({"server": server})
            adjacent = await read(f"before {label}")
            shares.report(f"{name}: the read before it", sum(r.ok for r in adjacent.repetitions))
        workload.measuring()
        sent_before, clock_before = len(workload.sent), time.perf_counter()
        started = time.time()
        shares = _CpuShares({"server": server})
        stats = await measure(name, host, port, workload, replace(load, repetitions=todo))
        shares.report(f"{name}: its load", sum(r.ok for r in stats.repetitions))
        dry_since = workload.dry_since
        clean = [r for r in stats.repetitions if dry_since is None or r.window[1] <= dry_since]
        if len(clean) == todo or attempt == MAX_ATTEMPTS:
            kept += stats.repetitions  # the last attempt's dry ones too: the check says so
            break
        kept += clean
        assert dry_since is not None
        # the rate the pool was taken at until it ran out, doubled: sized from a rate that was
        # too low once, the next pool must not be just large enough again
        seen = (len(workload.sent) - sent_before) / max(dry_since - clock_before, 1e-3)
        rate = 2 * max(rate, seen)
        progress(
            f"  {name}: the pool ran dry in repetition {len(kept) + 1}: "
            f"{todo - len(clean)} repetition(s) set aside, measured again on a larger pool"
        )
    progress(f"  {name}: {workload.summary()}")
    return _combined(kept), adjacent, started


async def run(ctx: BenchContext) -> list[Row]:
    server = await ctx.app_server()
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = simulator_server(ctx, sim_port, callback_secret="unused-cancels-send-no-callback")
    async with bench_database(ctx):
        try:
            await sim.start()
            started = time.perf_counter()
            payer, distributor = await seed_hot_paths(
                ctx, sim_url, f"http://{server.host}:{server.port}"
            )
            progress(
                f"  {NAME}: seeded the payer with {len(payer.pay_ids):,} orders and the "
                f"distributor in {time.perf_counter() - started:.1f} s (warehouse simulator at "
                f"{sim_url}); the pools grow from the rates measured"
            )
            baseline = await measure(
                f"{NAME} baseline (order read)",
                server.host,
                server.port,
                OrderReads(payer.token, payer.pay_ids[:READ_ORDERS]),
                ctx.load,
            )
            ctx.keep(f"{NAME}.baseline", NAME, "order(id:) read", baseline)
            reads = OrderReads(payer.token, payer.pay_ids[:READ_ORDERS])

            async def read(label: str) -> LoadStats:
                return await measure(
                    f"{NAME} baseline (order read) {label}",
                    server.host,
                    server.port,
                    reads,
                    ctx.load,
                )

            pay_rows, pay_checks = await payments_run(ctx, server, payer, baseline.rate, read)
            withdraw_rows, withdraw_check = await withdraw_run(
                ctx, server, sim, distributor, baseline.rate, read
            )
        finally:
            sim.stop()
    return [
        *pay_rows,
        *withdraw_rows,
        *pay_checks,
        check_row(f"{NAME}.withdraw.checked", withdraw_check, "all WITHDRAWN, refunded once"),
    ]


async def payments_run(
    ctx: BenchContext,
    server: ServerProcess,
    payer: Payer,
    ceiling: float,
    read: Callable[[str], Awaitable[LoadStats]],
) -> tuple[list[Row], list[Row]]:
    """Plain payments, then payments from stock: (figures, checks). ``ceiling``: the first
    read's rate, which sizes the warm-up pools."""
    pay = DistinctOrders(
        payer.pay_ids, lambda oid: graphql_req(payer.token, PAY, {"o": [gid("Order", oid)]}), _paid
    )
    stats, adjacent, _ = await measured_on_pool(
        ctx, server, "pay", pay, payer.add_pay, ceiling=ceiling, read=read
    )
    ctx.keep(f"{NAME}.pay", NAME, "pay", stats)
    rows = _write_rows(f"{NAME}.pay", stats, adjacent, ctx.write_floor)
    pay_check = await check_payments(
        pay,
        buyer_id=payer.buyer_id,
        prefix=PAY_PREFIX,
        wallet_id=payer.wallet_id,
        charged=UNIT_PRICE + FREIGHT,
    )
    warehouse = gid("CloudWarehouse", payer.warehouse_id)
    from_stock = DistinctOrders(
        payer.stock_ids,
        lambda oid: graphql_req(
            payer.token, PAY_FROM_STOCK, {"o": [gid("Order", oid)], "w": warehouse}
        ),
        _paid,
    )
    stats, adjacent, _ = await measured_on_pool(
        ctx,
        server,
        "pay_from_stock",
        from_stock,
        payer.add_stock,
        ceiling=ceiling,
        read=read,
    )
    ctx.keep(f"{NAME}.pay_from_stock", NAME, "pay_from_stock", stats)
    rows += _write_rows(f"{NAME}.pay_from_stock", stats, adjacent, ctx.write_floor)
    stock_check = await check_payments(
        from_stock,
        buyer_id=payer.buyer_id,
        prefix=STOCK_PREFIX,
        wallet_id=payer.wallet_id,
        charged=FREIGHT,
        stock_item_id=payer.stock_item_id,
    )
    return rows, [
        check_row(f"{NAME}.pay.checked", pay_check, "paid once, wallet = ledger"),
        check_row(f"{NAME}.pay_from_stock.checked", stock_check, "paid once, stock = ledger"),
    ]


async def withdraw_run(
    ctx: BenchContext,
    server: ServerProcess,
    sim: ServerProcess,
    distributor: Distributor,
    ceiling: float,
    read: Callable[[str], Awaitable[LoadStats]],
) -> tuple[list[Row], Check]:
    """Withdraw requests, then the wait for every one to reach WITHDRAWN: (figures, check).
    The timed load starts once the warm-up's withdrawals are WITHDRAWN, so the cascade
    measured is its own."""
    withdraw = DistinctOrders(
        distributor.order_ids,
        lambda oid: graphql_req(distributor.token, WITHDRAW, {"o": gid("Order", oid)}),
        _withdrawing,
    )
    stats, adjacent, started = await measured_on_pool(
        ctx,
        server,
        "withdraw",
        withdraw,
        distributor.add,
        ceiling=ceiling,
        read=read,
        between=lambda: wait_withdrawn(distributor.buyer_id),
    )
    ctx.keep(f"{NAME}.withdraw", NAME, "withdraw", stats)
    load_ended = time.time()
    drain = _CpuShares({"server": server, "simulator": sim})
    settled = await wait_withdrawn(distributor.buyer_id)
    drain.report(f"{NAME}.withdraw: after the load, until every withdrawal was WITHDRAWN")
    check, cascade = await check_withdrawals(
        withdraw, distributor, sim, settled=settled, since=started
    )
    rows = _write_rows(f"{NAME}.withdraw", stats, adjacent, ctx.write_floor)
    if cascade is not None:
        rows += _cascade_rows(cascade, stats, load_ended)
    return rows, check


def _cascade_rows(cascade: Cascade, requests: LoadStats, load_ended: float) -> list[Row]:
    done = len(cascade.to_withdrawn_ms)
    progress(
        f"  {NAME}.withdraw: cascade: {done} WITHDRAWN in {cascade.seconds:.2f} s, the last "
        f"{max(0.0, cascade.finished_at - load_ended):.2f} s after the load ended"
    )
    rate = compared(
        f"{NAME}.withdraw.cascade_rate",
        done / cascade.seconds if cascade.seconds > 0 else math.nan,
        "withdrawals/s",
        requests.rate,
        min_ratio=MIN_CASCADE_RATIO,
    )
    p50, p99 = (percentile(cascade.to_withdrawn_ms, q) for q in (50, 99))
    return [
        Row(f"{NAME}.withdraw.cascade", cascade.seconds, "s", target=TARGET),
        rate,
        Row(f"{NAME}.withdraw.to_withdrawn.p50", p50, "ms", target=TARGET),
        Row(f"{NAME}.withdraw.to_withdrawn.p99", p99, "ms", target=TARGET),
    ]
