"""Connecting store products and order lines to supplier SKUs, and catching mapping drift."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from domain import limits, visibility
from domain.access import Viewer, require_buyer
from domain.catalogue.models import LogisticsMethod, ProductStatus, Sku
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import OrderUpdated, ProductLinkStale, ProductLinkUpdated
from domain.orders.access import order_of_buyer
from domain.orders.models import LineSource, Order, OrderLine, OrderStatus
from domain.orders.status import transition
from domain.stores.models import (
    ProductLink,
    ProductLinkStatus,
    StoreProduct,
    StoreVariant,
    VariantMapping,
)

UNPAID = (OrderStatus.UNRECOGNIZED, OrderStatus.AWAITING_PAYMENT)


@dataclass(frozen=True)
class VariantLink:
    store_variant_id: int
    sku_id: int


def attributes_match(variant: dict[str, str], sku: dict[str, str]) -> bool:
    """Every attribute the SKU has, the store variant has with the same value (any case)."""
    have = {k.lower(): str(v).strip().lower() for k, v in variant.items()}
    return all(have.get(k.lower()) == str(v).strip().lower() for k, v in sku.items())


async def active_mappings(store_variant_ids: Iterable[int]) -> dict[int, tuple[Sku, int]]:
    """store variant id -> (SKU, logistics method id) through ACTIVE product links."""
    ids = list(set(store_variant_ids))
    if not ids:
        return {}
    mappings = await VariantMapping.filter(
        store_variant_id__in=ids, product_link__status=ProductLinkStatus.ACTIVE
    ).select_related("product_link")
    skus = {s.id: s for s in await Sku.filter(id__in=[m.sku_id for m in mappings])}
    return {
        m.store_variant_id: (skus[m.sku_id], m.product_link.logistics_method_id) for m in mappings
    }


async def own_store_product(viewer: Viewer, store_product_id: int) -> StoreProduct:
    product = await StoreProduct.get_or_none(id=store_product_id).select_related("store")
    if product is None or product.store.buyer_id != viewer.organisation_id:
        raise not_found("Store product", field="storeProductId")
    return product


async def connect_product(
    *,
    viewer: Viewer,
    store_product_id: int,
    product_id: int,
    logistics_method_id: int,
    links: list[VariantLink],
) -> ProductLink:
    """Connect a store product to a supplier product, one SKU per store variant.

    Replaces an earlier link of the same store product. Every UNRECOGNIZED order that
    this completes moves to AWAITING_PAYMENT.
    """
    require_buyer(viewer)
    if not links:
        raise DomainError(ErrorCode.REQUIRED, "Map at least one variant.", field="variants")
    async with transaction():
        store_product = await own_store_product(viewer, store_product_id)
        # a product the buyer may see (``domain.visibility``: active ones); a discontinued one
        # is not found, word for word as an id nobody has
        product = await visibility.products(viewer).get_or_none(id=product_id)
        if product is None:
            raise not_found("Product", field="productId")
        method = await LogisticsMethod.get_or_none(
            id=logistics_method_id, supplier_id=product.supplier_id, is_active=True
        )
        if method is None:
            raise not_found("Logistics method of this supplier", field="logisticsMethodId")
        variants = {v.id: v for v in await StoreVariant.filter(product_id=store_product.id)}
        skus = {s.id: s for s in await Sku.filter(product_id=product.id)}
        seen: set[int] = set()
        for i, link in enumerate(links):
            path = f"variants.{i}"
            variant = variants.get(link.store_variant_id)
            if variant is None:
                raise not_found("Store variant of this product", field=f"{path}.storeVariantId")
            if variant.id in seen:
                raise DomainError(ErrorCode.INVALID, "Variant mapped twice.", field=path)
            seen.add(variant.id)
            sku = skus.get(link.sku_id)
            if sku is None:
                raise not_found("SKU of this product", field=f"{path}.skuId")
            if not sku.is_active:
                raise DomainError(
                    ErrorCode.INACTIVE, f"SKU {sku.code} is inactive.", field=f"{path}.skuId"
                )
            if not attributes_match(variant.attributes, sku.attributes):
                raise DomainError(
                    ErrorCode.ATTRIBUTES_MISMATCH,
                    f"Store variant {variant.title!r} ({variant.attributes}) does not match "
                    f"SKU {sku.code} ({sku.attributes}); use an order-level SKU link "
                    "or ask the supplier.",
                    field=f"{path}.skuId",
                )
        await limits.ensure_room(
            ProductLink.filter(store_product_id=store_product.id),
            limits.MAX_PRODUCT_LINKS_PER_STORE_PRODUCT,
            message=f"At most {limits.MAX_PRODUCT_LINKS_PER_STORE_PRODUCT} links per store "
            "product (disconnected ones included).",
            field="storeProductId",
            lock=StoreProduct.filter(id=store_product.id),
        )
        await ProductLink.filter(
            store_product_id=store_product.id, status__not=ProductLinkStatus.DISCONNECTED
        ).update(status=ProductLinkStatus.DISCONNECTED)
        product_link = await ProductLink.create(
            store_product_id=store_product.id,
            buyer_id=viewer.organisation_id,
            supplier_id=product.supplier_id,
            product_id=product.id,
            logistics_method_id=method.id,
        )
        await VariantMapping.bulk_create(
            [
                VariantMapping(
                    product_link_id=product_link.id,
                    store_variant_id=link.store_variant_id,
                    sku_id=link.sku_id,
                    sku_version=skus[link.sku_id].version,
                )
                for link in links
            ]
        )
        await recognise_orders(
            store_variant_ids=list(seen),
            buyer_id=viewer.organisation_id,
            actor_user_id=viewer.user_id,
        )
        await _connection_event(product_link, actor_user_id=viewer.user_id)
    return product_link


async def _connection_event(product_link: ProductLink, *, actor_user_id: int) -> None:
    await record_event(ProductLinkUpdated.of(product_link, actor_user_id=actor_user_id))


async def disconnect_product(*, viewer: Viewer, product_link_id: int) -> ProductLink:
    """Future orders of the store product are no longer mapped; existing orders keep theirs."""
    require_buyer(viewer)
    async with transaction():
        product_link = await ProductLink.get_or_none(
            id=product_link_id, buyer_id=viewer.organisation_id
        )
        if product_link is None:
            raise not_found("Product link", field="productLinkId")
        if product_link.status is ProductLinkStatus.DISCONNECTED:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION, "Already disconnected.", field="productLinkId"
            )
        product_link.status = ProductLinkStatus.DISCONNECTED
        await product_link.save(update_fields=["status", "updated_at"])
        await _connection_event(product_link, actor_user_id=viewer.user_id)
    return product_link


async def recognise_orders(
    *, store_variant_ids: list[int], buyer_id: int, actor_user_id: int | None
) -> list[Order]:
    """Map unmapped lines of the buyer's UNRECOGNIZED orders through active product links; an
    order whose every line is now mapped becomes AWAITING_PAYMENT (one event each)."""
    mapping = await active_mappings(store_variant_ids)
    if not mapping:
        return []
    lines = await OrderLine.filter(
        store_variant_id__in=list(mapping),
        source=LineSource.UNMAPPED,
        order__buyer_id=buyer_id,
        order__status=OrderStatus.UNRECOGNIZED,
    )
    order_ids = sorted({line.order_id for line in lines})
    recognised = []
    for order in await Order.filter(id__in=order_ids).order_by("id"):
        for line in (ln for ln in lines if ln.order_id == order.id):
            sku, method_id = mapping[line.store_variant_id]  # type: ignore[index]
            if order.supplier_id not in (None, sku.supplier_id):
                continue  # one supplier per order: this line needs another link
            order.supplier_id = sku.supplier_id
            order.currency = sku.currency
            order.logistics_method_id = order.logistics_method_id or method_id
            await OrderLine.filter(id=line.id).update(sku_id=sku.id, source=LineSource.PRODUCT_LINK)
        if await complete_if_mapped(order, actor_user_id=actor_user_id):
            recognised.append(order)
    return recognised


async def complete_if_mapped(
    order: Order, *, actor_user_id: int | None, previous_supplier_id: int | None = None
) -> bool:
    """After lines of ``order`` were connected (its supplier, currency and method set on the
    object): move an UNRECOGNIZED order whose lines all have SKUs to AWAITING_PAYMENT, else
    save those columns. ``previous_supplier_id``: the supplier the order had before, which
    no longer sees it if that changed."""
    changes = {
        "supplier_id": order.supplier_id,
        "currency": order.currency,
        "logistics_method_id": order.logistics_method_id,
    }
    unmapped = await OrderLine.filter(order_id=order.id, sku_id__isnull=True).exists()
    completed = not unmapped and order.status is OrderStatus.UNRECOGNIZED
    if completed:
        await transition(
            order,
            OrderStatus.AWAITING_PAYMENT,
            actor_user_id=actor_user_id,
            reason="every line is connected to a supplier SKU",
            changes=changes,
        )
    else:
        await Order.filter(id=order.id).update(**changes)
    event = OrderUpdated.of(
        order,
        change="LINES",
        actor_user_id=actor_user_id,
        parties_told=completed,  # a completion's status change told them
        previous_supplier_id=previous_supplier_id,
    )
    if event is not None:
        await record_event(event)
    return completed


async def connect_order_sku(*, viewer: Viewer, order_id: int, line_id: int, sku_id: int) -> Order:
    """An order-level SKU link: one line of one unpaid order, whatever its variants."""
    require_buyer(viewer)
    async with transaction():
        order = await order_of_buyer(viewer, order_id)
        if order.status not in UNPAID:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Order {order.number} is {order.status.value}: "
                "lines can only change before payment.",
                field="orderId",
            )
        line = await OrderLine.get_or_none(id=line_id, order_id=order.id)
        if line is None:
            raise not_found("Order line", field="lineId")
        sku = await visibility.skus(viewer).get_or_none(id=sku_id).select_related("product")
        if sku is None:  # a SKU of a discontinued product too: as an id nobody has
            raise not_found("SKU", field="skuId")
        if not sku.is_active or sku.product.status is not ProductStatus.ACTIVE:
            raise DomainError(ErrorCode.INACTIVE, f"SKU {sku.code} is inactive.", field="skuId")
        other_lines = (
            await OrderLine.filter(order_id=order.id, sku_id__isnull=False)
            .exclude(id=line.id)
            .count()
        )
        if order.supplier_id not in (None, sku.supplier_id) and other_lines:
            raise DomainError(
                ErrorCode.INVALID, "All lines of an order come from one supplier.", field="skuId"
            )
        await OrderLine.filter(id=line.id).update(sku_id=sku.id, source=LineSource.ORDER_SKU)
        previous_supplier_id = order.supplier_id
        order.supplier_id = sku.supplier_id
        order.currency = sku.currency
        if order.logistics_method_id is not None and not await LogisticsMethod.exists(
            id=order.logistics_method_id, supplier_id=sku.supplier_id
        ):
            order.logistics_method_id = None
        await complete_if_mapped(
            order, actor_user_id=viewer.user_id, previous_supplier_id=previous_supplier_id
        )
        await order.refresh_from_db()
    return order


async def mark_stale(*, sku_ids: list[int], reason: str, actor: Viewer) -> list[ProductLink]:
    """Mark ACTIVE product links using these SKUs STALE and tell each buyer which unpaid orders
    are affected (the buyer re-connects before paying)."""
    if not sku_ids:
        return []
    mappings = await VariantMapping.filter(
        sku_id__in=sku_ids, product_link__status=ProductLinkStatus.ACTIVE
    ).select_related("product_link")
    product_links = {m.product_link_id: m.product_link for m in mappings}
    for product_link in product_links.values():
        product_link.status = ProductLinkStatus.STALE
        product_link.stale_reason = reason[:500]
        await product_link.save(update_fields=["status", "stale_reason", "updated_at"])
        variant_ids = [m.store_variant_id for m in mappings if m.product_link_id == product_link.id]
        affected = (
            await Order.filter(
                buyer_id=product_link.buyer_id,
                status__in=UNPAID,
                lines__store_variant_id__in=variant_ids,
                lines__sku_id__in=sku_ids,
            )
            .distinct()
            .values_list("id", flat=True)
        )
        await record_event(
            ProductLinkStale.of(
                product_link, affected_order_ids=affected, actor_user_id=actor.user_id
            )
        )
    return list(product_links.values())
