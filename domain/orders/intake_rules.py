"""The rules of taking a store order in, apart from the statements that write it: pure Python
over facts read for a whole batch at once (``domain.orders.intake.ingest_store_orders`` reads
them, asks ``decide_store_order`` about each order and writes the decisions together). Nothing
here awaits or touches the database, so a rule that fails for one order fails that order only,
and the single-order and the batch path cannot drift apart.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from domain.catalogue.models import Sku
from domain.events import NewEvent
from domain.events.catalogue import OrderCreated
from domain.orders.models import LineSource, Order, OrderKind, OrderStatus
from domain.stores.data import SHIPPING_ADDRESS_KEYS, StoreOrderData
from domain.stores.models import Store

ADDRESS_FIELDS = SHIPPING_ADDRESS_KEYS  # what an order's shipping address keeps


def new_order_number() -> str:
    return "SG" + secrets.token_hex(5).upper()


StoreOrderKey = tuple[int, str]  # (store id, store order id): an order is taken in once per key
VariantKey = tuple[int, str]  # (store id, external variant id)


@dataclass(frozen=True)
class StoreOrderFacts:
    """What the rules of intake read, for a whole batch of store orders at once."""

    taken_in: dict[StoreOrderKey, Order]  # orders already taken in
    variants: dict[VariantKey, int]  # store variant ids (every line's, once created)
    mappings: dict[int, tuple[Sku, int]]  # store variant id → (SKU, logistics method id)


@dataclass(frozen=True)
class NewVariant:
    """A store variant a line names that the store does not have yet: created (with its store
    product when that is new too) before the order is decided."""

    store_id: int
    external_product_id: str
    external_variant_id: str
    title: str


class StoreOrderRow(TypedDict):
    """What the rules set on a new store order (every other column takes its default)."""

    number: str
    kind: OrderKind
    status: OrderStatus
    buyer_id: int
    supplier_id: int | None
    store_id: int
    store_order_id: str
    store_order_number: str
    currency: str | None
    customer_name: str
    shipping_address: dict[str, str]
    logistics_method_id: int | None


class StoreOrderLineRow(TypedDict):
    """What the rules set on a line of a new store order (its order's id is added once the
    order is inserted)."""

    external_id: str
    store_variant_id: int
    title: str
    quantity: int
    sku_id: int | None
    source: LineSource


class TimelineRow(TypedDict):
    order_id: int
    from_status: OrderStatus | None
    to_status: OrderStatus
    actor_user_id: int | None
    reason: str


@dataclass(frozen=True)
class NewStoreOrder:
    """The decision to take a store order in: the order and its lines as rows (plain data, not
    model instances: building those was most of the cost of a batch), and the reason its
    timeline gives."""

    order: StoreOrderRow
    lines: tuple[StoreOrderLineRow, ...]
    reason: str

    @property
    def key(self) -> StoreOrderKey:
        return (self.order["store_id"], self.order["store_order_id"])


def store_order_key(store: Store, data: StoreOrderData) -> StoreOrderKey:
    return (store.id, data.external_id)


def key_of(order: Order) -> StoreOrderKey:
    """A store order's key (a store order has both parts)."""
    return (order.store_id or 0, order.store_order_id or "")


def variants_to_create(
    entries: Sequence[tuple[Store, StoreOrderData]], known: Mapping[VariantKey, int]
) -> list[NewVariant]:
    """The store variants the lines of ``entries`` name and ``known`` lacks, each once (the
    first line naming it gives its title and store product)."""
    missing: dict[VariantKey, NewVariant] = {}
    for store, data in entries:
        for line in data.lines:
            key = (store.id, line.external_variant_id)
            if key not in known and key not in missing:
                missing[key] = NewVariant(
                    store.id, line.external_product_id, line.external_variant_id, line.title[:300]
                )
    return list(missing.values())


def decide_store_order(
    store: Store, data: StoreOrderData, facts: StoreOrderFacts
) -> Order | NewStoreOrder:
    """The order already taken in for this store order, or the order to create: lines whose
    store variant is connected (an active product link) get its SKU, all from one supplier (the
    lowest id among the lines' suppliers; a line of another supplier stays unmapped); the
    order is AWAITING_PAYMENT when every line has a SKU, else UNRECOGNIZED."""
    existing = facts.taken_in.get(store_order_key(store, data))
    if existing is not None:
        return existing
    variants = [facts.variants[(store.id, line.external_variant_id)] for line in data.lines]
    mapped = [facts.mappings.get(variant) for variant in variants]
    suppliers = {found[0].supplier_id for found in mapped if found is not None}
    supplier_id = min(suppliers) if suppliers else None
    first = next((found for found in mapped if found is not None), None)
    lines: list[StoreOrderLineRow] = []
    for line, variant, found in zip(data.lines, variants, mapped, strict=True):
        sku = found[0] if found is not None else None
        if sku is not None and sku.supplier_id != supplier_id:
            sku = None
        lines.append(
            {
                "external_id": line.external_id,
                "store_variant_id": variant,
                "title": line.title[:300],
                "quantity": line.quantity,
                "sku_id": sku.id if sku else None,
                "source": LineSource.PRODUCT_LINK if sku else LineSource.UNMAPPED,
            }
        )
    recognised = bool(lines) and all(line["sku_id"] is not None for line in lines)
    order: StoreOrderRow = {
        "number": new_order_number(),
        "kind": OrderKind.STORE,
        "status": OrderStatus.AWAITING_PAYMENT if recognised else OrderStatus.UNRECOGNIZED,
        "buyer_id": store.buyer_id,
        "supplier_id": supplier_id,
        "store_id": store.id,
        "store_order_id": data.external_id,
        "store_order_number": data.number[:64],
        "currency": first[0].currency if first else None,
        "customer_name": data.customer_name[:200],
        "shipping_address": {
            k: str(data.shipping_address.get(k, "") or "") for k in ADDRESS_FIELDS
        },
        "logistics_method_id": first[1] if first else None,
    }
    return NewStoreOrder(order, tuple(lines), reason=f"synced from store {store.name}")


def creation_records(
    order: Order, *, actor_user_id: int | None, reason: str
) -> tuple[TimelineRow, NewEvent]:
    """What every new order (its id known) records: its first timeline entry and
    ``ORDER_CREATED``."""
    entry: TimelineRow = {
        "order_id": order.id,
        "from_status": None,
        "to_status": order.status,
        "actor_user_id": actor_user_id,
        "reason": reason,
    }
    return entry, OrderCreated.of(order, actor_user_id=actor_user_id)
