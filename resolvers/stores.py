"""Stores: connecting, syncing, product links and quotes for unrecognized products."""

from __future__ import annotations

import strawberry
from strawberry import Info

from domain.catalogue import links as product_links
from domain.orders import queries as order_queries
from domain.orders import quotes
from domain.pages import MAX_PAGE
from domain.stores import commands as store_commands
from domain.stores import queries as store_queries
from resolvers.ids import page_arguments, parse_id
from resolvers.mutations import run_command
from resolvers.permissions import BUYER, EITHER, STAFF, SUPPLIER, requires, viewer_of
from schema.types.orders import AnswerQuoteInput, Quote, QuotePayload, RequestQuoteInput
from schema.types.pagination import Connection
from schema.types.stores import (
    ConnectProductInput,
    ConnectStoreInput,
    ConnectStorePayload,
    ProductLink,
    ProductLinkPayload,
    Store,
    StoreProduct,
    SyncStorePayload,
)


@strawberry.type
class StoreQueries:
    @strawberry.field(
        extensions=[requires(BUYER)],
        description=f"The buyer's stores, at most {MAX_PAGE} per page.",
    )
    async def stores(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[Store]:
        rows, more = await store_queries.list_stores(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, Store.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(BUYER)],
        description=f"The products of one of the buyer's stores, at most {MAX_PAGE} per page.",
    )
    async def store_products(
        self, info: Info, store_id: strawberry.ID, first: int = 50, after: str | None = None
    ) -> Connection[StoreProduct]:
        rows, more = await store_queries.list_store_products(
            viewer=viewer_of(info),
            store_id=parse_id(store_id, "Store", field="storeId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, StoreProduct.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Quotes the caller asked for (buyer) or must answer (supplier), newest "
        f"first, at most {MAX_PAGE} per page.",
    )
    async def quotes(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[Quote]:
        rows, more = await order_queries.list_quotes(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, Quote.from_model, has_next_page=more, after=after)


@strawberry.type
class StoreMutations:
    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="The webhook secret is returned only here.",
    )
    async def connect_store(self, info: Info, input: ConnectStoreInput) -> ConnectStorePayload:
        async def command() -> dict:
            store, secret = await store_commands.connect_store(
                viewer=viewer_of(info),
                name=input.name,
                platform=input.platform,
                api_url=input.api_url,
                access_token=input.access_token,
                webhook_secret=input.webhook_secret,
            )
            return {
                "store": Store.from_model(store),
                "webhook_secret": secret,
                "webhook_url_path": f"/webhooks/stores/{store.id}/orders",
            }

        return await run_command(ConnectStorePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Pull the store's products and its new orders (idempotent).",
    )
    async def sync_store_orders(self, info: Info, store_id: strawberry.ID) -> SyncStorePayload:
        async def command() -> dict:
            result = await info.context.services.sync_store(
                viewer=viewer_of(info), store_id=parse_id(store_id, "Store", field="storeId")
            )
            return {
                "store": Store.from_model(result.store),
                "products_synced": result.products_synced,
                "orders_seen": result.orders_seen,
                "orders_created": result.orders_created,
            }

        return await run_command(SyncStorePayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Connect a store product to a supplier product, one SKU per variant; "
        "UNRECOGNIZED orders it completes move to AWAITING_PAYMENT.",
    )
    async def connect_product(self, info: Info, input: ConnectProductInput) -> ProductLinkPayload:
        async def command() -> dict:
            product_link = await product_links.connect_product(
                viewer=viewer_of(info),
                store_product_id=parse_id(
                    input.store_product_id, "StoreProduct", field="storeProductId"
                ),
                product_id=parse_id(input.product_id, "Product", field="productId"),
                logistics_method_id=parse_id(
                    input.logistics_method_id, "LogisticsMethod", field="logisticsMethodId"
                ),
                links=[
                    product_links.VariantLink(
                        parse_id(
                            v.store_variant_id, "StoreVariant", field=f"variants.{i}.storeVariantId"
                        ),
                        parse_id(v.sku_id, "Sku", field=f"variants.{i}.skuId"),
                    )
                    for i, v in enumerate(input.variants)
                ],
            )
            return {"product_link": ProductLink.from_model(product_link)}

        return await run_command(ProductLinkPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Future orders are no longer mapped through it.",
    )
    async def disconnect_product(
        self, info: Info, product_link_id: strawberry.ID
    ) -> ProductLinkPayload:
        async def command() -> dict:
            product_link = await product_links.disconnect_product(
                viewer=viewer_of(info),
                product_link_id=parse_id(product_link_id, "ProductLink", field="productLinkId"),
            )
            return {"product_link": ProductLink.from_model(product_link)}

        return await run_command(ProductLinkPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Ask a supplier to source a store product.",
    )
    async def request_quote(self, info: Info, input: RequestQuoteInput) -> QuotePayload:
        async def command() -> dict:
            quote = await quotes.request_quote(
                viewer=viewer_of(info),
                supplier_id=parse_id(input.supplier_id, "Organisation", field="supplierId"),
                store_product_id=parse_id(
                    input.store_product_id, "StoreProduct", field="storeProductId"
                ),
                note=input.note,
                target_price=input.target_price,
                links=input.links,
            )
            return {"quote": Quote.from_model(quote)}

        return await run_command(QuotePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Answer with a product and SKU prices.",
    )
    async def answer_quote(self, info: Info, input: AnswerQuoteInput) -> QuotePayload:
        async def command() -> dict:
            quote = await quotes.answer_quote(
                viewer=viewer_of(info),
                quote_id=parse_id(input.quote_id, "Quote", field="quoteId"),
                product_id=parse_id(input.product_id, "Product", field="productId"),
                prices=[
                    quotes.SkuPrice(
                        parse_id(p.sku_id, "Sku", field=f"prices.{i}.skuId"), p.unit_price
                    )
                    for i, p in enumerate(input.prices)
                ],
                message=input.message,
            )
            return {"quote": Quote.from_model(quote)}

        return await run_command(QuotePayload, command, in_input=True)

    @strawberry.mutation(extensions=[requires(BUYER, STAFF)])
    async def accept_quote(self, info: Info, quote_id: strawberry.ID) -> QuotePayload:
        return await _decide(info, quote_id, accept=True)

    @strawberry.mutation(extensions=[requires(BUYER, STAFF)])
    async def decline_quote(self, info: Info, quote_id: strawberry.ID) -> QuotePayload:
        return await _decide(info, quote_id, accept=False)


async def _decide(info: Info, quote_id: str, *, accept: bool) -> QuotePayload:
    async def command() -> dict:
        quote = await quotes.decide_quote(
            viewer=viewer_of(info),
            quote_id=parse_id(quote_id, "Quote", field="quoteId"),
            accept=accept,
        )
        return {"quote": Quote.from_model(quote)}

    return await run_command(QuotePayload, command)
