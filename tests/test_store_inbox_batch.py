"""Store webhooks taken in by the batch: one transaction for many rows, each row failing alone.

The inbox worker claims many rows and takes their orders in together
(``domain.orders.intake.ingest_store_orders``: facts read in bulk, each order decided alone, the
new orders written in a few multi-row statements). These tests run a batch with every kind of
row in it, a batch whose write fails, and two workers at once, on the run's engine.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from tortoise.fields import BigIntField, CharField, DatetimeField, DecimalField, IntField, JSONField
from tortoise.fields.data import CharEnumFieldInstance

from compat import tortoise as orm
from domain.access import Viewer
from domain.catalogue import commands as catalogue
from domain.catalogue import links as connections
from domain.catalogue.models import Sku
from domain.events.models import Event
from domain.orders import intake
from domain.orders.models import (
    InboxState,
    LineSource,
    Order,
    OrderLine,
    OrderStatus,
    OrderTransition,
    WebhookReceipt,
)
from domain.organisations import commands as organisations
from domain.organisations.models import OrganisationKind, Role
from domain.persistence.dialects import calls, engine
from domain.persistence.inserts import layout
from domain.stores import inbox as store_inbox
from domain.stores.models import Store, StorePlatform, StoreProduct, StoreVariant
from integrations.stores.inbox import InboxSettings, StoreInboxWorker
from integrations.stores.protocol import parse_order
from tests.support.server import RunningServer

PRODUCT = "1"  # the store product whose two variants are connected to the supplier's SKUs
CONNECTED = ("11", "12")
ADDRESS = {"name": "Ada", "address1": "1 Rue", "city": "Paris", "country_code": "FR"}


@dataclass(frozen=True)
class Shop:
    """A buyer's store whose product ``PRODUCT`` is connected, variant by variant, to a
    supplier's SKUs (``skus[i]`` for ``CONNECTED[i]``)."""

    store: Store
    supplier_id: int
    method_id: int
    skus: tuple[Sku, ...]


def _owner(organisation: Any, user: Any) -> Viewer:
    return Viewer(
        user_id=user.id,
        organisation_id=organisation.id,
        organisation_kind=organisation.kind,
        role=Role.OWNER,
        token_id=0,
    )


async def _shop() -> Shop:
    tag = uuid.uuid4().hex[:10]
    supplier, supplier_owner = await organisations.create_organisation(
        name=f"Batch supplier {tag}",
        kind=OrganisationKind.SUPPLIER,
        owner_email=f"s{tag}@example.test",
        owner_name="S",
    )
    staff = _owner(supplier, supplier_owner)
    product = await catalogue.create_product(
        viewer=staff,
        title="Tee",
        skus=[
            catalogue.SkuSpec(f"T{tag}-{size}", {"size": size}, 200, Decimal("5.00"))
            for size in ("S", "M")
        ],
    )
    skus = tuple(await Sku.filter(product_id=product.id).order_by("id"))
    method = await catalogue.create_logistics_method(
        viewer=staff,
        name="Air",
        min_days=3,
        max_days=7,
        rules=[catalogue.FreightRuleSpec("*", 500, Decimal("3.00"), 500, Decimal("1.00"))],
    )
    buyer, buyer_owner = await organisations.create_organisation(
        name=f"Batch buyer {tag}",
        kind=OrganisationKind.BUYER,
        owner_email=f"b{tag}@example.test",
        owner_name="B",
    )
    store = await Store.create(
        buyer_id=buyer.id,
        name=f"Batch shop {tag}",
        platform=StorePlatform.OTHER,
        api_url="http://127.0.0.1:9/",
        access_token="token",
        webhook_secret="secret",
    )
    store_product = await StoreProduct.create(store_id=store.id, external_id=PRODUCT, title="Tee")
    variants = [
        await StoreVariant.create(
            store_id=store.id,
            product_id=store_product.id,
            external_id=external,
            title=f"Tee {size}",
            attributes={"size": size},
        )
        for external, size in zip(CONNECTED, ("S", "M"), strict=True)
    ]
    await connections.connect_product(
        viewer=_owner(buyer, buyer_owner),
        store_product_id=store_product.id,
        product_id=product.id,
        logistics_method_id=method.id,
        links=[connections.VariantLink(v.id, s.id) for v, s in zip(variants, skus, strict=True)],
    )
    return Shop(store, supplier.id, method.id, skus)


def _body(order_id: str, *lines: tuple[str, str], line_id: str | None = None) -> bytes:
    """A store's order: ``lines`` as (product id, variant id)."""
    order = {
        "id": order_id,
        "name": f"#{order_id}",
        "currency": "USD",
        "created_at": datetime.now(UTC).isoformat(),
        "customer": {"first_name": "Ada", "last_name": "Lovelace"},
        "shipping_address": ADDRESS,
        "line_items": [
            {
                "id": line_id or f"{order_id}{k}",
                "product_id": product,
                "variant_id": variant,
                "title": f"Tee {variant}",
                "quantity": 1 + k,
                "price": "12.50",
            }
            for k, (product, variant) in enumerate(lines)
        ],
    }
    return json.dumps(order).encode()


@pytest.fixture
async def quiet(server: RunningServer) -> AsyncIterator[RunningServer]:
    """The server with its own inbox worker stopped: the tests' workers take the rows. Rows the
    test leaves to be retried are removed after it (other tests wait for an empty inbox)."""
    last = await WebhookReceipt.all().order_by("-id").first()
    worker = server.app.state.store_inbox
    await worker.stop()
    yield server
    await WebhookReceipt.filter(id__gt=last.id if last else 0, state=InboxState.PENDING).delete()
    await worker.start()


async def _receipts(store: Store) -> dict[str, WebhookReceipt]:
    return {r.event_id: r for r in await WebhookReceipt.filter(store_id=store.id)}


async def _orders(store: Store, store_order_id: str) -> list[Order]:
    return list(await Order.filter(store_id=store.id, store_order_id=store_order_id))


async def _created_events(order: Order) -> int:
    return await Event.filter(
        type="ORDER_CREATED", subject_type="Order", subject_id=str(order.id)
    ).count()


async def test_a_mixed_batch_takes_each_row_in_once_in_one_write(quiet: RunningServer) -> None:
    shop = await _shop()
    store = shop.store
    taken = await intake.ingest_store_order(
        store=store, data=parse_order(json.loads(_body("100", (PRODUCT, CONNECTED[0]))))
    )
    assert taken.created and taken.order.status is OrderStatus.AWAITING_PAYMENT
    deliveries = {
        "good-201": _body("201", (PRODUCT, CONNECTED[0]), (PRODUCT, CONNECTED[1])),
        "good-202": _body("202", (PRODUCT, CONNECTED[1])),
        "malformed": b'{"id": 5, "name": "#5"}',
        "unconnected-203": _body("203", (PRODUCT, CONNECTED[0]), ("2", "21")),
        "again-201": _body("201", (PRODUCT, CONNECTED[0]), (PRODUCT, CONNECTED[1])),
        "taken-100": _body("100", (PRODUCT, CONNECTED[0])),
    }
    for event_id, body in deliveries.items():
        assert await store_inbox.accept(store_id=store.id, event_id=event_id, body=body)
    assert not await store_inbox.accept(  # a redelivered event: no second row
        store_id=store.id, event_id="good-201", body=deliveries["good-201"]
    )
    inserts = calls["intake.insert_orders", engine()]

    worker = StoreInboxWorker(InboxSettings(batch=50))
    assert await worker.run_due() == len(deliveries)

    assert calls["intake.insert_orders", engine()] == inserts + 1  # every new order at once
    rows = await _receipts(store)
    assert {e: r.state for e, r in rows.items()} == {
        **{e: InboxState.DONE for e in deliveries},
        "malformed": InboxState.FAILED,
    }
    assert rows["malformed"].last_error.startswith("malformed body: ")
    assert all(r.attempts == 1 and r.lease_owner is None for r in rows.values())

    [first] = await _orders(store, "201")
    assert rows["good-201"].order_id == rows["again-201"].order_id == first.id
    assert rows["taken-100"].order_id == taken.order.id
    assert first.status is OrderStatus.AWAITING_PAYMENT
    assert (first.supplier_id, first.logistics_method_id, first.currency) == (
        shop.supplier_id,
        shop.method_id,
        "USD",
    )
    lines = await OrderLine.filter(order_id=first.id).order_by("id")
    assert [(ln.sku_id, ln.source, ln.quantity) for ln in lines] == [
        (shop.skus[0].id, LineSource.PRODUCT_LINK, 1),
        (shop.skus[1].id, LineSource.PRODUCT_LINK, 2),
    ]

    [unrecognised] = await _orders(store, "203")
    assert rows["unconnected-203"].order_id == unrecognised.id
    assert unrecognised.status is OrderStatus.UNRECOGNIZED
    assert unrecognised.supplier_id == shop.supplier_id  # from its connected line
    lines = await OrderLine.filter(order_id=unrecognised.id).order_by("id")
    assert [ln.source for ln in lines] == [LineSource.PRODUCT_LINK, LineSource.UNMAPPED]
    new_variant = await StoreVariant.get(store_id=store.id, external_id="21")
    assert lines[1].store_variant_id == new_variant.id and lines[1].sku_id is None
    assert (await StoreProduct.get(id=new_variant.product_id)).external_id == "2"

    for store_order_id in ("100", "201", "202", "203"):
        [order] = await _orders(store, store_order_id)
        assert await _created_events(order) == 1, store_order_id
        [entry] = await OrderTransition.filter(order_id=order.id)
        assert (entry.from_status, entry.to_status) == (None, order.status)
        assert entry.reason == f"synced from store {store.name}"


async def test_a_row_whose_write_fails_fails_alone(
    quiet: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = await _shop()
    store = shop.store
    real = intake.insert_order_details

    async def insert(lines: Any, transitions: Any, events: Any) -> None:
        if any(line["external_id"] == "3020" for line in lines):
            raise ValueError("the database refused this order")
        await real(lines, transitions, events)

    monkeypatch.setattr(intake, "insert_order_details", insert)
    deliveries = {
        "a": _body("301", (PRODUCT, CONNECTED[0])),
        "poisoned": _body("302", (PRODUCT, CONNECTED[0])),
        "b": _body("303", (PRODUCT, CONNECTED[1])),
    }
    for event_id, body in deliveries.items():
        assert await store_inbox.accept(store_id=store.id, event_id=event_id, body=body)
    inserts = calls["intake.insert_orders", engine()]

    worker = StoreInboxWorker(InboxSettings(batch=50, retry_delay=60))
    assert await worker.run_due() == 3

    assert calls["intake.insert_orders", engine()] == inserts + 4  # the batch, then one by one
    rows = await _receipts(store)
    assert rows["a"].state == rows["b"].state == InboxState.DONE
    poisoned = rows["poisoned"]
    assert poisoned.state == InboxState.PENDING and poisoned.attempts == 1  # retried later
    assert poisoned.last_error == "the database refused this order"
    assert poisoned.lease_owner is None
    assert poisoned.due_at is not None and poisoned.due_at > datetime.now(UTC)
    assert await _orders(store, "302") == []  # nothing of it was written: not even the order
    for store_order_id in ("301", "303"):
        [order] = await _orders(store, store_order_id)
        assert await _created_events(order) == 1
        assert await OrderLine.filter(order_id=order.id).count() == 1


async def test_an_order_the_database_refuses_fails_alone(quiet: RunningServer) -> None:
    if engine() != "postgres":
        pytest.skip("SQLite stores an integer of any size")
    shop = await _shop()
    store = shop.store
    body = json.loads(_body("311", (PRODUCT, CONNECTED[0])))
    body["line_items"][0]["quantity"] = 3_000_000_000  # beyond the quantity column
    assert await store_inbox.accept(
        store_id=store.id, event_id="huge", body=json.dumps(body).encode()
    )
    assert await store_inbox.accept(
        store_id=store.id, event_id="fine", body=_body("312", (PRODUCT, CONNECTED[1]))
    )

    worker = StoreInboxWorker(InboxSettings(batch=50, retry_delay=60))
    assert await worker.run_due() == 2

    rows = await _receipts(store)
    assert rows["fine"].state == InboxState.DONE
    assert rows["huge"].state == InboxState.PENDING and "int32 range" in (
        rows["huge"].last_error or ""
    )
    assert await _orders(store, "311") == []


async def test_an_order_whose_rules_fail_fails_alone_and_the_batch_is_written(
    quiet: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = await _shop()
    store = shop.store
    real = intake.decide_store_order

    def decide(store: Store, data: Any, facts: intake.StoreOrderFacts) -> Any:
        if data.external_id == "402":
            raise RuntimeError("a rule failed")
        return real(store, data, facts)

    monkeypatch.setattr(intake, "decide_store_order", decide)
    for n in (401, 402, 403):
        body = _body(str(n), (PRODUCT, CONNECTED[0]))
        assert await store_inbox.accept(store_id=store.id, event_id=f"e{n}", body=body)
    inserts = calls["intake.insert_orders", engine()]

    worker = StoreInboxWorker(InboxSettings(batch=50, max_attempts=1))
    assert await worker.run_due() == 3

    assert calls["intake.insert_orders", engine()] == inserts + 1  # no row-by-row fallback
    rows = await _receipts(store)
    assert (rows["e401"].state, rows["e403"].state) == (InboxState.DONE, InboxState.DONE)
    assert rows["e402"].state == InboxState.FAILED and rows["e402"].last_error == "a rule failed"
    assert await _orders(store, "402") == []


async def test_two_workers_take_each_row_in_once(quiet: RunningServer) -> None:
    shop = await _shop()
    store = shop.store
    for n in range(40):
        # every fifth store order is delivered twice, under two event ids
        body = _body(str(500 + n - n % 5 // 4), (PRODUCT, CONNECTED[n % 2]))
        assert await store_inbox.accept(store_id=store.id, event_id=f"w{n}", body=body)
    workers = [StoreInboxWorker(InboxSettings(batch=7)) for _ in range(2)]

    async def drain(worker: StoreInboxWorker) -> int:
        taken = total = 1
        while taken:
            taken = await worker.run_due()
            total += taken
        return total - 1

    taken = await asyncio.gather(*(drain(w) for w in workers))
    assert sum(taken) == 40  # each row leased once

    rows = list((await _receipts(store)).values())
    assert {r.state for r in rows} == {InboxState.DONE}
    assert all(r.attempts == 1 for r in rows)
    orders = await Order.filter(store_id=store.id)
    assert len(orders) == 32 == len({r.order_id for r in rows})
    assert {o.id for o in orders} == {r.order_id for r in rows}
    for order in orders:
        assert await _created_events(order) == 1


async def test_concurrent_batches_of_one_store_order_make_it_once(quiet: RunningServer) -> None:
    shop = await _shop()
    data = parse_order(json.loads(_body("600", (PRODUCT, CONNECTED[0]), ("3", "31"))))
    outcomes = await asyncio.gather(
        *(intake.ingest_store_orders([(shop.store, data), (shop.store, data)]) for _ in range(4))
    )
    ingested = [o for batch in outcomes for o in batch]
    assert all(isinstance(o, intake.Ingested) for o in ingested)
    [order] = await _orders(shop.store, "600")
    assert {o.order.id for o in ingested if isinstance(o, intake.Ingested)} == {order.id}
    assert sum(o.created for o in ingested if isinstance(o, intake.Ingested)) == 1
    assert await _created_events(order) == 1
    assert await StoreVariant.filter(store_id=shop.store.id, external_id="31").count() == 1


async def test_rows_are_written_as_the_orm_writes_them(server: RunningServer) -> None:
    """``domain.persistence.inserts`` converts each value as ``to_db_value`` does (its cheap
    cases included) and fills what a row leaves out as a new instance has it."""
    now = datetime.now(UTC)
    for model in (Order, OrderLine, OrderTransition):
        written = {column.attribute: column for column in layout(model).columns}
        fresh = model()
        for _, _, attribute, field in orm.columns_by_kind(model):
            if field.generated:
                assert attribute not in written
                continue
            column = written[attribute]
            for value in _samples(field, now):
                assert _outcome(column.write, value) == _outcome(
                    lambda v, f=field: f.to_db_value(v, None), value
                ), (model.__name__, attribute, value)
            if not (getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)):
                default = getattr(fresh, attribute)
                assert column.default(now) == default, (model.__name__, attribute)
            else:
                assert column.default(now) == now


def _samples(field: Any, now: datetime) -> list[Any]:
    if isinstance(field, CharEnumFieldInstance):
        return [*field.enum_type, *(member.value for member in field.enum_type), "NOT A MEMBER"]
    if isinstance(field, CharField):
        return ["", "abc", "x" * field.max_length, "x" * (field.max_length + 1), 12]
    if isinstance(field, IntField | BigIntField):
        return [0, 7, -3, 2**40, True, "12"]
    if isinstance(field, DecimalField):
        return [Decimal("0"), Decimal("12.345"), 3]
    if isinstance(field, DatetimeField):
        return [now]
    if isinstance(field, JSONField):
        return [{}, {"city": "Paris"}, ["a"]]
    raise AssertionError(f"no samples for {type(field).__name__}: add some")


def _outcome(convert: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("value", convert(value))
    except Exception as error:
        return ("error", type(error).__name__)
