"""Catalogue: products, SKUs, logistics methods (supplier staff manage, buyers browse)."""

from __future__ import annotations

import strawberry
from strawberry import Info

from domain.catalogue import commands as catalogue
from domain.catalogue import queries as catalogue_queries
from domain.pages import MAX_PAGE
from resolvers.ids import optional_id, page_arguments, parse_id
from resolvers.mutations import run_command
from resolvers.permissions import EITHER, STAFF, SUPPLIER, requires, viewer_of
from schema.types.catalogue import (
    CreateLogisticsMethodInput,
    CreateProductInput,
    LogisticsMethod,
    LogisticsMethodPayload,
    Product,
    ProductPayload,
    Sku,
    SkuPayload,
    UpdateSkuInput,
)
from schema.types.pagination import Connection


@strawberry.type
class CatalogueQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Suppliers: their products. Buyers: active products (of one supplier). "
        f"At most {MAX_PAGE} per page.",
    )
    async def products(
        self,
        info: Info,
        supplier_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Product]:
        rows, more = await catalogue_queries.list_products(
            viewer=viewer_of(info),
            supplier_id=optional_id(supplier_id, "Organisation", field="supplierId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, Product.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Active logistics methods. Suppliers: their own. Buyers: every supplier's "
        f"(or one supplier's). At most {MAX_PAGE} per page.",
    )
    async def logistics_methods(
        self,
        info: Info,
        supplier_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[LogisticsMethod]:
        rows, more = await catalogue_queries.list_logistics_methods(
            viewer=viewer_of(info),
            supplier_id=optional_id(supplier_id, "Organisation", field="supplierId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, LogisticsMethod.from_model, has_next_page=more, after=after)


@strawberry.type
class CatalogueMutations:
    @strawberry.mutation(extensions=[requires(SUPPLIER, STAFF)])
    async def create_product(self, info: Info, input: CreateProductInput) -> ProductPayload:
        async def command() -> dict:
            specs = [
                catalogue.SkuSpec(
                    code=s.code,
                    attributes=s.attributes,
                    weight_grams=s.weight_grams,
                    unit_price=s.unit_price,
                    tiers=[catalogue.TierSpec(t.min_quantity, t.unit_price) for t in s.tiers],
                )
                for i, s in enumerate(input.skus)
            ]
            product = await catalogue.create_product(
                viewer=viewer_of(info),
                title=input.title,
                description=input.description,
                skus=specs,
            )
            return {"product": Product.from_model(product)}

        return await run_command(ProductPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Changing attributes or deactivating marks the product "
        "connections that use the SKU STALE and tells their buyers.",
    )
    async def update_sku(self, info: Info, input: UpdateSkuInput) -> SkuPayload:
        async def command() -> dict:
            sku = await catalogue.update_sku(
                viewer=viewer_of(info),
                sku_id=parse_id(input.sku_id, "Sku", field="skuId"),
                unit_price=input.unit_price,
                weight_grams=input.weight_grams,
                attributes=input.attributes,
                is_active=input.is_active,
            )
            return {"sku": Sku.from_model(sku)}

        return await run_command(SkuPayload, command, in_input=True)

    @strawberry.mutation(extensions=[requires(SUPPLIER, STAFF)])
    async def discontinue_product(self, info: Info, product_id: strawberry.ID) -> ProductPayload:
        async def command() -> dict:
            product = await catalogue.discontinue_product(
                viewer=viewer_of(info),
                product_id=parse_id(product_id, "Product", field="productId"),
            )
            return {"product": Product.from_model(product)}

        return await run_command(ProductPayload, command)

    @strawberry.mutation(extensions=[requires(SUPPLIER, STAFF)])
    async def create_logistics_method(
        self, info: Info, input: CreateLogisticsMethodInput
    ) -> LogisticsMethodPayload:
        async def command() -> dict:
            method = await catalogue.create_logistics_method(
                viewer=viewer_of(info),
                name=input.name,
                min_days=input.min_days,
                max_days=input.max_days,
                rules=[
                    catalogue.FreightRuleSpec(
                        r.country_code,
                        r.first_weight_grams,
                        r.first_price,
                        r.step_grams,
                        r.step_price,
                    )
                    for r in input.rules
                ],
            )
            return {"logistics_method": LogisticsMethod.from_model(method)}

        return await run_command(LogisticsMethodPayload, command, in_input=True)
