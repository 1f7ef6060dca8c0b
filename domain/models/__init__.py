"""All Tortoise models of the application, registered as the ``models`` app."""

from domain.after_sales.models import AfterSalesOrder
from domain.catalogue.models import FreightRule, LogisticsMethod, PriceTier, Product, Sku
from domain.distribution.models import (
    DistributionSettings,
    DistributionWarehouse,
    Partnership,
    ThirdPartyWarehouse,
    WarehouseAttempt,
    WarehouseCallbackReceipt,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
)
from domain.events.models import Event, EventAudience
from domain.orders.models import (
    Depute,
    Order,
    OrderLine,
    OrderTransition,
    Quote,
    WebhookReceipt,
)
from domain.organisations.models import ApiToken, Organisation, User
from domain.payments.models import Wallet, WalletEntry
from domain.sla.models import SlaBreach, SlaSetting, SweepLease
from domain.stock.models import (
    CloudReceiptCallback,
    CloudWarehouse,
    StockItem,
    StockMovement,
    StockReservation,
)
from domain.stores.models import (
    ProductLink,
    Store,
    StoreProduct,
    StoreVariant,
    VariantMapping,
)

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
    "ProductLink",
    "Quote",
    "Sku",
    "SlaBreach",
    "SlaSetting",
    "StockItem",
    "StockMovement",
    "StockReservation",
    "Store",
    "StoreProduct",
    "StoreVariant",
    "SweepLease",
    "ThirdPartyWarehouse",
    "User",
    "VariantMapping",
    "Wallet",
    "WalletEntry",
    "WarehouseAttempt",
    "WarehouseCallbackReceipt",
    "WarehouseOrder",
    "WarehouseTask",
    "WebhookReceipt",
    "Withdrawal",
]
