"""Orders coming in: store orders (webhook or sync) and manual orders placed by the buyer.
Store connections and synced store products are ``domain.stores.commands``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from domain import visibility
from domain.access import Viewer, require_buyer
from domain.catalogue.links import active_mappings
from domain.catalogue.models import LogisticsMethod, ProductStatus
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, ValidationErrors, not_found
from domain.events import record_event
from domain.events.catalogue import OrderCreated
from domain.limits import MAX_ORDER_LINES
from domain.orders.models import (
    LineSource,
    Order,
    OrderKind,
    OrderLine,
    OrderStatus,
    OrderTransition,
)
from domain.stores.data import StoreOrderData
from domain.stores.models import Store, StoreProduct, StoreVariant
from domain.validation import country, positive_int

ADDRESS_FIELDS = (
    "name",
    "address1",
    "address2",
    "city",
    "province",
    "zip",
    "country_code",
    "phone",
)


def new_order_number() -> str:
    return "SG" + secrets.token_hex(5).upper()


async def _variant_for(
    store: Store, external_product_id: str, external_variant_id: str, title: str
) -> StoreVariant:
    variant = await StoreVariant.get_or_none(store_id=store.id, external_id=external_variant_id)
    if variant is not None:
        return variant
    product, _ = await StoreProduct.get_or_create(
        store_id=store.id, external_id=external_product_id, defaults={"title": title[:300]}
    )
    return await StoreVariant.create(
        store_id=store.id,
        product_id=product.id,
        external_id=external_variant_id,
        title=title[:300],
        attributes={},
    )


INTAKE_RACES = 3  # intakes lost to a concurrent one creating the same variant, then give up


@dataclass(frozen=True)
class Ingested:
    order: Order
    created: bool


async def ingest_store_order(*, store: Store, data: StoreOrderData) -> Ingested:
    """Take a store order in, once: a second delivery (same event id, or same store order id)
    changes nothing. Lines whose store variant is connected get their SKU; the order is
    AWAITING_PAYMENT when all are, else UNRECOGNIZED."""
    for attempt in range(1, INTAKE_RACES + 1):
        try:
            return await _ingest(store=store, data=data)
        except IntegrityError:
            # a concurrent delivery of the same order won the race: it is there now
            existing = await Order.get_or_none(store_id=store.id, store_order_id=data.external_id)
            if existing is not None:
                return Ingested(existing, created=False)
            if attempt == INTAKE_RACES:
                raise
            # or a concurrent intake created the same store product or variant first: go again
    raise AssertionError("unreachable")


async def _ingest(*, store: Store, data: StoreOrderData) -> Ingested:
    async with transaction():
        existing = await Order.get_or_none(store_id=store.id, store_order_id=data.external_id)
        if existing is not None:
            return Ingested(existing, created=False)
        variants = [
            await _variant_for(
                store, line.external_product_id, line.external_variant_id, line.title
            )
            for line in data.lines
        ]
        mapping = await active_mappings(v.id for v in variants)
        suppliers = {mapping[v.id][0].supplier_id for v in variants if v.id in mapping}
        supplier_id = min(suppliers) if suppliers else None
        first = next((mapping[v.id] for v in variants if v.id in mapping), None)
        address = {k: str(data.shipping_address.get(k, "") or "") for k in ADDRESS_FIELDS}
        order = await Order.create(
            number=new_order_number(),
            kind=OrderKind.STORE,
            status=OrderStatus.UNRECOGNIZED,
            buyer_id=store.buyer_id,
            supplier_id=supplier_id,
            store_id=store.id,
            store_order_id=data.external_id,
            store_order_number=data.number[:64],
            currency=first[0].currency if first else None,
            customer_name=data.customer_name[:200],
            shipping_address=address,
            logistics_method_id=first[1] if first else None,
        )
        all_mapped = True
        for line, variant in zip(data.lines, variants, strict=True):
            sku_and_method = mapping.get(variant.id)
            sku = sku_and_method[0] if sku_and_method else None
            if sku is not None and sku.supplier_id != supplier_id:
                sku = None
            all_mapped = all_mapped and sku is not None
            await OrderLine.create(
                order_id=order.id,
                external_id=line.external_id,
                store_variant_id=variant.id,
                title=line.title[:300],
                quantity=line.quantity,
                sku_id=sku.id if sku else None,
                source=LineSource.PRODUCT_LINK if sku else LineSource.UNMAPPED,
            )
        if all_mapped and data.lines:
            order.status = OrderStatus.AWAITING_PAYMENT
            await order.save(update_fields=["status"])
        await _created(order, actor_user_id=None, reason=f"synced from store {store.name}")
    return Ingested(order, created=True)


async def _created(order: Order, *, actor_user_id: int | None, reason: str) -> None:
    await OrderTransition.create(
        order_id=order.id,
        from_status=None,
        to_status=order.status,
        actor_user_id=actor_user_id,
        reason=reason,
    )
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
