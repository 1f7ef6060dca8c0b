"""Supplier catalogue: products, SKUs, price tiers, logistics methods."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from domain import limits
from domain.catalogue import models as m
from schema.global_ids import gid, key_of
from schema.types.errors import UserError
from schema.types.node import Node
from schema.types.prefetch import MaybeAwaitable, Prefetched, prefetched_slot

ProductStatus = strawberry.enum(m.ProductStatus)


@strawberry.type
class PriceTier:
    min_quantity: int
    unit_price: Decimal


@strawberry.type
class Product(Node):
    supplier_id: strawberry.ID
    title: str
    description: str
    status: ProductStatus
    created_at: datetime

    @classmethod
    def from_model(cls, p: m.Product) -> Product:
        return cls(
            id=gid("Product", p.id),
            supplier_id=gid("Organisation", p.supplier_id),
            title=p.title,
            description=p.description,
            status=p.status,
            created_at=p.created_at,
        )

    @strawberry.field(description=f"At most {limits.MAX_SKUS_PER_PRODUCT}.")
    async def skus(self, info: Info) -> list[Sku]:
        return [
            Sku.from_model(s)
            for s in await info.context.loaders.skus_by_product.load(key_of(self.id))
        ]


@strawberry.type
class Sku(Node):
    code: str
    attributes: JSON
    weight_grams: int
    unit_price: Decimal
    currency: str
    is_active: bool
    product_id: strawberry.ID
    prefetched: Prefetched = prefetched_slot()

    @classmethod
    def from_model(cls, s: m.Sku) -> Sku:
        return cls(
            id=gid("Sku", s.id),
            code=s.code,
            attributes=s.attributes,
            weight_grams=s.weight_grams,
            unit_price=s.unit_price,
            currency=s.currency,
            is_active=s.is_active,
            product_id=gid("Product", s.product_id),
        )

    @strawberry.field(
        description=f"Cheaper unit prices from a quantity on; at most {limits.MAX_TIERS_PER_SKU}."
    )
    async def tiers(self, info: Info) -> list[PriceTier]:
        rows = await info.context.loaders.tiers_by_sku.load(key_of(self.id))
        return [PriceTier(min_quantity=t.min_quantity, unit_price=t.unit_price) for t in rows]

    @strawberry.field(graphql_type=Product | None)
    def product(self, info: Info) -> MaybeAwaitable[Product | None]:
        if "product" in self.prefetched:
            return self.prefetched["product"]
        return self._load_product(info)

    async def _load_product(self, info: Info) -> Product | None:
        row = await info.context.loaders.products.load(key_of(self.product_id))
        return Product.from_model(row) if row else None


@strawberry.type
class FreightRule:
    country_code: str
    first_weight_grams: int
    first_price: Decimal
    step_grams: int
    step_price: Decimal


@strawberry.type
class LogisticsMethod(Node):
    supplier_id: strawberry.ID
    name: str
    min_days: int
    max_days: int

    @classmethod
    def from_model(cls, lm: m.LogisticsMethod) -> LogisticsMethod:
        return cls(
            id=gid("LogisticsMethod", lm.id),
            supplier_id=gid("Organisation", lm.supplier_id),
            name=lm.name,
            min_days=lm.min_days,
            max_days=lm.max_days,
        )

    @strawberry.field(
        description="Freight per destination country (`*`: anywhere else); "
        f"at most {limits.MAX_RULES_PER_METHOD}."
    )
    async def rules(self, info: Info) -> list[FreightRule]:
        rows = await info.context.loaders.rules_by_method.load(key_of(self.id))
        return [
            FreightRule(
                country_code=r.country_code,
                first_weight_grams=r.first_weight_grams,
                first_price=r.first_price,
                step_grams=r.step_grams,
                step_price=r.step_price,
            )
            for r in rows
        ]


@strawberry.input
class PriceTierInput:
    min_quantity: int
    unit_price: Decimal


@strawberry.input
class SkuInput:
    code: str
    attributes: JSON = strawberry.field(description='e.g. {"color": "Red", "size": "M"}')
    weight_grams: int
    unit_price: Decimal
    tiers: list[PriceTierInput] = strawberry.field(default_factory=list)


@strawberry.input
class CreateProductInput:
    title: str
    description: str = ""
    skus: list[SkuInput]


@strawberry.type
class ProductPayload:
    product: Product | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UpdateSkuInput:
    sku_id: strawberry.ID
    unit_price: Decimal | None = None
    weight_grams: int | None = None
    attributes: JSON | None = None
    is_active: bool | None = None


@strawberry.type
class SkuPayload:
    sku: Sku | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class FreightRuleInput:
    country_code: str
    first_weight_grams: int
    first_price: Decimal
    step_grams: int
    step_price: Decimal


@strawberry.input
class CreateLogisticsMethodInput:
    name: str
    min_days: int
    max_days: int
    rules: list[FreightRuleInput]


@strawberry.type
class LogisticsMethodPayload:
    logistics_method: LogisticsMethod | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
