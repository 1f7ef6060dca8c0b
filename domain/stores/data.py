"""What the domain receives from a buyer's online store, independent of the wire format.

Plain frozen dataclasses: the store connector (``integrations.stores``) builds them from the
platform's JSON, the domain consumes them. Money is ``Decimal``, times are tz-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = [
    "SHIPPING_ADDRESS_KEYS",
    "StoreOrderData",
    "StoreOrderLineData",
    "StoreProductData",
    "StoreVariantData",
]

SHIPPING_ADDRESS_KEYS: tuple[str, ...] = (
    "name",
    "address1",
    "address2",
    "city",
    "province",
    "zip",
    "country_code",
    "phone",
)
"""The keys of ``StoreOrderData.shipping_address`` (always all present; absent values are "")."""


def _check_money(value: Decimal, what: str) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"{what} must be a finite, non-negative Decimal, not {value!r}")


@dataclass(frozen=True, slots=True)
class StoreVariantData:
    """One variant of a store product; ``attributes`` maps lower-cased option names to values."""

    external_id: str
    title: str
    sku: str | None
    attributes: dict[str, str]
    price: Decimal

    def __post_init__(self) -> None:
        _check_money(self.price, "price")


@dataclass(frozen=True, slots=True)
class StoreProductData:
    """A product of the store, with its variants."""

    external_id: str
    title: str
    variants: tuple[StoreVariantData, ...]


@dataclass(frozen=True, slots=True)
class StoreOrderLineData:
    """One line of a store order. ``external_variant_id`` is what connects it to a SKU."""

    external_id: str
    external_product_id: str
    external_variant_id: str
    title: str
    quantity: int
    unit_price: Decimal

    def __post_init__(self) -> None:
        _check_money(self.unit_price, "unit_price")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError(f"quantity must be an int, not {self.quantity!r}")
        if self.quantity <= 0:
            raise ValueError(f"quantity must be positive, not {self.quantity}")


@dataclass(frozen=True, slots=True)
class StoreOrderData:
    """An order placed in the buyer's store, to be imported as a STORE supply order."""

    external_id: str
    number: str
    currency: str
    created_at: datetime
    customer_name: str
    shipping_address: dict[str, str]
    lines: tuple[StoreOrderLineData, ...]

    def __post_init__(self) -> None:
        if self.created_at.utcoffset() != timedelta(0):
            raise ValueError(f"created_at must be tz-aware UTC, not {self.created_at!r}")
