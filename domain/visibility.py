"""What each caller may see: one scope per kind of object, shared by the list queries and by
``node(id:)``, so an object is visible through every path or through none.

Each scope is a query set of the rows the viewer's organisation may read. Children are scoped
through their parent's scope (a line is visible when its order is), never by a second copy of
the parent's rule.
"""

from __future__ import annotations

from collections.abc import Callable

from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from domain.access import Viewer
from domain.after_sales.models import AfterSalesOrder
from domain.catalogue.models import LogisticsMethod, Product, ProductStatus, Sku
from domain.distribution.models import (
    DistributionSettings,
    DistributionWarehouse,
    Partnership,
    ThirdPartyWarehouse,
    WarehouseAttempt,
    Withdrawal,
)
from domain.events.models import Event, EventAudience
from domain.orders.models import Depute, Order, OrderLine, Quote
from domain.organisations.models import ApiToken, Organisation, OrganisationKind, Role, User
from domain.payments.models import Wallet, WalletEntry
from domain.sla.models import SlaBreach
from domain.stock.models import CloudWarehouse, StockItem, StockMovement
from domain.stores.models import ProductLink, Store, StoreProduct, StoreVariant


def _is_supplier(viewer: Viewer) -> bool:
    return viewer.organisation_kind is OrganisationKind.SUPPLIER


def _own_side(viewer: Viewer) -> dict[str, int]:
    """Objects between a buyer and a supplier: the caller's side of them."""
    column = "supplier_id" if _is_supplier(viewer) else "buyer_id"
    return {column: viewer.organisation_id}


def _ids(query: QuerySet) -> Subquery:
    return Subquery(query.values("id"))


def organisations(viewer: Viewer) -> QuerySet[Organisation]:
    """The caller's own organisation, and suppliers (their catalogues are open to buyers)."""
    return Organisation.filter(Q(id=viewer.organisation_id) | Q(kind=OrganisationKind.SUPPLIER))


def users(viewer: Viewer) -> QuerySet[User]:
    return User.filter(organisation_id=viewer.organisation_id)


def api_tokens(viewer: Viewer) -> QuerySet[ApiToken]:
    """An admin sees every token of the organisation; anyone else only their own."""
    query = ApiToken.filter(organisation_id=viewer.organisation_id)
    return query if viewer.has_role(Role.ADMIN) else query.filter(user_id=viewer.user_id)


def products(viewer: Viewer) -> QuerySet[Product]:
    """A supplier sees its own products; buyers see every active one."""
    if _is_supplier(viewer):
        return Product.filter(supplier_id=viewer.organisation_id)
    return Product.filter(status=ProductStatus.ACTIVE)


def skus(viewer: Viewer) -> QuerySet[Sku]:
    return Sku.filter(product_id__in=_ids(products(viewer)))


def logistics_methods(viewer: Viewer) -> QuerySet[LogisticsMethod]:
    """A supplier sees its own methods; buyers see every active one."""
    if _is_supplier(viewer):
        return LogisticsMethod.filter(supplier_id=viewer.organisation_id)
    return LogisticsMethod.filter(is_active=True)


def stores(viewer: Viewer) -> QuerySet[Store]:
    """A buyer's own stores; a supplier sees the stores its orders came from."""
    if _is_supplier(viewer):
        return Store.filter(id__in=Subquery(orders(viewer).values("store_id")))
    return Store.filter(buyer_id=viewer.organisation_id)


def own_stores(viewer: Viewer) -> QuerySet[Store]:
    """The stores the caller's organisation connected (and may change)."""
    return Store.filter(buyer_id=viewer.organisation_id)


def store_products(viewer: Viewer) -> QuerySet[StoreProduct]:
    return StoreProduct.filter(store_id__in=_ids(own_stores(viewer)))


def store_variants(viewer: Viewer) -> QuerySet[StoreVariant]:
    return StoreVariant.filter(store_id__in=_ids(own_stores(viewer)))


def product_links(viewer: Viewer) -> QuerySet[ProductLink]:
    """Links of the buyer's store products (the buyer made them; suppliers see orders)."""
    return ProductLink.filter(buyer_id=viewer.organisation_id)


def quotes(viewer: Viewer) -> QuerySet[Quote]:
    return Quote.filter(**_own_side(viewer))


def orders(viewer: Viewer) -> QuerySet[Order]:
    """Every order query starts here: the caller's side of the order, nothing else."""
    return Order.filter(**_own_side(viewer))


def order_lines(viewer: Viewer) -> QuerySet[OrderLine]:
    return OrderLine.filter(order_id__in=_ids(orders(viewer)))


def deputes(viewer: Viewer) -> QuerySet[Depute]:
    return Depute.filter(order_id__in=_ids(orders(viewer)))


def wallets(viewer: Viewer) -> QuerySet[Wallet]:
    return Wallet.filter(**_own_side(viewer))


def wallet_entries(viewer: Viewer) -> QuerySet[WalletEntry]:
    return WalletEntry.filter(wallet_id__in=_ids(wallets(viewer)))


def _distribution_side(viewer: Viewer) -> dict[str, int]:
    column = "supplier_id" if _is_supplier(viewer) else "distributor_id"
    return {column: viewer.organisation_id}


def partnerships(viewer: Viewer) -> QuerySet[Partnership]:
    return Partnership.filter(**_distribution_side(viewer))


def distribution_warehouses(viewer: Viewer) -> QuerySet[DistributionWarehouse]:
    return DistributionWarehouse.filter(partnership_id__in=_ids(partnerships(viewer)))


def third_party_warehouses(viewer: Viewer) -> QuerySet[ThirdPartyWarehouse]:
    """A supplier's connections to third-party warehouses: its own staff only."""
    if not _is_supplier(viewer) or not viewer.has_role(Role.STAFF):
        return ThirdPartyWarehouse.filter(id=-1)
    return ThirdPartyWarehouse.filter(supplier_id=viewer.organisation_id)


def distribution_settings(viewer: Viewer) -> QuerySet[DistributionSettings]:
    if not _is_supplier(viewer) or not viewer.has_role(Role.STAFF):
        return DistributionSettings.filter(id=-1)
    return DistributionSettings.filter(supplier_id=viewer.organisation_id)


def after_sales_orders(viewer: Viewer) -> QuerySet[AfterSalesOrder]:
    return AfterSalesOrder.filter(**_distribution_side(viewer))


def withdrawals(viewer: Viewer) -> QuerySet[Withdrawal]:
    return Withdrawal.filter(**_distribution_side(viewer))


def sla_breaches(viewer: Viewer) -> QuerySet[SlaBreach]:
    """The caller's organisation's own breaches (by its own deadlines)."""
    return SlaBreach.filter(organisation_id=viewer.organisation_id)


def warehouse_attempts(viewer: Viewer) -> QuerySet[WarehouseAttempt]:
    """Calls made for an order or a return: visible with the order or the return."""
    return WarehouseAttempt.filter(
        Q(order_id__in=_ids(orders(viewer)))
        | Q(after_sales_id__in=_ids(after_sales_orders(viewer)))
    )


def cloud_warehouses(viewer: Viewer) -> QuerySet[CloudWarehouse]:
    """Active cloud warehouses are open to everyone (buyers stock them)."""
    return CloudWarehouse.filter(is_active=True)


def stock_items(viewer: Viewer) -> QuerySet[StockItem]:
    """A buyer's stock in cloud warehouses: the buyer's only."""
    return StockItem.filter(buyer_id=viewer.organisation_id)


def stock_movements(viewer: Viewer) -> QuerySet[StockMovement]:
    return StockMovement.filter(stock_item_id__in=_ids(stock_items(viewer)))


def events(viewer: Viewer) -> QuerySet[Event]:
    """Published events addressed to the caller's organisation."""
    audience = EventAudience.filter(organisation_id=viewer.organisation_id)
    return Event.filter(seq__not_isnull=True, id__in=Subquery(audience.values("event_id")))


SCOPES: dict[type[Model], Callable[[Viewer], QuerySet]] = {
    Organisation: organisations,
    User: users,
    ApiToken: api_tokens,
    Product: products,
    Sku: skus,
    LogisticsMethod: logistics_methods,
    Store: stores,
    StoreProduct: store_products,
    StoreVariant: store_variants,
    ProductLink: product_links,
    Quote: quotes,
    Order: orders,
    OrderLine: order_lines,
    Depute: deputes,
    Wallet: wallets,
    WalletEntry: wallet_entries,
    Partnership: partnerships,
    DistributionWarehouse: distribution_warehouses,
    ThirdPartyWarehouse: third_party_warehouses,
    DistributionSettings: distribution_settings,
    AfterSalesOrder: after_sales_orders,
    Withdrawal: withdrawals,
    WarehouseAttempt: warehouse_attempts,
    CloudWarehouse: cloud_warehouses,
    StockItem: stock_items,
    StockMovement: stock_movements,
    Event: events,
    SlaBreach: sla_breaches,
}


# The column a global id's key names, where it is not the primary key: an event is known by
# its sequence number, a supplier's settings by the supplier.
KEY_COLUMNS: dict[type[Model], str] = {Event: "seq", DistributionSettings: "supplier_id"}


async def visible(model: type[Model], viewer: Viewer, keys: list[int]) -> dict[int, Model]:
    """The rows of ``model`` with these keys that the viewer may see, by key."""
    column = KEY_COLUMNS.get(model, "id")
    rows = await SCOPES[model](viewer).filter(**{f"{column}__in": keys})
    return {getattr(row, column): row for row in rows}
