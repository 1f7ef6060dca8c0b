"""Supplier catalogue: products, SKUs, price tiers, logistics methods and freight rules.

Changing or discontinuing a SKU marks every product link that uses it STALE
(``domain.catalogue.links.mark_stale``): mapping drift is caught before buyers pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tortoise.expressions import F

from domain import limits
from domain.access import Viewer, require_supplier_staff
from domain.catalogue.links import mark_stale
from domain.catalogue.models import (
    FreightRule,
    LogisticsMethod,
    PriceTier,
    Product,
    ProductStatus,
    Sku,
)
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, ValidationErrors, not_found
from domain.events import record_event
from domain.events.catalogue import LogisticsMethodUpdated, ProductUpdated
from domain.limits import MAX_RULES_PER_METHOD, MAX_SKUS_PER_PRODUCT, MAX_TIERS_PER_SKU
from domain.organisations.models import Organisation, OrganisationKind
from domain.validation import clean_text, country, money, positive_int


@dataclass(frozen=True)
class TierSpec:
    min_quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class SkuSpec:
    code: str
    attributes: object
    weight_grams: int
    unit_price: Decimal
    tiers: list[TierSpec] = field(default_factory=list)


@dataclass(frozen=True)
class FreightRuleSpec:
    country_code: str
    first_weight_grams: int
    first_price: Decimal
    step_grams: int
    step_price: Decimal


async def _product_event(
    viewer: Viewer, product_id: int, change: str, *, sku_id: int | None = None
) -> None:
    """Every change to a product, its SKUs or their price tiers (buyers see them all: the
    response cache drops what read the catalogue, ``domain.shared_data``)."""
    await record_event(
        ProductUpdated.of(
            product_id,
            supplier_id=viewer.organisation_id,
            change=change,
            sku_id=sku_id,
            actor_user_id=viewer.user_id,
        )
    )


def normalise_attributes(attributes: object, *, field: str) -> dict[str, str]:
    """Lower-case keys, trimmed values: how attributes are compared everywhere."""
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str | int) for v in attributes.values()
    ):
        raise DomainError(ErrorCode.INVALID, "An object of names to values.", field=field)
    cleaned: dict[str, str] = {}
    for key, value in attributes.items():
        name = clean_text(str(key), field=field, max_length=50).lower()
        cleaned[name] = clean_text(str(value), field=field, max_length=100)
    return cleaned


def _check_sku(spec: SkuSpec, index: int) -> list[DomainError]:
    errors: list[DomainError] = []
    path = f"skus.{index}"
    for check in (
        lambda: clean_text(spec.code, field=f"{path}.code", max_length=64),
        lambda: positive_int(spec.weight_grams, field=f"{path}.weightGrams", maximum=1_000_000),
        lambda: money(spec.unit_price, field=f"{path}.unitPrice"),
        lambda: normalise_attributes(spec.attributes, field=f"{path}.attributes"),
    ):
        try:
            check()
        except DomainError as error:
            errors.append(error)
    if len(spec.tiers) > MAX_TIERS_PER_SKU:
        errors.append(
            DomainError(
                ErrorCode.TOO_MANY,
                f"At most {MAX_TIERS_PER_SKU} price tiers per SKU.",
                field=f"{path}.tiers",
            )
        )
    for t, tier in enumerate(spec.tiers):
        try:
            positive_int(tier.min_quantity, field=f"{path}.tiers.{t}.minQuantity")
            money(tier.unit_price, field=f"{path}.tiers.{t}.unitPrice")
        except DomainError as error:
            errors.append(error)
    return errors


async def _supplier_currency(viewer: Viewer) -> str:
    org = await Organisation.get(id=viewer.organisation_id)
    assert org.kind is OrganisationKind.SUPPLIER
    return org.currency


async def create_product(
    *, viewer: Viewer, title: str, description: str = "", skus: list[SkuSpec]
) -> Product:
    require_supplier_staff(viewer)
    title = clean_text(title, field="title", max_length=300)
    description = clean_text(description, field="description", max_length=10_000, required=False)
    if not skus:
        raise DomainError(ErrorCode.REQUIRED, "A product needs at least one SKU.", field="skus")
    if len(skus) > MAX_SKUS_PER_PRODUCT:
        raise DomainError(
            ErrorCode.TOO_MANY, f"At most {MAX_SKUS_PER_PRODUCT} SKUs per product.", field="skus"
        )
    errors = [e for i, spec in enumerate(skus) for e in _check_sku(spec, i)]
    codes = [s.code.strip() for s in skus]
    if len(set(codes)) != len(codes):
        errors.append(DomainError(ErrorCode.ALREADY_EXISTS, "SKU codes repeat.", field="skus"))
    if errors:
        raise ValidationErrors(errors)
    if await Sku.exists(supplier_id=viewer.organisation_id, code__in=codes):
        raise DomainError(ErrorCode.ALREADY_EXISTS, "A SKU code is already used.", field="skus")
    currency = await _supplier_currency(viewer)
    async with transaction():
        await limits.ensure_room(
            Product.filter(supplier_id=viewer.organisation_id),
            limits.MAX_PRODUCTS_PER_SUPPLIER,
            message=f"At most {limits.MAX_PRODUCTS_PER_SUPPLIER} products per supplier.",
            lock=Organisation.filter(id=viewer.organisation_id),
        )
        product = await Product.create(
            supplier_id=viewer.organisation_id, title=title, description=description
        )
        for spec in skus:
            sku = await Sku.create(
                product_id=product.id,
                supplier_id=viewer.organisation_id,
                code=spec.code.strip(),
                attributes=normalise_attributes(spec.attributes, field="skus"),
                weight_grams=spec.weight_grams,
                unit_price=spec.unit_price,
                currency=currency,
            )
            await PriceTier.bulk_create(
                [
                    PriceTier(sku_id=sku.id, min_quantity=t.min_quantity, unit_price=t.unit_price)
                    for t in spec.tiers
                ]
            )
        await _product_event(viewer, product.id, "CREATED")
    return product


async def _own_sku(viewer: Viewer, sku_id: int) -> Sku:
    sku = await Sku.get_or_none(id=sku_id, supplier_id=viewer.organisation_id)
    if sku is None:
        raise not_found("SKU", field="skuId")
    return sku


async def update_sku(
    *,
    viewer: Viewer,
    sku_id: int,
    unit_price: Decimal | None = None,
    weight_grams: int | None = None,
    attributes: object | None = None,
    is_active: bool | None = None,
) -> Sku:
    """Change a SKU. Connections that use it become STALE (with the reason) when its
    attributes change or it is deactivated; price and weight changes only reprice."""
    require_supplier_staff(viewer)
    changes: dict[str, object] = {}
    reasons: list[str] = []
    if unit_price is not None:
        changes["unit_price"] = money(unit_price, field="unitPrice")
    if weight_grams is not None:
        changes["weight_grams"] = positive_int(weight_grams, field="weightGrams")
    async with transaction():
        sku = await _own_sku(viewer, sku_id)
        if attributes is not None:
            new_attributes = normalise_attributes(attributes, field="attributes")
            if new_attributes != sku.attributes:
                changes["attributes"] = new_attributes
                reasons.append(f"SKU {sku.code} attributes changed to {new_attributes}")
        if is_active is not None and is_active != sku.is_active:
            changes["is_active"] = is_active
            if not is_active:
                reasons.append(f"SKU {sku.code} was deactivated")
        if not changes:
            return sku
        await Sku.filter(id=sku.id).update(**changes, version=F("version") + 1)
        await _product_event(viewer, sku.product_id, "SKU_UPDATED", sku_id=sku.id)
        if reasons:
            await mark_stale(sku_ids=[sku.id], reason="; ".join(reasons), actor=viewer)
        await sku.refresh_from_db()
    return sku


async def discontinue_product(*, viewer: Viewer, product_id: int) -> Product:
    require_supplier_staff(viewer)
    async with transaction():
        product = await Product.get_or_none(id=product_id, supplier_id=viewer.organisation_id)
        if product is None:
            raise not_found("Product", field="productId")
        if product.status is ProductStatus.DISCONTINUED:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                "The product is already discontinued.",
                field="productId",
            )
        product.status = ProductStatus.DISCONTINUED
        await product.save(update_fields=["status", "updated_at"])
        sku_ids = await Sku.filter(product_id=product.id).values_list("id", flat=True)
        await Sku.filter(product_id=product.id).update(is_active=False, version=F("version") + 1)
        await mark_stale(
            sku_ids=list(sku_ids),
            reason=f"Product {product.title!r} was discontinued",
            actor=viewer,
        )
        await _product_event(viewer, product.id, "DISCONTINUED")
    return product


async def create_logistics_method(
    *, viewer: Viewer, name: str, min_days: int, max_days: int, rules: list[FreightRuleSpec]
) -> LogisticsMethod:
    require_supplier_staff(viewer)
    name = clean_text(name, field="name", max_length=100)
    positive_int(min_days, field="minDays", maximum=365)
    positive_int(max_days, field="maxDays", maximum=365)
    if max_days < min_days:
        raise DomainError(ErrorCode.INVALID, "maxDays is before minDays.", field="maxDays")
    if not rules:
        raise DomainError(ErrorCode.REQUIRED, "Give at least one freight rule.", field="rules")
    if len(rules) > MAX_RULES_PER_METHOD:
        raise DomainError(
            ErrorCode.TOO_MANY,
            f"At most {MAX_RULES_PER_METHOD} freight rules per method.",
            field="rules",
        )
    cleaned = []
    for i, rule in enumerate(rules):
        cleaned.append(
            FreightRule(
                country_code=country(rule.country_code, field=f"rules.{i}.countryCode"),
                first_weight_grams=positive_int(
                    rule.first_weight_grams, field=f"rules.{i}.firstWeightGrams"
                ),
                first_price=money(rule.first_price, field=f"rules.{i}.firstPrice", allow_zero=True),
                step_grams=positive_int(rule.step_grams, field=f"rules.{i}.stepGrams"),
                step_price=money(rule.step_price, field=f"rules.{i}.stepPrice", allow_zero=True),
            )
        )
    if len({r.country_code for r in cleaned}) != len(cleaned):
        raise DomainError(ErrorCode.INVALID, "One rule per country.", field="rules")
    async with transaction():
        await limits.ensure_room(
            LogisticsMethod.filter(supplier_id=viewer.organisation_id),
            limits.MAX_LOGISTICS_METHODS_PER_SUPPLIER,
            message=f"At most {limits.MAX_LOGISTICS_METHODS_PER_SUPPLIER} logistics methods "
            "per supplier.",
            lock=Organisation.filter(id=viewer.organisation_id),
        )
        method = await LogisticsMethod.create(
            supplier_id=viewer.organisation_id, name=name, min_days=min_days, max_days=max_days
        )
        for rule in cleaned:
            rule.method_id = method.id
        await FreightRule.bulk_create(cleaned)
        await record_event(
            LogisticsMethodUpdated.of(method, change="CREATED", actor_user_id=viewer.user_id)
        )
    return method
