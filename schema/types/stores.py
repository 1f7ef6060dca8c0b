"""Connected stores, their products and variants, product links."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from domain import limits
from domain.stores import models as m
from domain.stores import queries as store_queries
from schema.global_ids import gid, key_of
from schema.types.errors import UserError
from schema.types.node import Node

StorePlatform = strawberry.enum(m.StorePlatform)
ProductLinkStatus = strawberry.enum(m.ProductLinkStatus, name="ProductLinkStatus")


@strawberry.type(description="A connected store. Its credentials are never returned.")
class Store(Node):
    name: str
    platform: StorePlatform
    last_synced_at: datetime | None
    created_at: datetime
    _api_url: strawberry.Private[str]
    _buyer_id: strawberry.Private[int]

    @strawberry.field(
        description="The store's backend address: shown to its buyer's ADMINs and OWNER only "
        "(it sits next to the store's credentials); null for everyone else."
    )
    def api_url(self, info: Info) -> str | None:
        viewer = info.context.viewer
        return (
            self._api_url if store_queries.shows_backend(viewer, buyer_id=self._buyer_id) else None
        )

    @classmethod
    def from_model(cls, s: m.Store) -> Store:
        return cls(
            id=gid("Store", s.id),
            name=s.name,
            platform=s.platform,
            last_synced_at=s.last_synced_at,
            created_at=s.created_at,
            _api_url=s.api_url,
            _buyer_id=s.buyer_id,
        )


@strawberry.type
class StoreVariant(Node):
    external_id: str
    title: str
    sku_code: str | None
    attributes: JSON

    @classmethod
    def from_model(cls, v: m.StoreVariant) -> StoreVariant:
        return cls(
            id=gid("StoreVariant", v.id),
            external_id=v.external_id,
            title=v.title,
            sku_code=v.sku_code,
            attributes=v.attributes,
        )


@strawberry.type(
    description="A store product linked to a supplier product it is fulfilled from, with the "
    "logistics method its orders ship by (made by `connectProduct`)."
)
class ProductLink(Node):
    store_product_id: strawberry.ID
    product_id: strawberry.ID
    logistics_method_id: strawberry.ID
    status: ProductLinkStatus
    stale_reason: str | None
    updated_at: datetime

    @classmethod
    def from_model(cls, c: m.ProductLink) -> ProductLink:
        return cls(
            id=gid("ProductLink", c.id),
            store_product_id=gid("StoreProduct", c.store_product_id),
            product_id=gid("Product", c.product_id),
            logistics_method_id=gid("LogisticsMethod", c.logistics_method_id),
            status=c.status,
            stale_reason=c.stale_reason,
            updated_at=c.updated_at,
        )


@strawberry.type
class StoreProduct(Node):
    store_id: strawberry.ID
    external_id: str
    title: str

    @classmethod
    def from_model(cls, p: m.StoreProduct) -> StoreProduct:
        return cls(
            id=gid("StoreProduct", p.id),
            store_id=gid("Store", p.store_id),
            external_id=p.external_id,
            title=p.title,
        )

    @strawberry.field(description=f"At most {limits.MAX_VARIANTS_PER_STORE_PRODUCT}.")
    async def variants(self, info: Info) -> list[StoreVariant]:
        rows = await info.context.loaders.variants_by_store_product.load(key_of(self.id))
        return [StoreVariant.from_model(v) for v in rows]

    @strawberry.field(
        description="The current (not disconnected) link to a supplier product, if any."
    )
    async def product_link(self, info: Info) -> ProductLink | None:
        rows = await info.context.loaders.links_by_store_product.load(key_of(self.id))
        return ProductLink.from_model(rows[0]) if rows else None


@strawberry.input
class ConnectStoreInput:
    name: str
    platform: StorePlatform
    api_url: str
    access_token: str
    webhook_secret: str | None = strawberry.field(
        default=None, description="The store's webhook signing secret; generated if omitted."
    )


@strawberry.type
class ConnectStorePayload:
    store: Store | None = None
    webhook_secret: str | None = strawberry.field(
        default=None, description="Shown only here: configure the store's webhooks with it."
    )
    webhook_url_path: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SyncStorePayload:
    store: Store | None = None
    products_synced: int = 0
    orders_created: int = 0
    orders_seen: int = 0
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class VariantLinkInput:
    store_variant_id: strawberry.ID
    sku_id: strawberry.ID


@strawberry.input
class ConnectProductInput:
    store_product_id: strawberry.ID
    product_id: strawberry.ID
    logistics_method_id: strawberry.ID
    variants: list[VariantLinkInput]


@strawberry.type
class ProductLinkPayload:
    product_link: ProductLink | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
