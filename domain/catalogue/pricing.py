"""Prices and freight: the one place where order amounts are computed."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from domain.catalogue.models import FreightRule, PriceTier, Sku
from domain.errors import DomainError, ErrorCode
from domain.validation import CENT


def unit_price(sku: Sku, quantity: int, tiers: Iterable[PriceTier]) -> Decimal:
    """The SKU's price for ``quantity`` units: the best tier reached, else the list price."""
    price = sku.unit_price
    for tier in tiers:
        if quantity >= tier.min_quantity and tier.unit_price < price:
            price = tier.unit_price
    return price


def freight(rules: Iterable[FreightRule], *, country_code: str, weight_grams: int) -> Decimal:
    """First weight at one price, then every started step at the step price."""
    by_country = {rule.country_code: rule for rule in rules}
    rule = by_country.get(country_code.upper()) or by_country.get("*")
    if rule is None:
        raise DomainError(
            ErrorCode.NOT_DELIVERABLE,
            f"This shipping method does not deliver to {country_code or 'an unknown country'}.",
            field="logisticsMethodId",
        )
    amount = rule.first_price
    extra = max(0, weight_grams - rule.first_weight_grams)
    if extra:
        steps = -(-extra // rule.step_grams)
        amount += rule.step_price * steps
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
