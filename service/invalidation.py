"""What invalidates what in the response cache: the shared data each query field reads, and the
events each mutation records.

A cached answer belongs to one organisation and is dropped when an event names that
organisation in its audience (``service/response_cache.py``). That covers everything only its
audience sees. Data that other organisations see too (``domain.shared_data.SharedData``: a
supplier's catalogue, a buyer's stores, organisations' names...) is changed by events of the
types ``domain.shared_data.CHANGED_BY`` names, and such an event drops every answer, whoever's,
whose document *reads* that kind of data: ``reads`` says which, from the fields it selects.

``MUTATIONS`` declares, for every mutation of the schema, the event types it records when it
changes something; a test fails for a mutation missing here and for a mutation that records a
type it does not declare (``tests/test_cache_invalidation.py``), so a new mutation cannot be
forgotten and a declaration cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from domain.events import EventType
from domain.shared_data import SharedData

_NONE: frozenset[SharedData] = frozenset()
_CATALOGUE = frozenset({SharedData.CATALOGUE})
_LOGISTICS = frozenset({SharedData.LOGISTICS})
_NAMES = frozenset({SharedData.ORGANISATION_NAMES})

QUERY_FIELDS: Mapping[str, frozenset[SharedData]] = MappingProxyType(
    {
        "me": _NONE,
        # any object by id: a product, method, cloud warehouse, store or organisation too
        "node": frozenset(SharedData),
        "nodes": frozenset(SharedData),
        "users": _NONE,
        "apiTokens": _NONE,
        "events": _NONE,
        "products": _CATALOGUE,
        "logisticsMethods": _LOGISTICS,
        "stores": frozenset({SharedData.STORES}),
        "storeProducts": _NONE,
        "quotes": _NONE,
        "orders": _NAMES,  # filter.distributorName
        "order": _NONE,
        "orderCounts": _NONE,
        "freightQuote": _CATALOGUE | _LOGISTICS,  # SKU prices and weights, freight rules
        "wallets": _NONE,
        "walletEntries": _NONE,
        "partnerships": _NONE,
        "distributionWarehouses": _NONE,
        "thirdPartyWarehouses": _NONE,
        "distributionSettings": _NONE,
        "afterSalesOrders": _NAMES,  # filter.distributorName
        "afterSalesOrder": _NONE,
        "withdrawals": _NONE,
        "cloudWarehouses": frozenset({SharedData.CLOUD_WAREHOUSES}),
        "inventory": _NONE,
        "stockMovements": _NONE,
        "slaBreaches": _NONE,
        "slaRules": _NONE,
        "__typename": _NONE,
        "__schema": _NONE,
        "__type": _NONE,
    }
)
"""Every root Query field: the shared data it reads whatever it selects (from its arguments or
what it computes); what it selects below is ``NESTED_FIELDS``' business."""

NESTED_FIELDS: Mapping[str, frozenset[SharedData]] = MappingProxyType(
    {
        "skus": _CATALOGUE,  # Product.skus
        "sku": _CATALOGUE,  # OrderLine.sku, StockItem.sku
        "product": _CATALOGUE,  # Sku.product
        "tiers": _CATALOGUE,  # Sku.tiers
        # before payment an order's prices are the SKUs' prices now (domain.payments.charges)
        "goodsAmount": _CATALOGUE,  # Order.goodsAmount
        "unitPrice": _CATALOGUE,  # OrderLine.unitPrice (and Sku's, QuotedPrice's)
        "logisticsMethod": _LOGISTICS,  # Order.logisticsMethod
        "rules": _LOGISTICS,  # LogisticsMethod.rules
        "store": frozenset({SharedData.STORES}),  # Order.store
        "buyerName": _NAMES,  # Order.buyerName
        "supplierName": _NAMES,  # Partnership.supplierName
        "distributorName": _NAMES,  # Partnership.distributorName, AfterSalesOrder.distributorName
    }
)
"""Fields below the root, by name whatever their type, that read shared data."""

UNCACHED_FIELDS: frozenset[str] = frozenset({"lastUsedAt"})
"""Fields whose value changes without an event (``ApiToken.lastUsedAt`` is written by
authentication): a document selecting one is never cached."""


def reads(root_fields: Iterable[str], field_names: Iterable[str]) -> frozenset[SharedData] | None:
    """The shared data a document reads, from the root fields of its operation and the names of
    every field it selects; None when it must not be cached (a field of ``UNCACHED_FIELDS``, or
    a root field this module does not know)."""
    found: set[SharedData] = set()
    for name in root_fields:
        root = QUERY_FIELDS.get(name)
        if root is None:
            return None
        found |= root
    for name in field_names:
        if name in UNCACHED_FIELDS:
            return None
        found |= NESTED_FIELDS.get(name, _NONE)
    return frozenset(found)


_E = EventType
_STATUS = _E.ORDER_STATUS_CHANGED
_STOCK = frozenset({_E.INVENTORY_CHANGED, _E.STOCK_LOW})  # a status change that settles stock

MUTATIONS: Mapping[str, frozenset[EventType]] = MappingProxyType(
    {
        "renameOrganisation": frozenset({_E.ORGANISATION_UPDATED}),
        "addUser": frozenset({_E.USER_CREATED}),
        "createApiToken": frozenset({_E.API_TOKEN_CREATED}),
        "revokeApiToken": frozenset({_E.API_TOKEN_REVOKED}),
        "createProduct": frozenset({_E.PRODUCT_UPDATED}),
        "updateSku": frozenset({_E.PRODUCT_UPDATED, _E.PRODUCT_LINK_STALE}),
        "discontinueProduct": frozenset({_E.PRODUCT_UPDATED, _E.PRODUCT_LINK_STALE}),
        "createLogisticsMethod": frozenset({_E.LOGISTICS_METHOD_UPDATED}),
        "connectStore": frozenset({_E.STORE_UPDATED}),
        "syncStoreOrders": frozenset({_E.STORE_UPDATED, _E.ORDER_CREATED}),
        "connectProduct": frozenset({_E.PRODUCT_LINK_UPDATED, _STATUS, _E.ORDER_UPDATED}),
        "disconnectProduct": frozenset({_E.PRODUCT_LINK_UPDATED}),
        "requestQuote": frozenset({_E.QUOTE_UPDATED}),
        "answerQuote": frozenset({_E.QUOTE_UPDATED}),
        "acceptQuote": frozenset({_E.QUOTE_UPDATED}),
        "declineQuote": frozenset({_E.QUOTE_UPDATED}),
        "createManualOrder": frozenset({_E.ORDER_CREATED}),
        "connectOrderSku": frozenset({_STATUS, _E.ORDER_UPDATED}),
        "cancelOrders": frozenset({_STATUS, *_STOCK}),
        "payOrders": frozenset({_STATUS, _E.WALLET_CHANGED, *_STOCK}),
        "topUpWallet": frozenset({_E.WALLET_CHANGED}),
        "shipOrder": frozenset({_STATUS, *_STOCK}),
        "markDelivered": frozenset({_STATUS}),
        "holdOrderAbnormal": frozenset({_STATUS}),
        "resolveOrderAbnormal": frozenset({_STATUS, *_STOCK}),
        "openDepute": frozenset({_E.DEPUTE_UPDATED}),
        "refundDepute": frozenset({_E.DEPUTE_UPDATED, _E.WALLET_CHANGED, _STATUS, *_STOCK}),
        "resolveDepute": frozenset({_E.DEPUTE_UPDATED}),
        "applyForPartnership": frozenset({_E.PARTNERSHIP_UPDATED}),
        "decidePartnership": frozenset({_E.PARTNERSHIP_UPDATED}),
        "addDistributionWarehouse": frozenset({_E.PARTNERSHIP_UPDATED}),
        "selectDistributionWarehouse": frozenset({_E.PARTNERSHIP_UPDATED}),
        "authoriseThirdPartyWarehouse": frozenset({_E.THIRD_PARTY_WAREHOUSE_UPDATED}),
        "testThirdPartyWarehouse": frozenset({_E.THIRD_PARTY_WAREHOUSE_UPDATED}),
        "revokeThirdPartyWarehouse": frozenset({_E.THIRD_PARTY_WAREHOUSE_UPDATED}),
        "updateDistributionSettings": frozenset({_E.DISTRIBUTION_SETTINGS_UPDATED}),
        "pushOrders": frozenset({_E.WAREHOUSE_PUSH_CHANGED, _STATUS, _E.WALLET_CHANGED}),
        "withdrawOrder": frozenset({_E.WITHDRAWAL_STATUS_CHANGED}),
        "withdrawAfterSalesOrder": frozenset(
            {_E.WITHDRAWAL_STATUS_CHANGED, _E.RETURN_STATUS_CHANGED}
        ),
        "retryWithdrawal": frozenset({_E.WITHDRAWAL_STATUS_CHANGED, _E.RETURN_STATUS_CHANGED}),
        "setSlaRule": frozenset({_E.SLA_RULE_UPDATED}),
        "closeWithdrawal": frozenset({_E.WITHDRAWAL_STATUS_CHANGED, _E.RETURN_STATUS_CHANGED}),
        "convertWithdrawalToReturn": frozenset(
            {_E.RETURN_STATUS_CHANGED, _E.WITHDRAWAL_STATUS_CHANGED}
        ),
        "createAfterSalesOrder": frozenset({_E.RETURN_STATUS_CHANGED}),
        "pushReturns": frozenset({_E.RETURN_STATUS_CHANGED}),
        "createCloudWarehouse": frozenset({_E.CLOUD_WAREHOUSE_UPDATED}),
        "createCloudWarehouseOrder": frozenset({_E.ORDER_CREATED}),
        "receiveStock": frozenset({_STATUS, *_STOCK}),
        "setLowStockThreshold": frozenset({_E.STOCK_THRESHOLD_CHANGED}),
    }
)
"""Every mutation: the event types it may record (in the transaction of its change). An empty
set would declare a mutation that changes nothing any query shows."""
