"""The documented maximum of every list that an answer nests inside an object.

Lists at the root of the API are cursor connections, bounded by their page size. A list nested
in an object is bounded here instead, when the data is written: a command that would pass the
maximum is refused with ``TOO_MANY`` (or, for the history of calls to a warehouse, the oldest
entries are dropped), so no tenant can make another's answers grow without bound. The schema
states each maximum in the field's description; ``tests/test_bounded_lists.py`` walks the schema
and fails for a nested list that is neither a connection nor bounded here.
"""

from __future__ import annotations

MAX_SKUS_PER_PRODUCT = 100
"""``Product.skus``."""

MAX_TIERS_PER_SKU = 10
"""``Sku.tiers``: quantity price tiers."""

MAX_RULES_PER_METHOD = 250
"""``LogisticsMethod.rules``: one per destination country, and a ``*`` fallback."""

MAX_VARIANTS_PER_STORE_PRODUCT = 2048
"""``StoreProduct.variants``: Shopify's own limit; a store product with more is refused by the
sync, naming it (``integrations/stores/protocol.py``)."""

MAX_ORDER_LINES = 500
"""``Order.lines`` (manual, stocking and store orders); ``AfterSalesOrder.items`` name lines of
one order, so they are bounded by it too."""

MAX_ABNORMAL_HOLDS = 10
"""Times an order may be held ``ABNORMAL`` by staff, and resolved: the only cycle of the order
state machine goes through ``ABNORMAL``, so this bounds ``Order.timeline``."""

MAX_TIMELINE = 7 + 2 * MAX_ABNORMAL_HOLDS
"""``Order.timeline``: the creation, at most four steps forward, and in and out of ``ABNORMAL``
for each resolved hold and one more that is not resolved."""

MAX_WITHDRAWALS = 10
"""``Order.withdrawals`` and ``AfterSalesOrder.withdrawals``: withdraw requests of one order or
return (a failed one is closed before the next)."""

MAX_DEPUTES_PER_ORDER = 10
"""``Order.deputes``: one open at a time."""

MAX_ATTEMPTS_KEPT = 50
"""``Order.warehouseAttempts`` and ``AfterSalesOrder.warehouseAttempts``: the latest calls to
the warehouse; older ones are dropped when a new one is recorded."""

MAX_QUOTED_PRICES = MAX_SKUS_PER_PRODUCT
"""``Quote.skuPrices``: one per SKU of the quoted product."""
