"""All Tortoise models of the application, registered as the ``models`` app."""

from domain.models.catalogue import FreightRule, LogisticsMethod, PriceTier, Product, Sku
from domain.models.events import Event, EventAudience
from domain.models.orders import (
    Depute,
    Order,
    OrderLine,
    OrderTransition,
    Quote,
    WebhookReceipt,
)
from domain.models.organisations import ApiToken, Organisation, User
from domain.models.stores import (
    ProductConnection,
    Store,
    StoreProduct,
    StoreVariant,
    VariantMapping,
)
from domain.models.wallets import Wallet, WalletEntry

__all__ = [
    "ApiToken",
    "Depute",
    "Event",
    "EventAudience",
    "FreightRule",
    "LogisticsMethod",
    "Order",
    "OrderLine",
    "OrderTransition",
    "Organisation",
    "PriceTier",
    "Product",
    "ProductConnection",
    "Quote",
    "Sku",
    "Store",
    "StoreProduct",
    "StoreVariant",
    "User",
    "VariantMapping",
    "Wallet",
    "WalletEntry",
    "WebhookReceipt",
]
