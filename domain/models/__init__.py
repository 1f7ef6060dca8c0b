"""All Tortoise models of the application, registered as the ``models`` app."""

from domain.models.catalogue import FreightRule, LogisticsMethod, PriceTier, Product, Sku
from domain.models.distribution import (
    AfterSalesOrder,
    DistributionSettings,
    DistributionWarehouse,
    Partnership,
    WarehouseAttempt,
    WarehouseCallbackReceipt,
    WarehouseConnection,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
)
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
from domain.models.stock import (
    CloudReceiptCallback,
    CloudWarehouse,
    StockItem,
    StockMovement,
    StockReservation,
)
from domain.models.stores import (
    ProductConnection,
    Store,
    StoreProduct,
    StoreVariant,
    VariantMapping,
)
from domain.models.wallets import Wallet, WalletEntry

__all__ = [
    "AfterSalesOrder",
    "ApiToken",
    "CloudReceiptCallback",
    "CloudWarehouse",
    "Depute",
    "DistributionSettings",
    "DistributionWarehouse",
    "Event",
    "EventAudience",
    "FreightRule",
    "LogisticsMethod",
    "Order",
    "OrderLine",
    "OrderTransition",
    "Organisation",
    "Partnership",
    "PriceTier",
    "Product",
    "ProductConnection",
    "Quote",
    "Sku",
    "StockItem",
    "StockMovement",
    "StockReservation",
    "Store",
    "StoreProduct",
    "StoreVariant",
    "User",
    "VariantMapping",
    "Wallet",
    "WalletEntry",
    "WarehouseAttempt",
    "WarehouseCallbackReceipt",
    "WarehouseConnection",
    "WarehouseOrder",
    "WarehouseTask",
    "WebhookReceipt",
    "Withdrawal",
]
