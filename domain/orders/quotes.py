"""Quotes: a buyer asks a supplier to source a store product; staff answer with prices; the
buyer decides (the quotes are read in ``domain/orders/queries.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain import limits
from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.catalogue.links import own_store_product
from domain.catalogue.models import Product, ProductStatus, Sku
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import QuoteUpdated
from domain.limits import MAX_QUOTED_PRICES
from domain.orders.models import Quote, QuoteStatus
from domain.organisations.models import Organisation, OrganisationKind
from domain.stores.models import StoreProduct
from domain.validation import clean_text, money


@dataclass(frozen=True)
class SkuPrice:
    sku_id: int
    unit_price: Decimal


async def _event(quote: Quote, actor_user_id: int) -> None:
    await record_event(QuoteUpdated.of(quote, actor_user_id=actor_user_id))


async def request_quote(
    *,
    viewer: Viewer,
    supplier_id: int,
    store_product_id: int,
    note: str,
    target_price: Decimal | None,
    links: list[str],
) -> Quote:
    require_buyer(viewer)
    note = clean_text(note, field="note", max_length=5000, required=False)
    if target_price is not None:
        target_price = money(target_price, field="targetPrice")
    if len(links) > 20:
        raise DomainError(ErrorCode.INVALID, "At most 20 images or links.", field="links")
    links = [clean_text(link, field=f"links.{i}", max_length=1000) for i, link in enumerate(links)]
    if not await Organisation.exists(id=supplier_id, kind=OrganisationKind.SUPPLIER):
        raise not_found("Supplier", field="supplierId")
    async with transaction():
        store_product = await own_store_product(viewer, store_product_id)
        await limits.ensure_room(
            Quote.filter(store_product_id=store_product.id),
            limits.MAX_QUOTES_PER_STORE_PRODUCT,
            message=f"At most {limits.MAX_QUOTES_PER_STORE_PRODUCT} quotes per store product.",
            field="storeProductId",
            lock=StoreProduct.filter(id=store_product.id),
        )
        quote = await Quote.create(
            buyer_id=viewer.organisation_id,
            supplier_id=supplier_id,
            store_product_id=store_product.id,
            note=note,
            target_price=target_price,
            links=links,
            requested_by_user_id=viewer.user_id,
        )
        await _event(quote, viewer.user_id)
    return quote


async def answer_quote(
    *, viewer: Viewer, quote_id: int, product_id: int, prices: list[SkuPrice], message: str
) -> Quote:
    require_supplier_staff(viewer)
    message = clean_text(message, field="message", max_length=5000, required=False)
    if not prices:
        raise DomainError(ErrorCode.REQUIRED, "Price at least one SKU.", field="prices")
    if len(prices) > MAX_QUOTED_PRICES:
        raise DomainError(
            ErrorCode.TOO_MANY, f"At most {MAX_QUOTED_PRICES} prices.", field="prices"
        )
    if len({p.sku_id for p in prices}) != len(prices):
        raise DomainError(ErrorCode.INVALID, "One price per SKU.", field="prices")
    async with transaction():
        quote = await Quote.get_or_none(id=quote_id, supplier_id=viewer.organisation_id)
        if quote is None:
            raise not_found("Quote", field="quoteId")
        if quote.status not in (QuoteStatus.REQUESTED, QuoteStatus.QUOTED):
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION, f"The quote is {quote.status.value}.", field="quoteId"
            )
        product = await Product.get_or_none(id=product_id, supplier_id=viewer.organisation_id)
        if product is None:
            raise not_found("Product", field="productId")
        if product.status is not ProductStatus.ACTIVE:
            raise DomainError(ErrorCode.INACTIVE, "The product is discontinued.", field="productId")
        sku_ids = set(await Sku.filter(product_id=product.id).values_list("id", flat=True))
        answer = []
        for i, price in enumerate(prices):
            if price.sku_id not in sku_ids:
                raise not_found("SKU of this product", field=f"prices.{i}.skuId")
            answer.append(
                {
                    "skuId": str(price.sku_id),
                    "unitPrice": str(money(price.unit_price, field=f"prices.{i}.unitPrice")),
                }
            )
        quote.product_id = product.id
        quote.sku_prices = answer
        quote.message = message
        quote.status = QuoteStatus.QUOTED
        quote.answered_by_user_id = viewer.user_id
        await quote.save()
        await _event(quote, viewer.user_id)
    return quote


async def decide_quote(*, viewer: Viewer, quote_id: int, accept: bool) -> Quote:
    """The buyer accepts (then connects the product) or declines a QUOTED quote."""
    require_buyer(viewer)
    async with transaction():
        quote = await Quote.get_or_none(id=quote_id, buyer_id=viewer.organisation_id)
        if quote is None:
            raise not_found("Quote", field="quoteId")
        if quote.status is not QuoteStatus.QUOTED:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                f"Only a QUOTED quote can be decided; this one is {quote.status.value}.",
                field="quoteId",
            )
        quote.status = QuoteStatus.ACCEPTED if accept else QuoteStatus.DECLINED
        await quote.save(update_fields=["status", "updated_at"])
        await _event(quote, viewer.user_id)
    return quote
