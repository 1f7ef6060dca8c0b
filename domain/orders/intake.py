"""Orders coming in: store orders (webhook, inbox worker or sync) and manual orders placed by the
buyer. Store connections and synced store products are ``domain.stores.commands``.

Store orders are taken in by the batch (``ingest_store_orders``; ``ingest_store_order`` is a batch
of one), in three steps that keep the rules (``domain.orders.intake_rules``) apart from the
statements (``domain.persistence.intake``):

1. read what the rules need for the whole batch at once (``StoreOrderFacts``: the orders already
   taken in, the store variants, their SKUs through active product links), creating the store
   products and variants the lines name that do not exist yet;
2. decide each order alone (``decide_store_order``), so a rule that fails for one order fails
   that order only;
3. write every new order with its lines, first timeline entry and ``ORDER_CREATED`` event in one
   transaction of two multi-row statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from domain import visibility
from domain.access import Viewer, require_buyer
from domain.catalogue.links import active_mappings
from domain.catalogue.models import LogisticsMethod, ProductStatus
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, ValidationErrors, not_found
from domain.events import NewEvent, record_event, recorded
from domain.events.catalogue import OrderCreated
from domain.limits import MAX_ORDER_LINES
from domain.orders.intake_rules import (
    ADDRESS_FIELDS,
    NewStoreOrder,
    NewVariant,
    StoreOrderFacts,
    StoreOrderKey,
    TimelineRow,
    VariantKey,
    creation_records,
    decide_store_order,
    key_of,
    new_order_number,
    store_order_key,
    variants_to_create,
)
from domain.orders.models import (
    LineSource,
    Order,
    OrderKind,
    OrderLine,
    OrderStatus,
    OrderTransition,
)
from domain.persistence.intake import insert_order_details, insert_orders
from domain.persistence.rows import fetch_query
from domain.stores.data import StoreOrderData
from domain.stores.models import Store, StoreProduct, StoreVariant
from domain.validation import country, positive_int


@dataclass(frozen=True)
class Ingested:
    order: Order
    created: bool


INTAKE_RACES = 3  # tries of a batch of one that lost a unique key (an order number drawn twice)


# --------------------------------------------------------------------------- reading and writing


async def ingest_store_order(*, store: Store, data: StoreOrderData) -> Ingested:
    """Take a store order in, once: a second delivery (same event id, or same store order id)
    changes nothing. A batch of one (``ingest_store_orders``), whose failure is raised; tried
    again when it lost a unique key it cannot skip (a new order's number drawn twice)."""
    for attempt in range(1, INTAKE_RACES + 1):
        try:
            [outcome] = await ingest_store_orders([(store, data)])
        except IntegrityError:
            if attempt == INTAKE_RACES:
                raise
            continue
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    raise AssertionError("unreachable")


async def ingest_store_orders(
    entries: Sequence[tuple[Store, StoreOrderData]],
) -> list[Ingested | Exception]:
    """Take store orders in, each once, in one transaction: an outcome per entry, in order.

    An entry whose rules fail gets its exception and the others go on; an order already taken
    in (before, by a concurrent instance, or by an earlier entry of the batch) is returned with
    ``created`` False and nothing new is written for it. A failure of the reads or of the
    write is raised: nothing of the batch is written then (its entries may be tried alone).
    """
    facts = await _read_facts(entries)
    outcomes: list[Ingested | Exception | None] = [None] * len(entries)
    first_of: dict[StoreOrderKey, int] = {}
    new: dict[StoreOrderKey, tuple[int, NewStoreOrder]] = {}
    for i, (store, data) in enumerate(entries):
        key = store_order_key(store, data)
        if key in first_of:
            continue  # the same store order again: the first entry's outcome, below
        first_of[key] = i
        try:
            decision = decide_store_order(store, data, facts)
        except Exception as error:  # this order's rules failed: it fails alone
            outcomes[i] = error
            continue
        if isinstance(decision, Order):
            outcomes[i] = Ingested(decision, created=False)
        else:
            new[key] = (i, decision)
    if new:
        created = await _write(new)
        raced = [key for key in new if key not in created]
        taken = await _taken_in(raced) if raced else {}
        for key, (i, _) in new.items():
            if key in created:
                outcomes[i] = Ingested(created[key], created=True)
            elif key in taken:  # a concurrent intake inserted it first
                outcomes[i] = Ingested(taken[key], created=False)
            else:
                outcomes[i] = LookupError(f"store order {key[1]} was neither inserted nor found")
    result: list[Ingested | Exception] = []
    for i, (store, data) in enumerate(entries):
        first = outcomes[first_of[store_order_key(store, data)]]
        outcome = outcomes[i]
        if outcome is None:  # a repeat of an earlier entry: its order, not created again
            outcome = Ingested(first.order, created=False) if isinstance(first, Ingested) else first
        assert outcome is not None, "every store order has an outcome"
        result.append(outcome)
    return result


async def _read_facts(entries: Sequence[tuple[Store, StoreOrderData]]) -> StoreOrderFacts:
    """The facts of ``entries``: a few statements whatever their number."""
    taken_in = await _taken_in([store_order_key(store, data) for store, data in entries])
    pending = [(s, d) for s, d in entries if store_order_key(s, d) not in taken_in]
    wanted = {
        (store.id, line.external_variant_id) for store, data in pending for line in data.lines
    }
    variants = await _variants(wanted)
    missing = variants_to_create(pending, variants)
    if missing:
        await _create_variants(missing)
        variants = await _variants(wanted)
    return StoreOrderFacts(taken_in, variants, await active_mappings(variants.values()))


async def _taken_in(keys: Sequence[StoreOrderKey]) -> dict[StoreOrderKey, Order]:
    if not keys:
        return {}
    wanted = set(keys)
    found = await fetch_query(
        Order.filter(
            store_id__in=sorted({store for store, _ in wanted}),
            store_order_id__in=sorted({external for _, external in wanted}),
        )
    )
    orders = {key_of(order): order for order in found}
    return {key: order for key, order in orders.items() if key in wanted}


async def _variants(keys: set[VariantKey]) -> dict[VariantKey, int]:
    if not keys:
        return {}
    rows = await StoreVariant.filter(
        store_id__in=sorted({store for store, _ in keys}),
        external_id__in=sorted({external for _, external in keys}),
    ).values_list("id", "store_id", "external_id")
    return {(store, external): pk for pk, store, external in rows if (store, external) in keys}


async def _create_variants(missing: Sequence[NewVariant]) -> None:
    """Create ``missing`` store variants, with their store products where those are new too
    (a product or variant a concurrent intake creates first is left as it made it)."""
    products: dict[tuple[int, str], str] = {}
    for new in missing:
        products.setdefault((new.store_id, new.external_product_id), new.title)
    await StoreProduct.bulk_create(
        [
            StoreProduct(store_id=store, external_id=external, title=title)
            for (store, external), title in sorted(products.items())
        ],
        ignore_conflicts=True,
    )
    rows = await StoreProduct.filter(
        store_id__in=sorted({store for store, _ in products}),
        external_id__in=sorted({external for _, external in products}),
    ).values_list("id", "store_id", "external_id")
    product_ids = {(store, external): pk for pk, store, external in rows}
    await StoreVariant.bulk_create(
        [
            StoreVariant(
                store_id=new.store_id,
                product_id=product_ids[(new.store_id, new.external_product_id)],
                external_id=new.external_variant_id,
                title=new.title,
                attributes={},
            )
            for new in sorted(missing, key=lambda v: (v.store_id, v.external_variant_id))
        ],
        ignore_conflicts=True,
    )


async def _write(
    new: Mapping[StoreOrderKey, tuple[int, NewStoreOrder]],
) -> dict[StoreOrderKey, Order]:
    """Insert the decided orders (by key, so that concurrent batches lock alike) with their
    lines, first timeline entries and events; the orders inserted, by key. An order a
    concurrent instance inserted first is skipped, and so are its lines and event."""
    decisions = [decision for _, (_, decision) in sorted(new.items())]
    async with transaction():
        inserted = await insert_orders([decision.order for decision in decisions])
        created = {key_of(order): order for order in inserted}
        lines: list[dict[str, object]] = []
        entries: list[TimelineRow] = []
        events: list[NewEvent] = []
        for decision in decisions:
            order = created.get(decision.key)
            if order is None:
                continue
            lines += ({**line, "order_id": order.id} for line in decision.lines)
            entry, event = creation_records(order, actor_user_id=None, reason=decision.reason)
            entries.append(entry)
            events.append(event)
        if events:
            await insert_order_details(lines, entries, events)
            for event in events:
                recorded(event)
    return created


async def _created(order: Order, *, actor_user_id: int | None, reason: str) -> None:
    entry, _ = creation_records(order, actor_user_id=actor_user_id, reason=reason)
    await OrderTransition.create(**entry)
    await record_event(OrderCreated.of(order, actor_user_id=actor_user_id))


@dataclass(frozen=True)
class ManualLine:
    sku_id: int
    quantity: int


def clean_address(address: dict[str, str], *, field: str = "shippingAddress") -> dict[str, str]:
    cleaned = {k: str(address.get(k, "") or "").strip()[:200] for k in ADDRESS_FIELDS}
    errors = []
    for key in ("name", "address1", "city", "country_code"):
        if not cleaned[key]:
            errors.append(
                DomainError(ErrorCode.REQUIRED, f"{key} is required.", field=f"{field}.{key}")
            )
    if errors:
        raise ValidationErrors(errors)
    cleaned["country_code"] = country(cleaned["country_code"], field=f"{field}.countryCode")
    return cleaned


async def create_manual_order(
    *,
    viewer: Viewer,
    lines: list[ManualLine],
    shipping_address: dict[str, str],
    logistics_method_id: int | None = None,
    kind: OrderKind = OrderKind.MANUAL,
    cloud_warehouse_id: int | None = None,
    cloud_warehouse_supplier_id: int | None = None,
) -> Order:
    """A buyer's own order from SKUs (samples, offline sales): starts AWAITING_PAYMENT."""
    require_buyer(viewer)
    if not lines:
        raise DomainError(ErrorCode.REQUIRED, "An order needs at least one line.", field="lines")
    if len(lines) > MAX_ORDER_LINES:
        raise DomainError(
            ErrorCode.TOO_MANY, f"At most {MAX_ORDER_LINES} lines per order.", field="lines"
        )
    for i, line in enumerate(lines):
        positive_int(line.quantity, field=f"lines.{i}.quantity", maximum=100_000)
    address = clean_address(shipping_address)
    # the SKUs the buyer may see (``domain.visibility``): one of a discontinued product is not
    # found, word for word as an id nobody has (it would tell its code and that it exists)
    skus = {
        s.id: s
        for s in await visibility.skus(viewer)
        .filter(id__in=[ln.sku_id for ln in lines])
        .select_related("product")
    }
    for i, line in enumerate(lines):
        sku = skus.get(line.sku_id)
        if sku is None:
            raise not_found("SKU", field=f"lines.{i}.skuId")
        if not sku.is_active or sku.product.status is not ProductStatus.ACTIVE:
            raise DomainError(
                ErrorCode.INACTIVE, f"SKU {sku.code} is inactive.", field=f"lines.{i}.skuId"
            )
    suppliers = {s.supplier_id for s in skus.values()}
    if len(suppliers) != 1:
        raise DomainError(
            ErrorCode.INVALID, "All lines of an order come from one supplier.", field="lines"
        )
    supplier_id = suppliers.pop()
    if cloud_warehouse_supplier_id is not None and cloud_warehouse_supplier_id != supplier_id:
        raise DomainError(
            ErrorCode.INVALID,
            "Stock goes into a cloud warehouse of the SKUs' supplier.",
            field="warehouseId",
        )
    if logistics_method_id is not None and not await LogisticsMethod.exists(
        id=logistics_method_id, supplier_id=supplier_id, is_active=True
    ):
        raise not_found("Logistics method of this supplier", field="logisticsMethodId")
    async with transaction():
        first = skus[lines[0].sku_id]
        order = await Order.create(
            number=new_order_number(),
            kind=kind,
            status=OrderStatus.AWAITING_PAYMENT,
            buyer_id=viewer.organisation_id,
            supplier_id=supplier_id,
            currency=first.currency,
            customer_name=address["name"],
            shipping_address=address,
            logistics_method_id=logistics_method_id,
            cloud_warehouse_id=cloud_warehouse_id,
        )
        await OrderLine.bulk_create(
            [
                OrderLine(
                    order_id=order.id,
                    title=f"{skus[ln.sku_id].product.title} ({skus[ln.sku_id].code})"[:300],
                    quantity=ln.quantity,
                    sku_id=ln.sku_id,
                    source=LineSource.DIRECT,
                )
                for ln in lines
            ]
        )
        await _created(order, actor_user_id=viewer.user_id, reason="placed by the buyer")
    return order
