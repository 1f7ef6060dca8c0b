"""Data for ``make bench``, written in the bench process (Tortoise initialised by the caller).

Through the domain layer: a supplier with a product of three SKUs and a logistics method; the
orders buyer (token, store, two manual orders); the webhook buyer (token, store whose product is
connected to the supplier's SKUs, so webhook orders are recognised); the live buyer (token,
``LIVE_ORDERS`` unpaid manual orders that ``live_subscribers`` cancels, one per status change,
so its subscribers see ``orderStatusChanged``). For volume the orders buyer's remaining orders
are bulk-inserted (``bulk_create``) in the shape the domain gives a shipped store order: three
lines with SKUs, carrier and tracking number, three timeline entries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.common import allow_local_simulators
from domain.access import Viewer
from domain.catalogue import commands as catalogue
from domain.catalogue import links as connections
from domain.db import transaction
from domain.models import Organisation, Sku
from domain.orders import intake as order_intake
from domain.orders.models import (
    LineSource,
    Order,
    OrderKind,
    OrderLine,
    OrderStatus,
    OrderTransition,
    TrackingSync,
)
from domain.organisations import commands as organisations
from domain.organisations import tokens
from domain.organisations.models import OrganisationKind, Role, User
from domain.stores import commands as store_commands
from domain.stores.data import StoreProductData, StoreVariantData
from domain.stores.models import StorePlatform, StoreProduct, StoreVariant

ADDRESS = {
    "name": "Ada Lovelace",
    "address1": "1 High St",
    "city": "London",
    "zip": "N1 1AA",
    "country_code": "GB",
    "phone": "+44 20 0000 0000",
}
SIZES = ("S", "M", "L")
STORE_PRODUCT_ID = "9001"
STORE_VARIANT_IDS = ("9101", "9102", "9103")
BATCH = 2_000
LIVE_ORDERS = 64
SHIPPED_WITHIN = timedelta(days=9)  # SHIPPED_NOT_DELIVERED: 10 days (domain/sla/rules.py)


@dataclass(frozen=True)
class Seeded:
    orders_buyer_id: int
    orders_token: str
    orders: int
    webhook_buyer_id: int
    webhook_token: str
    webhook_store_id: int
    webhook_secret: str
    seconds: float
    live_token: str = ""
    live_order_ids: tuple[int, ...] = ()


def owner_viewer(org: Organisation, user: User) -> Viewer:
    return Viewer(
        user_id=user.id,
        organisation_id=org.id,
        organisation_kind=org.kind,
        role=Role.OWNER,
        token_id=0,
    )


async def buyer_with_token(name: str, email: str) -> tuple[Viewer, str]:
    """A buyer organisation, its owner and an API token (the secret) for the owner."""
    org, user = await organisations.create_organisation(
        name=name, kind=OrganisationKind.BUYER, owner_email=email, owner_name=name
    )
    _, secret = await tokens.issue_token(user=user, name="bench")
    return owner_viewer(org, user), secret


async def seed(orders: int) -> Seeded:
    started = time.perf_counter()
    allow_local_simulators()  # the stores registered below name 127.0.0.1
    supplier, supplier_user = await organisations.create_organisation(
        name="Bench supplier",
        kind=OrganisationKind.SUPPLIER,
        owner_email="supplier@bench.test",
        owner_name="Supplier",
    )
    sv = owner_viewer(supplier, supplier_user)
    product = await catalogue.create_product(
        viewer=sv,
        title="Bench tee",
        skus=[
            catalogue.SkuSpec(
                code=f"TEE-{size}",
                attributes={"size": size},
                weight_grams=200,
                unit_price=Decimal("5.00"),
            )
            for size in SIZES
        ],
    )
    skus = list(await Sku.filter(product_id=product.id).order_by("id"))
    method = await catalogue.create_logistics_method(
        viewer=sv,
        name="Air",
        min_days=3,
        max_days=7,
        rules=[catalogue.FreightRuleSpec("*", 500, Decimal("3.00"), 500, Decimal("1.00"))],
    )

    # the buyer whose orders page is read
    bv, orders_token = await buyer_with_token("Bench buyer", "buyer@bench.test")
    store, _ = await store_commands.connect_store(
        viewer=bv,
        name="Bench shop",
        platform=StorePlatform.SHOPIFY,
        api_url="http://127.0.0.1:9/shop",
        access_token="bench-access-token",
    )
    made = 0
    for _ in range(min(2, orders)):
        await order_intake.create_manual_order(
            viewer=bv,
            lines=[order_intake.ManualLine(s.id, 1) for s in skus],
            shipping_address=ADDRESS,
            logistics_method_id=method.id,
        )
        made += 1
    await _bulk_orders(
        buyer_id=bv.organisation_id,
        supplier_id=supplier.id,
        store_id=store.id,
        method_id=method.id,
        skus=skus,
        count=orders - made,
    )

    # the buyer whose store posts webhooks: its product is connected, so orders are recognised
    wv, webhook_token = await buyer_with_token("Bench webhook buyer", "webhooks@bench.test")
    webhook_store, webhook_secret = await store_commands.connect_store(
        viewer=wv,
        name="Bench webhook shop",
        platform=StorePlatform.SHOPIFY,
        api_url="http://127.0.0.1:9/shop",
        access_token="bench-access-token",
    )
    await store_commands.upsert_store_products(
        store=webhook_store,
        products=[
            StoreProductData(
                external_id=STORE_PRODUCT_ID,
                title="Tee",
                variants=tuple(
                    StoreVariantData(
                        external_id=vid,
                        title=f"Tee {size}",
                        sku=None,
                        attributes={"size": size},
                        price=Decimal("12.50"),
                    )
                    for vid, size in zip(STORE_VARIANT_IDS, SIZES, strict=True)
                ),
            )
        ],
    )
    store_product = await StoreProduct.get(store_id=webhook_store.id, external_id=STORE_PRODUCT_ID)
    variants = {v.external_id: v.id for v in await StoreVariant.filter(product_id=store_product.id)}
    await connections.connect_product(
        viewer=wv,
        store_product_id=store_product.id,
        product_id=product.id,
        logistics_method_id=method.id,
        links=[
            connections.VariantLink(variants[vid], sku.id)
            for vid, sku in zip(STORE_VARIANT_IDS, skus, strict=True)
        ],
    )

    # the buyer whose unpaid orders are cancelled while its subscribers watch
    lv, live_token = await buyer_with_token("Bench live buyer", "live@bench.test")
    live_order_ids = []
    for _ in range(LIVE_ORDERS):
        order = await order_intake.create_manual_order(
            viewer=lv,
            lines=[order_intake.ManualLine(skus[0].id, 1)],
            shipping_address=ADDRESS,
            logistics_method_id=method.id,
        )
        live_order_ids.append(order.id)
    return Seeded(
        orders_buyer_id=bv.organisation_id,
        orders_token=orders_token,
        orders=orders,
        webhook_buyer_id=wv.organisation_id,
        webhook_token=webhook_token,
        webhook_store_id=webhook_store.id,
        webhook_secret=webhook_secret,
        seconds=time.perf_counter() - started,
        live_token=live_token,
        live_order_ids=tuple(live_order_ids),
    )


async def _bulk_orders(
    *, buyer_id: int, supplier_id: int, store_id: int, method_id: int, skus: list[Sku], count: int
) -> None:
    """``count`` shipped store orders, in batches of ``BATCH`` (one transaction each), shipped
    over the last ``SHIPPED_WITHIN`` (within the SHIPPED_NOT_DELIVERED deadline: orders shipped
    long ago and never delivered would each open a service-level breach, and the SLA worker
    would spend the whole run opening them, 500 per sweep, in every figure's background)."""
    step = SHIPPED_WITHIN / max(count, 1)
    start = datetime.now(UTC) - SHIPPED_WITHIN
    newest = await Order.filter(buyer_id=buyer_id).order_by("-id").first()
    last_id = newest.id if newest else 0
    for first in range(0, count, BATCH):
        numbers = range(first, min(first + BATCH, count))
        async with transaction():
            await Order.bulk_create(
                [
                    Order(
                        number=f"BN{i:010d}",
                        kind=OrderKind.STORE,
                        status=OrderStatus.SHIPPED,
                        buyer_id=buyer_id,
                        supplier_id=supplier_id,
                        store_id=store_id,
                        store_order_id=str(500_000 + i),
                        store_order_number=f"#{500_000 + i}",
                        currency="USD",
                        customer_name=ADDRESS["name"],
                        shipping_address=ADDRESS,
                        logistics_method_id=method_id,
                        goods_amount=Decimal("30.00"),
                        freight_amount=Decimal("4.00"),
                        paid_amount=Decimal("34.00"),
                        carrier="UPS",
                        tracking_number=f"1ZBENCH{i:010d}",
                        tracking_sync=TrackingSync.SYNCED,
                        version=3,
                        paid_at=start + step * i + timedelta(seconds=10),
                        shipped_at=start + step * i + timedelta(seconds=20),
                    )
                    for i in numbers
                ]
            )
            ids = await (
                Order.filter(buyer_id=buyer_id, id__gt=last_id)
                .order_by("id")
                .values_list("id", flat=True)
            )
            assert len(ids) == len(numbers), (len(ids), len(numbers))
            last_id = ids[-1]
            await OrderLine.bulk_create(
                [
                    OrderLine(
                        order_id=oid,
                        title=f"Bench tee ({sku.code})",
                        quantity=1 + n,
                        sku_id=sku.id,
                        source=LineSource.PRODUCT_LINK,
                        unit_price=Decimal("5.00"),
                    )
                    for oid in ids
                    for n, sku in enumerate(skus)
                ]
            )
            steps = (
                (None, OrderStatus.AWAITING_PAYMENT, "synced from store Bench shop"),
                (OrderStatus.AWAITING_PAYMENT, OrderStatus.AWAITING_SHIPPING, "paid"),
                (OrderStatus.AWAITING_SHIPPING, OrderStatus.SHIPPED, "shipped"),
            )
            await OrderTransition.bulk_create(
                [
                    OrderTransition(
                        order_id=oid,
                        from_status=before,
                        to_status=after,
                        reason=reason,
                        created_at=start + step * i + timedelta(seconds=10 * k),
                    )
                    for oid, i in zip(ids, numbers, strict=True)
                    for k, (before, after, reason) in enumerate(steps)
                ]
            )
