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
  payment refunded). Beside the request throughput: the cascade, from the first withdrawal
  created to the last cancel task finished (server timestamps), the withdrawals it completed
  per second over that span (ratio to the request rate: at least 1 means the background work
  keeps up with the requests), and each withdrawal's time from request to WITHDRAWN.

Baseline, measured in the same run with the same clients: ``order(id:)`` as the paying buyer,
cycling over the orders of the payment pool, selecting what the mutations return (id, status,
paid amount), with an ``extensions`` member so that the response cache never answers it: the
same HTTP, authentication, GraphQL and database path and the same answer size, without a
write. Each ratio is write req/s ÷ read req/s: the share of the read throughput a
write request reaches (1.0: a write costs no more than reading the order). The issue gives no
target: the rows say ``report``.

Data: organisations, catalogue, wallets, partnership and third-party warehouse through the
domain layer in this process; the order pools set-based (``bulk_create``) in the shape the
domain gives them (paid orders with their PAYMENT ledger entries, pushed orders with their
warehouse record and the order created at the simulator through ``WarehouseClient``). A pool
holds ``POOL_RATE`` req/s over the whole load (warm-up included); if a run outgrows it the
workload sends refused requests, counted as errors, and the check says so.

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
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bench.common import (
    LOADGEN_CORE,
    PYTHON,
    LoadOptions,
    LoadStats,
    RawConnection,
    Req,
    Row,
    ServerProcess,
    allow_local_simulators,
    compared,
    free_port,
    load_rows,
    make_req,
    measure,
    percentile,
    progress,
)
from bench.context import BenchContext
from bench.seed import ADDRESS, buyer_with_token, owner_viewer
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
POOL_RATE = 400  # req/s a pool of orders is sized for, over warm-up and repetitions
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
    *, prefix: str, buyer_id: int, cat: Catalogue, count: int, paid: bool = False
) -> list[int]:
    """``count`` manual orders of one line (the catalogue's SKU, quantity 1), numbered
    ``prefix`` + 8 digits: AWAITING_PAYMENT, or with ``paid`` AWAITING_SHIPPING as a payment
    leaves them (amounts, unit price, timeline). Ids in number order."""
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
    for first in range(0, count, BATCH):
        numbers = [f"{prefix}{i:08d}" for i in range(first, min(first + BATCH, count))]
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


@dataclass(frozen=True)
class Payer:
    """The paying buyer: one wallet, one stock item, two pools of AWAITING_PAYMENT orders."""

    buyer_id: int
    token: str
    wallet_id: int
    pay_ids: list[int]
    stock_ids: list[int]
    warehouse_id: int
    stock_item_id: int


@dataclass(frozen=True)
class Distributor:
    """The withdrawing distributor: its wallet, paid orders pushed to the simulator's warehouse
    and that third-party warehouse."""

    buyer_id: int
    token: str
    wallet_id: int
    order_ids: list[int]
    third_party_warehouse_id: int


def pool_size(load: LoadOptions) -> int:
    seconds = load.warmup + load.repetitions * load.duration
    return math.ceil(POOL_RATE * seconds) + 2 * load.clients


async def seed_payer(cat: Catalogue, pool: int) -> Payer:
    """The paying buyer: wallet funded for both pools, stock of ``pool`` units in a cloud
    warehouse, and the two pools of AWAITING_PAYMENT orders."""
    payer, token = await buyer_with_token("Hot payer", "payer@hot.bench.test")
    warehouse, _ = await stock.create_cloud_warehouse(
        viewer=cat.supplier, name="Hot cloud warehouse", address=ADDRESS
    )
    item = await StockItem.create(
        buyer_id=payer.organisation_id,
        warehouse_id=warehouse.id,
        sku_id=cat.sku.id,
        on_hand=pool,
        available=pool,
    )
    await StockMovement.create(
        stock_item_id=item.id, kind=MovementKind.RECEIVED, on_hand_delta=pool, reason="bench"
    )
    pay_ids = await bulk_orders(
        prefix=PAY_PREFIX, buyer_id=payer.organisation_id, cat=cat, count=pool
    )
    stock_ids = await bulk_orders(
        prefix=STOCK_PREFIX, buyer_id=payer.organisation_id, cat=cat, count=pool
    )
    # after the orders: a supplier tops up only buyers it trades with
    need = pool * (UNIT_PRICE + FREIGHT) + pool * FREIGHT
    wallet = await payments.top_up(
        viewer=cat.supplier,
        buyer_id=payer.organisation_id,
        amount=need + Decimal("100.00"),
        currency=cat.sku.currency,
    )
    return Payer(
        buyer_id=payer.organisation_id,
        token=token,
        wallet_id=wallet.id,
        pay_ids=pay_ids,
        stock_ids=stock_ids,
        warehouse_id=warehouse.id,
        stock_item_id=item.id,
    )


async def seed_distributor(cat: Catalogue, pool: int, sim_url: str, app_url: str) -> Distributor:
    """A partnered distributor whose warehouse is run by the simulator, with ``pool`` paid
    orders pushed there (created at the simulator, then recorded PUSHED)."""
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
        viewer=cat.supplier, provider="SimWMS", name="Sim", api_url=sim_url, api_key=WAREHOUSE_KEY
    )
    third_party_warehouse = authorised.third_party_warehouse
    await partnerships.select_distribution_warehouse(
        viewer=cat.supplier,
        partnership_id=accepted.id,
        warehouse_id=accepted.warehouse_id,
        third_party_warehouse_id=third_party_warehouse.id,
    )
    price = UNIT_PRICE + FREIGHT
    wallet = await payments.top_up(
        viewer=cat.supplier,
        buyer_id=distributor.organisation_id,
        amount=pool * price,
        currency=cat.sku.currency,
    )
    ids = await bulk_orders(
        prefix=WITHDRAW_PREFIX, buyer_id=distributor.organisation_id, cat=cat, count=pool, paid=True
    )
    for first in range(0, len(ids), BATCH):
        batch = ids[first : first + BATCH]
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
    await Wallet.filter(id=wallet.id).update(balance_cents=0)  # the top-up, all spent

    started = time.perf_counter()
    pushed = await _push_to_simulator(
        ids, base_url=sim_url, callback=callback_url(app_url, third_party_warehouse.id)
    )
    took = time.perf_counter() - started
    progress(f"  {NAME}: {len(ids):,} orders created at the simulator in {took:.1f} s")
    now = datetime.now(UTC)
    for first in range(0, len(ids), BATCH):
        await WarehouseOrder.bulk_create(
            [
                WarehouseOrder(
                    order_id=oid,
                    supplier_id=cat.supplier.organisation_id,
                    third_party_warehouse_id=third_party_warehouse.id,
                    reference=str(oid),
                    push_status=PushStatus.PUSHED,
                    warehouse_order_id=pushed[oid],
                    warehouse_status="RECEIVED",
                    pushed_at=now,
                    checked_at=now,
                )
                for oid in ids[first : first + BATCH]
            ]
        )
    return Distributor(distributor.organisation_id, token, wallet.id, ids, third_party_warehouse.id)


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
    pool = pool_size(ctx.load)
    cat = await supplier_catalogue("Hot supplier", "supplier@hot.bench.test")
    return await seed_payer(cat, pool), await seed_distributor(cat, pool, sim_url, app_url)


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
    counts an answer as a success when ``accept`` approves its ``data``. Once the pool is used
    up it sends a request for order 0, which the server refuses (counted in ``dry``)."""

    def __init__(
        self,
        order_ids: Sequence[int],
        build: Callable[[int], Req],
        accept: Callable[[dict[str, Any]], bool],
    ) -> None:
        self._next = iter(order_ids)
        self.build, self.accept = build, accept
        self.order_of: dict[Req, int] = {}
        self.sent: list[int] = []
        self.succeeded: list[int] = []
        self.refused: dict[int, str] = {}
        self.dry = 0
        self._dry_req = build(0)

    def next_request(self) -> Req:
        order_id = next(self._next, None)
        if order_id is None:
            self.dry += 1
            return self._dry_req
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
            f"{len(self.sent)} sent, {len(self.succeeded)} accepted, {len(self.refused)} "
            f"refused, {self.unanswered} unanswered"
        )
        if self.refused:
            text += f" (first refusal: {next(iter(self.refused.values()))})"
        if self.dry:
            text += f"; POOL USED UP: {self.dry} requests beyond it (raise POOL_RATE)"
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


@dataclass
class Cascade:
    seconds: float  # first withdrawal created → last cancel task finished
    finished_at: float  # the last one, epoch seconds
    to_withdrawn_ms: list[float]  # per withdrawal, sorted


async def check_withdrawals(
    workload: DistinctOrders, data: Distributor, sim: ServerProcess, *, settled: bool
) -> tuple[Check, Cascade | None]:
    """Every accepted withdraw has one withdrawal, WITHDRAWN; exactly those orders are
    CANCELLED, refunded once and WITHDRAWN at the warehouse record; the simulator cancelled as
    many; the wallet equals its ledger. Also the cascade's timing."""
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
    spans = [(r[4], finished[r[0]]) for r in rows if finished.get(r[0]) is not None]
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


# issue 20's targets: each write path's rate against the order(id:) read of the same run
MIN_RATIOS = {"pay": 0.6, "pay_from_stock": 0.5, "withdraw": 0.8}


def _write_rows(
    name: str, stats: LoadStats, baseline: LoadStats, write_floor: float | None
) -> list[Row]:
    label = name.removeprefix(f"{NAME}.")
    rate = compared(name, stats.rate, "req/s", baseline.rate, min_ratio=MIN_RATIOS.get(label))
    latencies = load_rows(name, stats, baseline)
    for row in latencies:
        row.target = TARGET
    rows = [rate, *latencies]
    if write_floor is not None:  # the same rate against the physical limit (bench/write_floor)
        rows.append(compared(f"{name}.vs_write_floor", stats.rate, "req/s", write_floor))
    return rows


async def _run_writes(
    ctx: BenchContext, server: ServerProcess, label: str, workload: DistinctOrders
) -> LoadStats:
    stats = await measure(f"{NAME}.{label}", server.host, server.port, workload, ctx.load)
    progress(f"  {NAME}.{label}: {workload.summary()}")
    ctx.keep(f"{NAME}.{label}", NAME, label, stats)
    return stats


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
                f"  {NAME}: seeded 3 pools of {len(payer.pay_ids):,} orders in "
                f"{time.perf_counter() - started:.1f} s (warehouse simulator at {sim_url})"
            )
            baseline = await measure(
                f"{NAME} baseline (order read)",
                server.host,
                server.port,
                OrderReads(payer.token, payer.pay_ids[:1_000]),
                ctx.load,
            )
            ctx.keep(f"{NAME}.baseline", NAME, "order(id:) read", baseline)
            pay_rows, pay_checks = await payments_run(ctx, server, payer, baseline)
            withdraw_rows, withdraw_check = await withdraw_run(
                ctx, server, sim, distributor, baseline
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
    ctx: BenchContext, server: ServerProcess, payer: Payer, baseline: LoadStats
) -> tuple[list[Row], list[Row]]:
    """Plain payments, then payments from stock: (figures, checks)."""
    pay = DistinctOrders(
        payer.pay_ids, lambda oid: graphql_req(payer.token, PAY, {"o": [gid("Order", oid)]}), _paid
    )
    stats = await _run_writes(ctx, server, "pay", pay)
    rows = _write_rows(f"{NAME}.pay", stats, baseline, ctx.write_floor)
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
    stats = await _run_writes(ctx, server, "pay_from_stock", from_stock)
    rows += _write_rows(f"{NAME}.pay_from_stock", stats, baseline, ctx.write_floor)
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
    baseline: LoadStats,
) -> tuple[list[Row], Check]:
    """Withdraw requests, then the wait for every one to reach WITHDRAWN: (figures, check)."""
    withdraw = DistinctOrders(
        distributor.order_ids,
        lambda oid: graphql_req(distributor.token, WITHDRAW, {"o": gid("Order", oid)}),
        _withdrawing,
    )
    stats = await _run_writes(ctx, server, "withdraw", withdraw)
    load_ended = time.time()
    settled = await wait_withdrawn(distributor.buyer_id)
    check, cascade = await check_withdrawals(withdraw, distributor, sim, settled=settled)
    rows = _write_rows(f"{NAME}.withdraw", stats, baseline, ctx.write_floor)
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
    )
    rate.target = TARGET
    p50, p99 = (percentile(cascade.to_withdrawn_ms, q) for q in (50, 99))
    return [
        Row(f"{NAME}.withdraw.cascade", cascade.seconds, "s", target=TARGET),
        rate,
        Row(f"{NAME}.withdraw.to_withdrawn.p50", p50, "ms", target=TARGET),
        Row(f"{NAME}.withdraw.to_withdrawn.p99", p99, "ms", target=TARGET),
    ]
