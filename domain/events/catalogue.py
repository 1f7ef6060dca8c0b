"""The event catalogue: every kind of event, what its payload holds, and who sees it.

Each ``EventType`` has one frozen dataclass here. Its attributes are the payload, typed;
``to_payload()`` gives the camelCase JSON stored in ``event.payload`` (and shown, with ids made
global, as ``Event.payload`` on the API) and ``from_payload()`` reads it back. Its constructor
(``of``) takes the domain objects and returns the ``NewEvent`` to record, with its subject and
its audience: the organisations that may see it. Nothing outside this module builds a payload
or an audience; readers use ``parse``/``payload_of`` and the attributes.

Who sees each event (its audience; ``domain.shared_data`` lists what others see besides), and
what it is about (its subject):

- ORGANISATION_UPDATED (Organisation): the organisation.
- USER_CREATED (User): the user's organisation.
- API_TOKEN_CREATED, API_TOKEN_REVOKED (ApiToken): the token's organisation.
- ORDER_CREATED, ORDER_STATUS_CHANGED, ORDER_TRACKING_SYNC (Order): the order's buyer and its
  supplier (once it has one).
- ORDER_UPDATED (Order): the order's buyer and supplier, unless a status change recorded with it
  told them already; and a supplier the order just left.
- QUOTE_UPDATED (Quote): the quote's buyer and supplier.
- DEPUTE_UPDATED (Depute): its order's buyer and supplier.
- WALLET_CHANGED (Wallet): the wallet's buyer and supplier.
- STORE_UPDATED (Store): the buyer (the suppliers of its orders see stores: shared data).
- PRODUCT_LINK_UPDATED (ProductLink): the buyer and the supplier.
- PRODUCT_LINK_STALE (ProductLink): the buyer.
- PRODUCT_UPDATED (Product), LOGISTICS_METHOD_UPDATED (LogisticsMethod),
  CLOUD_WAREHOUSE_UPDATED (CloudWarehouse): the supplier (buyers see them: shared data).
- INVENTORY_CHANGED, STOCK_LOW, STOCK_THRESHOLD_CHANGED (StockItem): the buyer owning the stock.
- PARTNERSHIP_UPDATED (Partnership): the supplier and the distributor.
- THIRD_PARTY_WAREHOUSE_UPDATED (ThirdPartyWarehouse): the supplier.
- DISTRIBUTION_SETTINGS_UPDATED (DistributionSettings, named by the supplier's id): the supplier.
- WAREHOUSE_PUSH_CHANGED (Order): the order's buyer and supplier.
- WAREHOUSE_ATTEMPT_RECORDED (Order or AfterSalesOrder): the order's buyer and supplier, or the
  return's distributor and supplier.
- WITHDRAWAL_STATUS_CHANGED (Withdrawal): the distributor and the supplier.
- RETURN_STATUS_CHANGED (AfterSalesOrder): the distributor and the supplier.
- SLA_BREACH_OPENED, SLA_BREACH_CLEARED (SlaBreach): the organisation whose deadline passed
  (each party of what is late has its own breach, by its own deadline).
- SLA_RULE_UPDATED (Organisation): the organisation that set its deadline for a rule.

Ids in payloads are the integer keys (as strings, except ``userId``);
``schema.global_ids.payload_for_clients`` turns them into global ids at the API's edge.

A new event type gets its class here and its place in ``CATALOGUE``
(``tests/test_event_catalogue.py`` fails for a type without one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from functools import cache
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Self, TypeVar, get_type_hints

from domain import tracing
from domain.after_sales.models import AfterSalesOrder, AfterSalesStatus
from domain.catalogue.models import LogisticsMethod
from domain.distribution.models import (
    DistributionSettings,
    Partnership,
    PartnershipStatus,
    PushStatus,
    TaskKind,
    ThirdPartyWarehouse,
    WarehouseOrder,
    WarehouseTask,
    Withdrawal,
    WithdrawalResolution,
    WithdrawalStatus,
)
from domain.events import EventType, NewEvent, PublishedEvent
from domain.orders.models import (
    Depute,
    DeputeStatus,
    Order,
    OrderKind,
    OrderStatus,
    Quote,
    QuoteStatus,
    TrackingSync,
)
from domain.organisations.models import ApiToken, Organisation, Role, User
from domain.payments.models import Wallet
from domain.sla.models import SlaBreach, SlaRule, SlaSetting
from domain.stock.models import CloudWarehouse, MovementKind, StockItem
from domain.stores.models import ProductLink, ProductLinkStatus, Store

# -- how an attribute is stored ------------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


@dataclass(frozen=True, slots=True)
class Stored:
    """How a payload attribute is stored: under ``key``, written by ``dump`` and read back by
    ``load``; ``omitted_if_none`` leaves the key out when the attribute is None."""

    key: str
    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same
    omitted_if_none: bool = False


def _stored(
    key: str,
    dump: Callable[[Any], Any] = _same,
    load: Callable[[Any], Any] = _same,
    *,
    optional: bool = False,
    omitted_if_none: bool = False,
) -> Stored:
    """Stored under ``key`` (None passes through when ``optional`` or ``omitted_if_none``)."""
    if optional or omitted_if_none:
        dump, load = _optional(dump), _optional(load)
    return Stored(key, dump, load, omitted_if_none)


def _id(key: str, *, optional: bool = False, omitted_if_none: bool = False) -> Stored:
    """An integer key stored as a string."""
    return _stored(key, str, int, optional=optional, omitted_if_none=omitted_if_none)


def _ids(key: str) -> Stored:
    """Integer keys stored as a list of strings."""
    return _stored(key, lambda ids: [str(i) for i in ids], lambda raw: tuple(int(i) for i in raw))


def _enum(
    key: str, kind: type[StrEnum], *, optional: bool = False, omitted_if_none: bool = False
) -> Stored:
    """An enum stored as its value."""
    return _stored(
        key, lambda member: member.value, kind, optional=optional, omitted_if_none=omitted_if_none
    )


@cache
def _layout(cls: type[EventPayload]) -> tuple[tuple[str, Stored], ...]:
    """``(attribute, how it is stored)`` of each field of ``cls``, in payload order."""
    hints = get_type_hints(cls, include_extras=True)
    layout = []
    for f in fields(cls):
        stored = [m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Stored)]
        if len(stored) != 1:
            raise TypeError(f"{cls.__name__}.{f.name} does not say how it is stored")
        layout.append((f.name, stored[0]))
    return tuple(layout)


def _orgs(*organisation_ids: int | None) -> tuple[int, ...]:
    return tuple(sorted({org for org in organisation_ids if org is not None}))


def order_parties(order: Order) -> tuple[int, ...]:
    """Who sees an order's events: its buyer and its supplier (once it has one)."""
    return _orgs(order.buyer_id, order.supplier_id)


@dataclass(frozen=True, slots=True)
class EventPayload:
    """The payload of one kind of event (``TYPE``)."""

    TYPE: ClassVar[EventType]

    def to_payload(self) -> dict[str, Any]:
        """The JSON object stored in ``event.payload``."""
        out: dict[str, Any] = {}
        for name, stored in _layout(type(self)):
            value = getattr(self, name)
            if value is None and stored.omitted_if_none:
                continue
            out[stored.key] = stored.dump(value)
        return out

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Self:
        """Read a stored payload back (keys it does not know are ignored)."""
        values: dict[str, Any] = {}
        for name, stored in _layout(cls):
            if stored.omitted_if_none and stored.key not in data:
                values[name] = None
            else:
                values[name] = stored.load(data[stored.key])
        return cls(**values)

    def _as_event(
        self,
        subject_type: str,
        subject_id: int | str,
        audience: Iterable[int],
        actor_user_id: int | None,
    ) -> NewEvent:
        """This payload as an event to record (the constructors below decide the arguments),
        carrying the current trace while tracing is on."""
        trace = tracing.current_traceparent() if tracing.ENABLED else None
        return NewEvent(self, subject_type, subject_id, tuple(audience), actor_user_id, trace)


# -- organisations, users, tokens ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrganisationUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.ORGANISATION_UPDATED
    name: Annotated[str, _stored("name")]
    previous_name: Annotated[str, _stored("previousName")]

    @classmethod
    def of(
        cls, organisation: Organisation, *, previous_name: str, actor_user_id: int | None
    ) -> NewEvent:
        """Seen by the organisation."""
        payload = cls(name=organisation.name, previous_name=previous_name)
        return payload._as_event("Organisation", organisation.id, [organisation.id], actor_user_id)


@dataclass(frozen=True, slots=True)
class UserCreated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.USER_CREATED
    email: Annotated[str, _stored("email")]
    role: Annotated[Role, _enum("role", Role)]

    @classmethod
    def of(cls, user: User, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the user's organisation."""
        payload = cls(email=user.email, role=user.role)
        return payload._as_event("User", user.id, [user.organisation_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class _TokenChanged(EventPayload):
    name: Annotated[str, _stored("name")]
    user_id: Annotated[int, _stored("userId")]  # an integer, unlike the other ids
    prefix: Annotated[str, _stored("prefix")]

    @classmethod
    def of(cls, token: ApiToken, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the token's organisation."""
        payload = cls(name=token.name, user_id=token.user_id, prefix=token.prefix)
        return payload._as_event("ApiToken", token.id, [token.organisation_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class ApiTokenCreated(_TokenChanged):
    TYPE: ClassVar[EventType] = EventType.API_TOKEN_CREATED


@dataclass(frozen=True, slots=True)
class ApiTokenRevoked(_TokenChanged):
    TYPE: ClassVar[EventType] = EventType.API_TOKEN_REVOKED


# -- orders ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderCreated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.ORDER_CREATED
    order_id: Annotated[int, _id("orderId")]
    number: Annotated[str, _stored("number")]
    status: Annotated[OrderStatus, _enum("status", OrderStatus)]
    kind: Annotated[OrderKind, _enum("kind", OrderKind)]

    @classmethod
    def of(cls, order: Order, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the order's buyer and supplier."""
        payload = cls(order_id=order.id, number=order.number, status=order.status, kind=order.kind)
        return payload._as_event("Order", order.id, order_parties(order), actor_user_id)


@dataclass(frozen=True, slots=True)
class OrderStatusChanged(EventPayload):
    TYPE: ClassVar[EventType] = EventType.ORDER_STATUS_CHANGED
    order_id: Annotated[int, _id("orderId")]
    number: Annotated[str, _stored("number")]
    from_status: Annotated[OrderStatus, _enum("from", OrderStatus)]
    to_status: Annotated[OrderStatus, _enum("to", OrderStatus)]
    reason: Annotated[str, _stored("reason")]

    @classmethod
    def of(
        cls,
        order: Order,
        previous: OrderStatus,
        target: OrderStatus,
        *,
        reason: str,
        actor_user_id: int | None,
    ) -> NewEvent:
        """Seen by the order's buyer and supplier."""
        payload = cls(
            order_id=order.id,
            number=order.number,
            from_status=previous,
            to_status=target,
            reason=reason,
        )
        return payload._as_event("Order", order.id, order_parties(order), actor_user_id)


@dataclass(frozen=True, slots=True)
class OrderTrackingSync(EventPayload):
    TYPE: ClassVar[EventType] = EventType.ORDER_TRACKING_SYNC
    order_id: Annotated[int, _id("orderId")]
    tracking_sync: Annotated[TrackingSync, _enum("trackingSync", TrackingSync)]
    error: Annotated[str | None, _stored("error")]

    @classmethod
    def of(cls, order: Order) -> NewEvent:
        """Seen by the order's buyer and supplier (the store connector acts: no actor)."""
        payload = cls(
            order_id=order.id, tracking_sync=order.tracking_sync, error=order.tracking_sync_error
        )
        return payload._as_event("Order", order.id, order_parties(order), None)


@dataclass(frozen=True, slots=True)
class OrderUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.ORDER_UPDATED
    order_id: Annotated[int, _id("orderId")]
    number: Annotated[str, _stored("number")]
    change: Annotated[str, _stored("change")]

    @classmethod
    def of(
        cls,
        order: Order,
        *,
        change: str,
        actor_user_id: int | None,
        parties_told: bool = False,
        previous_supplier_id: int | None = None,
    ) -> NewEvent | None:
        """Seen by the order's buyer and supplier, unless ``parties_told`` (a status change
        recorded with it told them), and by ``previous_supplier_id`` if the order just left
        that supplier. None when nobody is left to tell."""
        told = () if parties_told else order_parties(order)
        left = previous_supplier_id if previous_supplier_id != order.supplier_id else None
        audience = _orgs(*told, left)
        if not audience:
            return None
        payload = cls(order_id=order.id, number=order.number, change=change)
        return payload._as_event("Order", order.id, audience, actor_user_id)


@dataclass(frozen=True, slots=True)
class QuoteUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.QUOTE_UPDATED
    quote_id: Annotated[int, _id("quoteId")]
    status: Annotated[QuoteStatus, _enum("status", QuoteStatus)]

    @classmethod
    def of(cls, quote: Quote, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the quote's buyer and supplier."""
        payload = cls(quote_id=quote.id, status=quote.status)
        return payload._as_event(
            "Quote", quote.id, _orgs(quote.buyer_id, quote.supplier_id), actor_user_id
        )


@dataclass(frozen=True, slots=True)
class DeputeUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.DEPUTE_UPDATED
    depute_id: Annotated[int, _id("deputeId")]
    order_id: Annotated[int, _id("orderId")]
    status: Annotated[DeputeStatus, _enum("status", DeputeStatus)]

    @classmethod
    def of(cls, order: Order, depute: Depute, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the order's buyer and supplier."""
        payload = cls(depute_id=depute.id, order_id=order.id, status=depute.status)
        return payload._as_event("Depute", depute.id, order_parties(order), actor_user_id)


@dataclass(frozen=True, slots=True)
class WalletChanged(EventPayload):
    TYPE: ClassVar[EventType] = EventType.WALLET_CHANGED
    wallet_id: Annotated[int, _id("walletId")]
    reason: Annotated[str, _stored("reason")]

    @classmethod
    def of(cls, wallet: Wallet, *, reason: str, actor_user_id: int | None) -> NewEvent:
        """Seen by the wallet's buyer and supplier."""
        payload = cls(wallet_id=wallet.id, reason=reason)
        return payload._as_event(
            "Wallet", wallet.id, _orgs(wallet.buyer_id, wallet.supplier_id), actor_user_id
        )


# -- stores and product links ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.STORE_UPDATED
    store_id: Annotated[int, _id("storeId")]
    change: Annotated[str, _stored("change")]

    @classmethod
    def of(cls, store: Store, *, change: str, actor_user_id: int | None) -> NewEvent:
        """Seen by the buyer (the suppliers of its orders: ``domain.shared_data``)."""
        payload = cls(store_id=store.id, change=change)
        return payload._as_event("Store", store.id, [store.buyer_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class ProductLinkUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.PRODUCT_LINK_UPDATED
    product_link_id: Annotated[int, _id("productLinkId")]
    store_product_id: Annotated[int, _id("storeProductId")]
    status: Annotated[ProductLinkStatus, _enum("status", ProductLinkStatus)]

    @classmethod
    def of(cls, product_link: ProductLink, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the buyer and the supplier."""
        payload = cls(
            product_link_id=product_link.id,
            store_product_id=product_link.store_product_id,
            status=product_link.status,
        )
        audience = _orgs(product_link.buyer_id, product_link.supplier_id)
        return payload._as_event("ProductLink", product_link.id, audience, actor_user_id)


@dataclass(frozen=True, slots=True)
class ProductLinkStale(EventPayload):
    TYPE: ClassVar[EventType] = EventType.PRODUCT_LINK_STALE
    product_link_id: Annotated[int, _id("productLinkId")]
    reason: Annotated[str | None, _stored("reason")]
    affected_order_ids: Annotated[tuple[int, ...], _ids("affectedOrderIds")]

    @classmethod
    def of(
        cls,
        product_link: ProductLink,
        *,
        affected_order_ids: Iterable[int],
        actor_user_id: int | None,
    ) -> NewEvent:
        """Seen by the buyer, who re-connects the affected unpaid orders."""
        payload = cls(
            product_link_id=product_link.id,
            reason=product_link.stale_reason,
            affected_order_ids=tuple(sorted(affected_order_ids)),
        )
        return payload._as_event(
            "ProductLink", product_link.id, [product_link.buyer_id], actor_user_id
        )


# -- supplier catalogue and cloud warehouses ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.PRODUCT_UPDATED
    product_id: Annotated[int, _id("productId")]
    change: Annotated[str, _stored("change")]
    # the SKU that changed, if one did (the key is absent otherwise)
    sku_id: Annotated[int | None, _id("skuId", omitted_if_none=True)]

    @classmethod
    def of(
        cls,
        product_id: int,
        *,
        supplier_id: int,
        change: str,
        sku_id: int | None = None,
        actor_user_id: int | None,
    ) -> NewEvent:
        """Seen by the supplier (buyers browsing the catalogue: ``domain.shared_data``)."""
        payload = cls(product_id=product_id, change=change, sku_id=sku_id)
        return payload._as_event("Product", product_id, [supplier_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class LogisticsMethodUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.LOGISTICS_METHOD_UPDATED
    logistics_method_id: Annotated[int, _id("logisticsMethodId")]
    change: Annotated[str, _stored("change")]

    @classmethod
    def of(cls, method: LogisticsMethod, *, change: str, actor_user_id: int | None) -> NewEvent:
        """Seen by the supplier (buyers: ``domain.shared_data``)."""
        payload = cls(logistics_method_id=method.id, change=change)
        return payload._as_event("LogisticsMethod", method.id, [method.supplier_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class CloudWarehouseUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.CLOUD_WAREHOUSE_UPDATED
    warehouse_id: Annotated[int, _id("warehouseId")]
    change: Annotated[str, _stored("change")]

    @classmethod
    def of(cls, warehouse: CloudWarehouse, *, change: str, actor_user_id: int | None) -> NewEvent:
        """Seen by the supplier (buyers: ``domain.shared_data``)."""
        payload = cls(warehouse_id=warehouse.id, change=change)
        return payload._as_event(
            "CloudWarehouse", warehouse.id, [warehouse.supplier_id], actor_user_id
        )


# -- cloud-warehouse stock -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StockFigures(EventPayload):
    """A stock item's figures after a movement: what INVENTORY_CHANGED and STOCK_LOW carry."""

    stock_item_id: Annotated[int, _id("stockItemId")]
    sku_id: Annotated[int, _id("skuId")]
    warehouse_id: Annotated[int, _id("warehouseId")]
    on_hand: Annotated[int, _stored("onHand")]
    reserved: Annotated[int, _stored("reserved")]
    available: Annotated[int, _stored("available")]
    in_transit: Annotated[int, _stored("inTransit")]
    movement: Annotated[MovementKind, _enum("movement", MovementKind)]
    order_id: Annotated[int | None, _id("orderId", optional=True)]

    @staticmethod
    def _figures(item: StockItem, movement: MovementKind, order_id: int | None) -> dict[str, Any]:
        return {
            "stock_item_id": item.id,
            "sku_id": item.sku_id,
            "warehouse_id": item.warehouse_id,
            "on_hand": item.on_hand,
            "reserved": item.reserved,
            "available": item.available,
            "in_transit": item.in_transit,
            "movement": movement,
            "order_id": order_id or None,
        }


@dataclass(frozen=True, slots=True)
class InventoryChanged(StockFigures):
    TYPE: ClassVar[EventType] = EventType.INVENTORY_CHANGED

    @classmethod
    def of(
        cls,
        item: StockItem,
        *,
        movement: MovementKind,
        order_id: int | None,
        actor_user_id: int | None,
    ) -> NewEvent:
        """Seen by the buyer owning the stock."""
        payload = cls(**cls._figures(item, movement, order_id))
        return payload._as_event("StockItem", item.id, [item.buyer_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class StockLow(StockFigures):
    TYPE: ClassVar[EventType] = EventType.STOCK_LOW
    threshold: Annotated[int, _stored("threshold")]

    @classmethod
    def of(
        cls,
        item: StockItem,
        *,
        movement: MovementKind,
        order_id: int | None,
        threshold: int,
        actor_user_id: int | None,
    ) -> NewEvent:
        """Seen by the buyer owning the stock."""
        payload = cls(**cls._figures(item, movement, order_id), threshold=threshold)
        return payload._as_event("StockItem", item.id, [item.buyer_id], actor_user_id)


@dataclass(frozen=True, slots=True)
class StockThresholdChanged(EventPayload):
    TYPE: ClassVar[EventType] = EventType.STOCK_THRESHOLD_CHANGED
    stock_item_id: Annotated[int, _id("stockItemId")]
    threshold: Annotated[int | None, _stored("threshold")]

    @classmethod
    def of(cls, item: StockItem, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the buyer owning the stock."""
        payload = cls(stock_item_id=item.id, threshold=item.low_stock_threshold)
        return payload._as_event("StockItem", item.id, [item.buyer_id], actor_user_id)


# -- distribution ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartnershipUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.PARTNERSHIP_UPDATED
    partnership_id: Annotated[int, _id("partnershipId")]
    status: Annotated[PartnershipStatus, _enum("status", PartnershipStatus)]

    @classmethod
    def of(cls, partnership: Partnership, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the supplier and the distributor."""
        payload = cls(partnership_id=partnership.id, status=partnership.status)
        audience = _orgs(partnership.supplier_id, partnership.distributor_id)
        return payload._as_event("Partnership", partnership.id, audience, actor_user_id)


@dataclass(frozen=True, slots=True)
class ThirdPartyWarehouseUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.THIRD_PARTY_WAREHOUSE_UPDATED
    third_party_warehouse_id: Annotated[int, _id("thirdPartyWarehouseId")]
    change: Annotated[str, _stored("change")]

    @classmethod
    def of(
        cls, warehouse: ThirdPartyWarehouse, *, change: str, actor_user_id: int | None
    ) -> NewEvent:
        """Seen by the supplier."""
        payload = cls(third_party_warehouse_id=warehouse.id, change=change)
        return payload._as_event(
            "ThirdPartyWarehouse", warehouse.id, [warehouse.supplier_id], actor_user_id
        )


@dataclass(frozen=True, slots=True)
class DistributionSettingsUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.DISTRIBUTION_SETTINGS_UPDATED
    charge_on_push: Annotated[bool, _stored("chargeOnPush")]
    auto_push_returns: Annotated[bool, _stored("autoPushReturns")]

    @classmethod
    def of(cls, settings: DistributionSettings, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the supplier (the subject is the supplier's settings, named by its id)."""
        payload = cls(
            charge_on_push=settings.charge_on_push, auto_push_returns=settings.auto_push_returns
        )
        supplier = settings.supplier_id
        return payload._as_event("DistributionSettings", supplier, [supplier], actor_user_id)


@dataclass(frozen=True, slots=True)
class WarehousePushChanged(EventPayload):
    TYPE: ClassVar[EventType] = EventType.WAREHOUSE_PUSH_CHANGED
    order_id: Annotated[int, _id("orderId")]
    number: Annotated[str, _stored("number")]
    push_status: Annotated[PushStatus, _enum("pushStatus", PushStatus)]
    warehouse_status: Annotated[str | None, _stored("warehouseStatus")]
    error: Annotated[str | None, _stored("error")]

    @classmethod
    def of(cls, order: Order, record: WarehouseOrder, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the order's buyer and supplier."""
        payload = cls(
            order_id=order.id,
            number=order.number,
            push_status=record.push_status,
            warehouse_status=record.warehouse_status,
            error=record.push_error,
        )
        return payload._as_event("Order", order.id, order_parties(order), actor_user_id)


@dataclass(frozen=True, slots=True)
class WarehouseAttemptRecorded(EventPayload):
    TYPE: ClassVar[EventType] = EventType.WAREHOUSE_ATTEMPT_RECORDED
    task_kind: Annotated[TaskKind, _enum("taskKind", TaskKind)]
    ok: Annotated[bool, _stored("ok")]
    outcome: Annotated[str, _stored("outcome")]

    @classmethod
    def of(
        cls, task: WarehouseTask, subject: Order | AfterSalesOrder, *, ok: bool, outcome: str
    ) -> NewEvent | None:
        """Seen by the order's buyer and supplier, or the return's distributor and supplier
        (the worker acts: no actor). None when the subject has no side left to tell."""
        if isinstance(subject, Order):
            subject_type, audience = "Order", order_parties(subject)
        else:
            subject_type = "AfterSalesOrder"
            audience = _orgs(subject.distributor_id, subject.supplier_id)
        if not audience:
            return None
        payload = cls(task_kind=task.kind, ok=ok, outcome=outcome[:500])
        return payload._as_event(subject_type, subject.id, audience, None)


@dataclass(frozen=True, slots=True)
class WithdrawalStatusChanged(EventPayload):
    """A withdrawal's status, and once a WITHDRAW_FAILED one is resolved (retried, closed,
    converted to a return) how and with what note; the resolution's keys are absent before
    (and in events recorded before they existed)."""

    TYPE: ClassVar[EventType] = EventType.WITHDRAWAL_STATUS_CHANGED
    withdrawal_id: Annotated[int, _id("withdrawalId")]
    order_id: Annotated[int | None, _id("orderId", optional=True)]
    after_sales_id: Annotated[int | None, _id("afterSalesId", optional=True)]
    status: Annotated[WithdrawalStatus, _enum("status", WithdrawalStatus)]
    reason: Annotated[str, _stored("reason")]  # why it failed; empty otherwise
    resolution: Annotated[
        WithdrawalResolution | None,
        _enum("resolution", WithdrawalResolution, omitted_if_none=True),
    ]
    resolution_note: Annotated[str | None, _stored("resolutionNote", omitted_if_none=True)]

    @classmethod
    def of(cls, withdrawal: Withdrawal, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the distributor and the supplier."""
        resolved = withdrawal.resolution is not None
        payload = cls(
            withdrawal_id=withdrawal.id,
            order_id=withdrawal.order_id or None,
            after_sales_id=withdrawal.after_sales_id or None,
            status=withdrawal.status,
            reason=withdrawal.failure or "",
            resolution=withdrawal.resolution,
            resolution_note=(withdrawal.resolution_note or "") if resolved else None,
        )
        audience = _orgs(withdrawal.distributor_id, withdrawal.supplier_id)
        return payload._as_event("Withdrawal", withdrawal.id, audience, actor_user_id)


@dataclass(frozen=True, slots=True)
class ReturnStatusChanged(EventPayload):
    """An after-sales order as it is after a change. A withdraw step of the return (its
    withdrawal WITHDRAWING, WITHDRAWN or WITHDRAW_FAILED, or a failed one resolved) names the
    withdrawal (``withdrawal_id``, absent otherwise), and ``error`` is then the withdraw's
    failure while it stands at WITHDRAW_FAILED; otherwise ``error`` is the warehouse's push
    error or stock-in exception, if any."""

    TYPE: ClassVar[EventType] = EventType.RETURN_STATUS_CHANGED
    after_sales_id: Annotated[int, _id("afterSalesId")]
    number: Annotated[str, _stored("number")]
    status: Annotated[AfterSalesStatus, _enum("status", AfterSalesStatus)]
    push_status: Annotated[PushStatus, _enum("pushStatus", PushStatus)]
    withdrawal_status: Annotated[
        WithdrawalStatus | None, _enum("withdrawalStatus", WithdrawalStatus, optional=True)
    ]
    error: Annotated[str | None, _stored("error")]
    withdrawal_id: Annotated[int | None, _id("withdrawalId", omitted_if_none=True)]

    @classmethod
    def of(
        cls,
        item: AfterSalesOrder,
        *,
        actor_user_id: int | None,
        withdrawal: Withdrawal | None = None,
    ) -> NewEvent:
        """Seen by the distributor and the supplier. ``withdrawal``: the withdrawal of this
        return whose step (or resolution) the change is."""
        error = item.push_error
        if withdrawal is not None and item.withdrawal_status is WithdrawalStatus.WITHDRAW_FAILED:
            error = withdrawal.failure or error
        payload = cls(
            after_sales_id=item.id,
            number=item.number,
            status=item.status,
            push_status=item.push_status,
            withdrawal_status=item.withdrawal_status,
            error=error,
            withdrawal_id=withdrawal.id if withdrawal is not None else None,
        )
        audience = _orgs(item.distributor_id, item.supplier_id)
        return payload._as_event("AfterSalesOrder", item.id, audience, actor_user_id)


# -- service levels -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaBreachChange(EventPayload):
    """What both breach events say: the breach, its rule, and what is late (one of the ids)."""

    sla_breach_id: Annotated[int, _id("slaBreachId")]
    rule: Annotated[SlaRule, _enum("rule", SlaRule)]
    order_id: Annotated[int | None, _id("orderId", omitted_if_none=True)]
    withdrawal_id: Annotated[int | None, _id("withdrawalId", omitted_if_none=True)]
    quote_id: Annotated[int | None, _id("quoteId", omitted_if_none=True)]
    stock_item_id: Annotated[int | None, _id("stockItemId", omitted_if_none=True)]
    due_at: Annotated[datetime, _stored("dueAt", datetime.isoformat, datetime.fromisoformat)]

    @classmethod
    def _values(cls, breach: SlaBreach) -> dict[str, Any]:
        return {
            "sla_breach_id": breach.id,
            "rule": breach.rule,
            **breach.late_ids(),
            "due_at": breach.due_at,
        }

    def _breach_event(self, breach: SlaBreach) -> NewEvent:
        """Seen by the organisation whose deadline it is."""
        return self._as_event("SlaBreach", breach.id, [breach.organisation_id], None)


@dataclass(frozen=True, slots=True)
class SlaBreachOpened(SlaBreachChange):
    TYPE: ClassVar[EventType] = EventType.SLA_BREACH_OPENED

    @classmethod
    def of(cls, breach: SlaBreach) -> NewEvent:
        """Seen by the breach's organisation."""
        return cls(**cls._values(breach))._breach_event(breach)


@dataclass(frozen=True, slots=True)
class SlaBreachCleared(SlaBreachChange):
    TYPE: ClassVar[EventType] = EventType.SLA_BREACH_CLEARED
    reason: Annotated[str, _stored("reason")]

    @classmethod
    def of(cls, breach: SlaBreach) -> NewEvent:
        """Seen by the breach's organisation."""
        payload = cls(**cls._values(breach), reason=breach.clear_reason or "")
        return payload._breach_event(breach)


@dataclass(frozen=True, slots=True)
class SlaRuleUpdated(EventPayload):
    TYPE: ClassVar[EventType] = EventType.SLA_RULE_UPDATED
    rule: Annotated[SlaRule, _enum("rule", SlaRule)]
    minutes: Annotated[int, _stored("minutes")]
    enabled: Annotated[bool, _stored("enabled")]

    @classmethod
    def of(cls, setting: SlaSetting, *, actor_user_id: int | None) -> NewEvent:
        """Seen by the organisation whose deadline it is."""
        payload = cls(rule=setting.rule, minutes=setting.minutes, enabled=setting.enabled)
        return payload._as_event(
            "Organisation", setting.organisation_id, [setting.organisation_id], actor_user_id
        )


# -- the catalogue ---------------------------------------------------------------------------------

P = TypeVar("P", bound=EventPayload)

CATALOGUE: Mapping[EventType, type[EventPayload]] = MappingProxyType(
    {
        cls.TYPE: cls
        for cls in (
            OrganisationUpdated,
            UserCreated,
            ApiTokenCreated,
            ApiTokenRevoked,
            OrderCreated,
            OrderStatusChanged,
            OrderTrackingSync,
            OrderUpdated,
            QuoteUpdated,
            DeputeUpdated,
            WalletChanged,
            StoreUpdated,
            ProductLinkUpdated,
            ProductLinkStale,
            ProductUpdated,
            LogisticsMethodUpdated,
            CloudWarehouseUpdated,
            InventoryChanged,
            StockLow,
            StockThresholdChanged,
            PartnershipUpdated,
            ThirdPartyWarehouseUpdated,
            DistributionSettingsUpdated,
            WarehousePushChanged,
            WarehouseAttemptRecorded,
            WithdrawalStatusChanged,
            ReturnStatusChanged,
            SlaBreachOpened,
            SlaBreachCleared,
            SlaRuleUpdated,
        )
    }
)
"""The payload class of every event type."""


def payload_class(event_type: EventType | str) -> type[EventPayload]:
    """The payload class of ``event_type`` (LookupError for a type the catalogue lacks)."""
    try:
        return CATALOGUE[EventType(event_type)]
    except (KeyError, ValueError):
        raise LookupError(f"no payload class for event type {event_type!r}") from None


def parse(event: PublishedEvent) -> EventPayload:
    """The typed payload of a published (or stored) event."""
    return payload_class(event.type).from_payload(event.payload)


def order_of(event: PublishedEvent) -> int | None:
    """The order an event is about, if its payload names one."""
    order_id = getattr(parse(event), "order_id", None)
    return order_id if isinstance(order_id, int) else None


def payload_of(event: PublishedEvent, kind: type[P]) -> P:
    """The payload of ``event``, which must be of ``kind`` (subscriptions read one type)."""
    if event.type != kind.TYPE:
        raise TypeError(f"event {event.seq} is {event.type}, not {kind.TYPE}")
    return kind.from_payload(event.payload)


def public_payload(event: PublishedEvent) -> dict[str, Any]:
    """The payload as the API shows it (before ids become global): the catalogue's JSON. An
    event this catalogue cannot read (recorded by an older version) is shown as stored, without
    the keys tracing reserves (``domain.tracing``)."""
    try:
        return parse(event).to_payload()
    except (LookupError, TypeError, ValueError):
        return tracing.public(event.payload)
