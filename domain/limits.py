"""The documented maximum of every stored collection a tenant's writes make grow.

Lists at the root of the API are cursor connections, bounded by their page size. A list nested
in an object is bounded here instead, when the data is written: a command that would pass the
maximum is refused with ``TOO_MANY`` (or, for the history of calls to a warehouse and of spent
API tokens, the oldest entries are dropped), so no tenant can make another's answers grow
without bound. The schema states each maximum in the field's description;
``tests/test_bounded_lists.py`` walks the schema and fails for a nested list that is neither a
connection nor bounded here.

The collections a root connection pages through (a supplier's products, a buyer's stores, ...)
are bounded here too, per owner (second part below): repeated writes cannot grow them without
bound either. Each is checked inside the command's transaction by ``ensure_room``, before the
row is written, with the owner's row locked first, so two writes at once cannot both take the
last place. Left unbounded, on purpose: what the business itself makes grow (orders, from
stores or placed by hand, and what each order brings: its events, wallet entries, stock
movements, service-level breaches, store webhooks and warehouse callbacks, all paged).
"""

from __future__ import annotations

from typing import Any

from tortoise.queryset import QuerySet

from domain.errors import DomainError, ErrorCode

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


# -- collections that grow by writes, per owner ------------------------------------------------
# Read as ``limits.MAX_…`` by the commands (not imported by name), so a test can make one small.

MAX_USERS_PER_ORGANISATION = 1_000
"""``addUser``: people of one organisation (a user is never deleted)."""

MAX_ACTIVE_TOKENS_PER_USER = 20
"""``createApiToken``: tokens one user holds at once (neither revoked nor expired)."""

MAX_SPENT_TOKENS_KEPT_PER_USER = 100
"""Revoked and expired tokens of one user kept in ``apiTokens``: issuing a token drops the
oldest beyond this (a spent token authenticates nothing)."""

MAX_PRODUCTS_PER_SUPPLIER = 20_000
"""``createProduct``: a supplier's products, discontinued ones included (each with at most
``MAX_SKUS_PER_PRODUCT`` SKUs)."""

MAX_LOGISTICS_METHODS_PER_SUPPLIER = 200
"""``createLogisticsMethod``: a supplier's methods (each with at most ``MAX_RULES_PER_METHOD``
freight rules)."""

MAX_CLOUD_WAREHOUSES_PER_SUPPLIER = 100
"""``createCloudWarehouse``."""

MAX_THIRD_PARTY_WAREHOUSES_PER_SUPPLIER = 100
"""``authoriseThirdPartyWarehouse``: revoked ones included (orders and returns keep naming
them)."""

MAX_STORES_PER_BUYER = 100
"""``connectStore``."""

MAX_STORE_PRODUCTS_PER_STORE = 20_000
"""``syncStoreOrders``: products a sync keeps of one store (each with at most
``MAX_VARIANTS_PER_STORE_PRODUCT`` variants); a sync that would pass it writes no product.
(Store orders naming a product the sync never brought add it: those are orders.)"""

MAX_PRODUCT_LINKS_PER_STORE_PRODUCT = 100
"""``connectProduct``: links made for one store product, disconnected ones included (each
connect replaces the last)."""

MAX_QUOTES_PER_STORE_PRODUCT = 100
"""``requestQuote``: quotes asked for one store product, of any supplier and status."""

MAX_DISTRIBUTION_WAREHOUSES_PER_PARTNERSHIP = 50
"""``addDistributionWarehouse`` (accepting a partnership makes the first). Partnerships
themselves are one per supplier and distributor: an application again reopens the same one."""

MAX_RETURNS_PER_ORDER = 10
"""``createAfterSalesOrder`` and ``convertWithdrawalToReturn``: after-sales orders of one
order."""

MAX_PUSHES = 20
"""``pushOrders`` and ``pushReturns`` (and automatic pushes): times one order or return is
pushed to a warehouse (a push that failed is pushed again)."""


async def ensure_room(
    collection: QuerySet[Any],
    maximum: int,
    *,
    message: str,
    field: str | None = None,
    lock: QuerySet[Any] | None,
) -> None:
    """Refuse with ``TOO_MANY`` a write that would put more than ``maximum`` rows in
    ``collection`` (the rows of one owner). Call it inside the command's transaction, before
    writing. ``lock`` (the owner's row) is locked first, so on PostgreSQL a concurrent write to
    the same collection waits for this one to commit and then counts what it wrote (SQLite has
    one writer at a time); None where the command serialises its writes otherwise (a
    compare-and-set on the owner's status, whose loser is refused). The lock is ``FOR NO KEY
    UPDATE``: rows that merely reference the owner (its orders, its events' audience) are still
    written meanwhile."""
    if lock is not None:
        await lock.select_for_update(no_key=True).first()
    if await collection.count() >= maximum:
        raise DomainError(ErrorCode.TOO_MANY, message, field=field)
