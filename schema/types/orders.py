"""Orders with their lines, timeline, shipment and deputes; quotes; wallets."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import Info

from domain import limits
from domain.distribution import models as dm
from domain.orders import models as m
from domain.orders import queries as order_queries
from domain.payments import models as w
from domain.payments.charges import (
    MAX_ORDERS_PER_PAYMENT,
    Charges,
    PriceEstimate,
    prices_estimated,
)
from resolvers.selection import selected
from schema.global_ids import gid, key_of, optional_gid
from schema.types.catalogue import LogisticsMethod, Sku
from schema.types.enums import LineSource
from schema.types.errors import UserError
from schema.types.node import Node
from schema.types.pagination import PageInfo
from schema.types.prefetch import MaybeAwaitable, Prefetched, prefetched_slot
from schema.types.stores import Store, StorePlatform

if TYPE_CHECKING:
    from schema.types.distribution import OrderDistribution, WarehouseAttempt, Withdrawal

OrderKind = strawberry.enum(m.OrderKind)
OrderStatus = strawberry.enum(m.OrderStatus, description="Order status; names are stable.")

TrackingSync = strawberry.enum(m.TrackingSync)
DeputeType = strawberry.enum(m.DeputeType)
DeputeOutcome = strawberry.enum(m.DeputeOutcome)
DeputeStatus = strawberry.enum(m.DeputeStatus)
QuoteStatus = strawberry.enum(m.QuoteStatus)
PushStatusFilter = strawberry.enum(
    dm.PushStatus,
    name="PushStatus",
    description="Where an order or a return stands with the third-party warehouse.",
)
WithdrawalStatusFilter = strawberry.enum(dm.WithdrawalStatus, name="WithdrawalStatus")
WalletEntryKind = strawberry.enum(w.EntryKind)


@strawberry.type
class Address:
    name: str
    address1: str
    address2: str
    city: str
    province: str
    zip: str
    country_code: str
    phone: str


@strawberry.type
class OrderLine(Node):
    title: str
    quantity: int
    source: LineSource
    unit_price: Decimal | None = strawberry.field(
        description="The price of one unit: charged at payment once the order is paid; before "
        "that, the price payment would charge now, the SKU's price for the line's quantity "
        "(the order's `pricesEstimated` is true). Null while payment could not price the line: "
        "not connected to a SKU, or its SKU no longer sold."
    )
    store_variant_id: strawberry.ID | None
    sku_id: strawberry.ID | None
    stock_quantity: int = strawberry.field(
        description="Units shipped from the buyer's cloud-warehouse stock (freight only)."
    )
    prefetched: Prefetched = prefetched_slot()

    def show_estimate(self, estimate: PriceEstimate | None) -> None:
        """The unit price paying would charge now (its order's prices are estimated)."""
        found = estimate.unit_prices.get(key_of(self.id)) if estimate is not None else None
        self.unit_price = found

    @classmethod
    def from_model(cls, ln: m.OrderLine) -> OrderLine:
        return cls(
            id=gid("OrderLine", ln.id),
            title=ln.title,
            quantity=ln.quantity,
            source=LineSource(ln.source),
            unit_price=ln.unit_price,
            store_variant_id=optional_gid("StoreVariant", ln.store_variant_id),
            sku_id=optional_gid("Sku", ln.sku_id),
            stock_quantity=ln.stock_quantity,
        )

    @strawberry.field(graphql_type=Sku | None)
    def sku(self, info: Info) -> MaybeAwaitable[Sku | None]:
        if "sku" in self.prefetched:
            return self.prefetched["sku"]
        return self._load_sku(info)

    async def _load_sku(self, info: Info) -> Sku | None:
        if self.sku_id is None:
            return None
        row = await info.context.loaders.skus.load(key_of(self.sku_id))
        return Sku.from_model(row) if row else None


@strawberry.type(description="One entry of the order timeline.")
class OrderTransition:
    from_status: OrderStatus | None
    to_status: OrderStatus
    actor_user_id: strawberry.ID | None
    reason: str
    at: datetime

    @classmethod
    def from_model(cls, t: m.OrderTransition) -> OrderTransition:
        return cls(
            from_status=t.from_status,
            to_status=t.to_status,
            actor_user_id=optional_gid("User", t.actor_user_id),
            reason=t.reason,
            at=t.created_at,
        )


@strawberry.type
class Depute(Node):
    order_id: strawberry.ID
    type: DeputeType
    reason: str
    description: str
    evidence: list[str]
    expected_outcome: DeputeOutcome
    status: DeputeStatus
    resolution_note: str | None
    refund_amount: Decimal | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_model(cls, d: m.Depute) -> Depute:
        return cls(
            id=gid("Depute", d.id),
            order_id=gid("Order", d.order_id),
            type=d.type,
            reason=d.reason,
            description=d.description,
            evidence=list(d.evidence),
            expected_outcome=d.expected_outcome,
            status=d.status,
            resolution_note=d.resolution_note,
            refund_amount=d.refund_amount,
            created_at=d.created_at,
            resolved_at=d.resolved_at,
        )


@strawberry.type
class Order(Node):
    number: str
    kind: OrderKind
    status: OrderStatus
    buyer_id: strawberry.ID
    supplier_id: strawberry.ID | None
    store_id: strawberry.ID | None
    store_order_id: str | None
    store_order_number: str | None
    currency: str | None
    customer_name: str
    shipping_address: Address
    logistics_method_id: strawberry.ID | None
    freight_amount: Decimal | None = strawberry.field(
        description="The freight charged at payment; null before (`freightQuote` prices it)."
    )
    paid_amount: Decimal
    refunded_amount: Decimal
    carrier: str | None
    tracking_number: str | None
    tracking_sync: TrackingSync = strawberry.field(
        description="Whether the tracking reached the buyer's store."
    )
    tracking_sync_error: str | None = strawberry.field(
        description="The store's answer to the last failed tracking push."
    )
    tracking_sync_attempts: int = strawberry.field(
        description="Tracking pushes tried so far (each one retried by the connector itself)."
    )
    abnormal_reason: str | None
    paid_at: datetime | None
    shipped_at: datetime | None
    cloud_warehouse_id: strawberry.ID | None = strawberry.field(
        description="Where a CLOUD_WAREHOUSE order goes, or the stock an order ships from."
    )
    expected_arrival_at: datetime | None = strawberry.field(
        description="CLOUD_WAREHOUSE orders in transit: when they should arrive."
    )
    stock_received_at: datetime | None
    created_at: datetime
    updated_at: datetime
    prices_estimated: bool = strawberry.field(
        description="True while the order awaits payment (UNRECOGNIZED, AWAITING_PAYMENT, or "
        "ABNORMAL before payment): `goodsAmount` and the lines' `unitPrice` are then what paying "
        "it would charge now, and follow the supplier's prices until payment. False once paid: "
        "they are the amounts charged, fixed at payment (and for an order cancelled unpaid, "
        "which has none)."
    )
    row: strawberry.Private[m.Order]
    paid_goods_amount: strawberry.Private[Decimal | None]
    prefetched: Prefetched = prefetched_slot()

    @classmethod
    def from_model(cls, o: m.Order) -> Order:
        address = {
            k: str((o.shipping_address or {}).get(k, "") or "")
            for k in (
                "name",
                "address1",
                "address2",
                "city",
                "province",
                "zip",
                "country_code",
                "phone",
            )
        }
        return cls(
            id=gid("Order", o.id),
            number=o.number,
            kind=o.kind,
            status=o.status,
            buyer_id=gid("Organisation", o.buyer_id),
            supplier_id=optional_gid("Organisation", o.supplier_id),
            store_id=optional_gid("Store", o.store_id),
            store_order_id=o.store_order_id,
            store_order_number=o.store_order_number,
            currency=o.currency,
            customer_name=o.customer_name,
            shipping_address=Address(**address),
            logistics_method_id=optional_gid("LogisticsMethod", o.logistics_method_id),
            freight_amount=o.freight_amount,
            paid_amount=o.paid_amount,
            refunded_amount=o.refunded_amount,
            carrier=o.carrier,
            tracking_number=o.tracking_number,
            tracking_sync=o.tracking_sync,
            tracking_sync_error=o.tracking_sync_error,
            tracking_sync_attempts=o.tracking_sync_attempts,
            abnormal_reason=o.abnormal_reason,
            paid_at=o.paid_at,
            shipped_at=o.shipped_at,
            cloud_warehouse_id=optional_gid("CloudWarehouse", o.cloud_warehouse_id),
            expected_arrival_at=o.expected_arrival_at,
            stock_received_at=o.stock_received_at,
            created_at=o.created_at,
            updated_at=o.updated_at,
            prices_estimated=prices_estimated(o),
            row=o,
            paid_goods_amount=o.goods_amount,
        )

    @strawberry.field(
        graphql_type=Decimal | None,
        description="What the goods cost: the amount charged at payment once paid (units "
        "shipped from the buyer's stock excluded); before, while `pricesEstimated`, what paying "
        "would charge now for supplying every line at its SKU's price for the line's quantity. "
        "Null before payment while a line cannot be priced (not connected to a SKU, or no "
        "longer sold), and for an order cancelled unpaid.",
    )
    def goods_amount(self, info: Info) -> MaybeAwaitable[Decimal | None]:
        if "goods_amount" in self.prefetched:
            return self.prefetched["goods_amount"]
        if not self.prices_estimated:
            return self.paid_goods_amount
        return self._estimated_goods_amount(info)

    async def _estimated_goods_amount(self, info: Info) -> Decimal | None:
        estimate = await info.context.loaders.price_estimates.load(self.row)
        return estimate.goods if estimate is not None else None

    def show_estimate(self, estimate: PriceEstimate | None) -> None:
        """Carry what paying would charge now (``estimate``, for an order whose prices are
        estimated): its goods amount, and each prefetched line's unit price."""
        if not self.prices_estimated:
            self.prefetched["goods_amount"] = self.paid_goods_amount
            return
        self.prefetched["goods_amount"] = estimate.goods if estimate is not None else None
        for line in self.prefetched.get("lines", ()):
            line.show_estimate(estimate)

    @strawberry.field(
        graphql_type=list[OrderLine], description=f"At most {limits.MAX_ORDER_LINES}."
    )
    def lines(self, info: Info) -> MaybeAwaitable[list[OrderLine]]:
        if "lines" in self.prefetched:
            return self.prefetched["lines"]
        return self._load_lines(info)

    async def _load_lines(self, info: Info) -> list[OrderLine]:
        rows = await info.context.loaders.lines_by_order.load(key_of(self.id))
        lines = [OrderLine.from_model(ln) for ln in rows]
        if self.prices_estimated and "unitPrice" in selected(info):
            estimate = await info.context.loaders.price_estimates.load(self.row)
            for line in lines:
                line.show_estimate(estimate)
        return lines

    @strawberry.field(graphql_type=Store | None)
    def store(self, info: Info) -> MaybeAwaitable[Store | None]:
        if "store" in self.prefetched:
            return self.prefetched["store"]
        return self._load_store(info)

    async def _load_store(self, info: Info) -> Store | None:
        if self.store_id is None:
            return None
        row = await info.context.loaders.stores.load(key_of(self.store_id))
        return Store.from_model(row) if row else None

    @strawberry.field(graphql_type=LogisticsMethod | None)
    def logistics_method(self, info: Info) -> MaybeAwaitable[LogisticsMethod | None]:
        if "logistics_method" in self.prefetched:
            return self.prefetched["logistics_method"]
        return self._load_logistics_method(info)

    async def _load_logistics_method(self, info: Info) -> LogisticsMethod | None:
        if self.logistics_method_id is None:
            return None
        row = await info.context.loaders.methods.load(key_of(self.logistics_method_id))
        return LogisticsMethod.from_model(row) if row else None

    @strawberry.field(
        description=f"Every status change, oldest first: at most {limits.MAX_TIMELINE}."
    )
    async def timeline(self, info: Info) -> list[OrderTransition]:
        rows = await info.context.loaders.transitions_by_order.load(key_of(self.id))
        return [OrderTransition.from_model(t) for t in rows]

    @strawberry.field(graphql_type=OrderTransition | None)
    def latest_transition(self, info: Info) -> MaybeAwaitable[OrderTransition | None]:
        if "latest_transition" in self.prefetched:
            return self.prefetched["latest_transition"]
        return self._load_latest_transition(info)

    async def _load_latest_transition(self, info: Info) -> OrderTransition | None:
        row = await info.context.loaders.latest_transition.load(key_of(self.id))
        return OrderTransition.from_model(row) if row else None

    @strawberry.field
    async def buyer_name(self, info: Info) -> str:
        row = await info.context.loaders.organisations.load(key_of(self.buyer_id))
        return row.name if row else ""

    @strawberry.field(description="Its state at a third-party warehouse (distribution orders).")
    async def distribution(
        self, info: Info
    ) -> Annotated[OrderDistribution, strawberry.lazy("schema.types.distribution")] | None:
        from schema.types.distribution import OrderDistribution

        row = await info.context.loaders.warehouse_orders.load(key_of(self.id))
        return OrderDistribution.from_model(row) if row else None

    @strawberry.field(
        description="Every withdraw request of this order, oldest first: "
        f"at most {limits.MAX_WITHDRAWALS}."
    )
    async def withdrawals(
        self, info: Info
    ) -> list[Annotated[Withdrawal, strawberry.lazy("schema.types.distribution")]]:
        from schema.types.distribution import Withdrawal

        rows = await info.context.loaders.withdrawals_by_order.load(key_of(self.id))
        return [Withdrawal.from_model(w) for w in rows]

    @strawberry.field(
        description="The latest calls made to a third-party warehouse for this order: "
        f"at most {limits.MAX_ATTEMPTS_KEPT}."
    )
    async def warehouse_attempts(
        self, info: Info
    ) -> list[Annotated[WarehouseAttempt, strawberry.lazy("schema.types.distribution")]]:
        from schema.types.distribution import WarehouseAttempt

        rows = await info.context.loaders.attempts_by_order.load(key_of(self.id))
        return [WarehouseAttempt.from_model(a) for a in rows]

    @strawberry.field(description=f"At most {limits.MAX_DEPUTES_PER_ORDER}.")
    async def deputes(self, info: Info) -> list[Depute]:
        rows = await info.context.loaders.deputes_by_order.load(key_of(self.id))
        return [Depute.from_model(d) for d in rows]


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo


@strawberry.type
class OrderCount:
    status: OrderStatus
    count: int


@strawberry.input
class OrderFilterInput:
    statuses: list[OrderStatus] | None = None
    kinds: list[OrderKind] | None = None
    store_id: strawberry.ID | None = None
    platform: StorePlatform | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    search: str | None = strawberry.field(
        default=None, description="An order number, store order number or tracking number."
    )
    distributor_name: str | None = strawberry.field(
        default=None, description="Orders of partnered distributors whose name contains this."
    )
    distribution_only: bool = strawberry.field(
        default=False, description="Only orders of partnered distributors."
    )
    push_statuses: list[PushStatusFilter] | None = None
    withdrawal_statuses: list[WithdrawalStatusFilter] | None = None


@strawberry.type
class OrderCharge:
    order_id: strawberry.ID
    goods: Decimal
    freight: Decimal
    total: Decimal


@strawberry.type(description="What paying these orders costs.")
class FreightQuote:
    currency: str
    goods: Decimal
    freight: Decimal
    total: Decimal
    orders: list[OrderCharge] = strawberry.field(
        description=f"One per order asked for: at most {MAX_ORDERS_PER_PAYMENT}."
    )

    @classmethod
    def from_charges(cls, c: Charges) -> FreightQuote:
        return cls(
            currency=c.currency,
            goods=c.goods,
            freight=c.freight,
            total=c.total,
            orders=[
                OrderCharge(
                    order_id=gid("Order", o.order.id),
                    goods=o.goods,
                    freight=o.freight,
                    total=o.total,
                )
                for o in c.orders
            ],
        )


@strawberry.type
class Quote(Node):
    buyer_id: strawberry.ID
    supplier_id: strawberry.ID
    store_product_id: strawberry.ID
    note: str
    target_price: Decimal | None
    links: list[str]
    status: QuoteStatus
    product_id: strawberry.ID | None
    message: str
    created_at: datetime
    updated_at: datetime
    _sku_prices: strawberry.Private[list[dict[str, str]]]

    @classmethod
    def from_model(cls, q: m.Quote) -> Quote:
        return cls(
            id=gid("Quote", q.id),
            buyer_id=gid("Organisation", q.buyer_id),
            supplier_id=gid("Organisation", q.supplier_id),
            store_product_id=gid("StoreProduct", q.store_product_id),
            note=q.note,
            target_price=q.target_price,
            links=list(q.links),
            status=q.status,
            product_id=optional_gid("Product", q.product_id),
            message=q.message,
            created_at=q.created_at,
            updated_at=q.updated_at,
            _sku_prices=list(q.sku_prices),
        )

    @strawberry.field(description=f"One per SKU: at most {limits.MAX_QUOTED_PRICES}.")
    def sku_prices(self) -> list[QuotedPrice]:
        return [
            QuotedPrice(sku_id=gid("Sku", p["skuId"]), unit_price=Decimal(p["unitPrice"]))
            for p in self._sku_prices
        ]


@strawberry.type
class QuotedPrice:
    sku_id: strawberry.ID
    unit_price: Decimal


@strawberry.type
class Wallet(Node):
    buyer_id: strawberry.ID
    supplier_id: strawberry.ID
    currency: str
    balance: Decimal

    @classmethod
    def from_model(cls, wl: w.Wallet) -> Wallet:
        return cls(
            id=gid("Wallet", wl.id),
            buyer_id=gid("Organisation", wl.buyer_id),
            supplier_id=gid("Organisation", wl.supplier_id),
            currency=wl.currency,
            balance=wl.balance,
        )


@strawberry.type
class WalletEntry(Node):
    kind: WalletEntryKind
    amount: Decimal
    order_id: strawberry.ID | None
    note: str
    created_at: datetime

    @classmethod
    def from_model(cls, e: w.WalletEntry) -> WalletEntry:
        return cls(
            id=gid("WalletEntry", e.id),
            kind=e.kind,
            amount=e.amount,
            order_id=optional_gid("Order", e.order_id),
            note=e.note,
            created_at=e.created_at,
        )


# -- inputs and payloads -------------------------------------------------------------------


@strawberry.type
class OrderPayload:
    order: Order | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class OrdersPayload:
    orders: list[Order] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class PayOrdersPayload:
    orders: list[Order] = strawberry.field(default_factory=list)
    charged: FreightQuote | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AddressInput:
    name: str
    address1: str
    address2: str = ""
    city: str
    province: str = ""
    zip: str = ""
    country_code: str
    phone: str = ""


@strawberry.input
class ManualOrderLineInput:
    sku_id: strawberry.ID
    quantity: int


@strawberry.input
class CreateManualOrderInput:
    lines: list[ManualOrderLineInput]
    shipping_address: AddressInput
    logistics_method_id: strawberry.ID | None = None


@strawberry.input
class OpenDeputeInput:
    order_id: strawberry.ID
    type: DeputeType
    reason: str
    description: str = ""
    evidence: list[str] = strawberry.field(default_factory=list)
    expected_outcome: DeputeOutcome


@strawberry.type
class DeputePayload:
    depute: Depute | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RequestQuoteInput:
    supplier_id: strawberry.ID
    store_product_id: strawberry.ID
    note: str = ""
    target_price: Decimal | None = None
    links: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class QuotedPriceInput:
    sku_id: strawberry.ID
    unit_price: Decimal


@strawberry.input
class AnswerQuoteInput:
    quote_id: strawberry.ID
    product_id: strawberry.ID
    prices: list[QuotedPriceInput]
    message: str = ""


@strawberry.type
class QuotePayload:
    quote: Quote | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WalletPayload:
    wallet: Wallet | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(
    description="A quote changed status (subscription). `status` is the status this event set; "
    "`quote` is the quote as it is now."
)
class QuoteUpdate:
    event_id: strawberry.ID
    quote_id: strawberry.ID
    status: QuoteStatus
    at: datetime
    quote: Quote


@strawberry.type(description="An order's status changed (subscription).")
class OrderStatusChange:
    event_id: strawberry.ID
    order_id: strawberry.ID
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str
    at: datetime

    @strawberry.field
    async def order(self, info: Info) -> Order | None:
        # One event, one order: read at once. Through a DataLoader the read would start only
        # after every other subscription had served this event (its batch waits a loop turn).
        viewer = info.context.viewer
        row = viewer and await order_queries.get_order(
            viewer=viewer, order_id=key_of(self.order_id)
        )
        return Order.from_model(row) if row else None
