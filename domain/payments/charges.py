"""What paying orders costs: goods at the quantity tiers plus freight, per order, with the
units the buyer's cloud stock covers (read only; shared by payment commands and freight quotes).

The same rule shows an unpaid order's prices before payment (``estimate_prices``): what paying
it would charge for its goods now, an estimate until payment fixes it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from types import MappingProxyType

from domain.catalogue.models import FreightRule, PriceTier, Product, ProductStatus, Sku
from domain.catalogue.pricing import freight, unit_price
from domain.errors import DomainError, ErrorCode, not_found
from domain.orders.models import Order, OrderLine, OrderStatus
from domain.orders.status import require_status
from domain.organisations.models import Organisation
from domain.payments.models import Wallet
from domain.persistence import charges as reads
from domain.persistence.orders import lines_with_skus
from domain.stock import commands as stock
from domain.validation import CENT, MAX_AMOUNT

MAX_ORDERS_PER_PAYMENT = 100

ESTIMATED_STATUSES = frozenset(
    {OrderStatus.UNRECOGNIZED, OrderStatus.AWAITING_PAYMENT, OrderStatus.ABNORMAL}
)
"""Where an unpaid order is on its way to payment: UNRECOGNIZED (until every line is
connected), AWAITING_PAYMENT, or ABNORMAL when held before payment (resolving it returns it to
AWAITING_PAYMENT). An unpaid order in any other status is CANCELLED: it will never be paid."""


@dataclass(frozen=True)
class OrderCharge:
    order: Order
    goods: Decimal
    freight: Decimal
    unit_prices: dict[int, Decimal]  # line id -> unit price

    @property
    def total(self) -> Decimal:
        return self.goods + self.freight


@dataclass(frozen=True)
class Charges:
    orders: list[OrderCharge]
    currency: str
    supplier_id: int
    stock_quantities: dict[int, int] = dataclass_field(default_factory=dict)  # line id → units
    stock_items: dict[int, int] = dataclass_field(default_factory=dict)  # SKU id → stock item id
    lines: list[OrderLine] = dataclass_field(default_factory=list)  # of the orders paid
    wallet: Wallet | None = None  # the buyer's with the supplier, when read with the prices

    @property
    def goods(self) -> Decimal:
        return sum((c.goods for c in self.orders), Decimal("0.00"))

    @property
    def freight(self) -> Decimal:
        return sum((c.freight for c in self.orders), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.goods + self.freight


def line_unit_price(
    order: Order,
    line: OrderLine,
    sku: Sku | None,
    product: Product | None,
    tiers: Iterable[PriceTier],
) -> Decimal:
    """The unit price paying ``order`` charges for ``line`` now: its SKU's price for the line's
    quantity (``domain.catalogue.pricing.unit_price``, the quantity tiers). Refused, as payment
    refuses it, for a line not connected to a SKU, a SKU or product no longer sold, or a SKU
    priced in another currency than the order's."""
    if sku is None:
        raise DomainError(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Order {order.number} has an unconnected line.",
            field="orderIds",
        )
    if not sku.is_active or product is None or product.status is not ProductStatus.ACTIVE:
        raise DomainError(
            ErrorCode.INACTIVE,
            f"Order {order.number}: SKU {sku.code} is no longer sold; re-connect it.",
            field="orderIds",
        )
    if order.currency and order.currency != sku.currency:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"Order {order.number} is in {order.currency}.",
            field="orderIds",
        )
    return unit_price(sku, line.quantity, tiers)


def goods_amount(priced: Iterable[tuple[Decimal, int]]) -> Decimal:
    """What an order's goods cost: each (unit price, units charged) pair, in cents."""
    return sum((price * units for price, units in priced), Decimal("0.00")).quantize(CENT)


@dataclass(frozen=True)
class PriceEstimate:
    """What paying an unpaid order would charge for its goods now (``line_unit_price`` and
    ``goods_amount``, the rules payment uses), supplied rather than shipped from stock, whose
    choice comes with the payment. ``goods`` is None while a line cannot be paid as it stands
    (not connected, no longer sold); ``unit_prices`` holds the lines that can (line id ->
    price)."""

    goods: Decimal | None
    unit_prices: Mapping[int, Decimal]


def prices_estimated(order: Order) -> bool:
    """Whether ``order``'s prices are an estimate: it is not paid yet and is on its way to
    payment (``ESTIMATED_STATUSES``). Payment fixes its goods amount and line prices; a
    cancelled unpaid order has none."""
    return order.paid_at is None and order.status in ESTIMATED_STATUSES


async def estimate_prices(orders: Sequence[Order]) -> dict[int, PriceEstimate]:
    """The estimates of those of ``orders`` whose prices are estimated (``prices_estimated``),
    by order id, in two statements however many orders: their lines with SKU and product, and
    the SKUs' tiers."""
    estimated = {order.id: order for order in orders if prices_estimated(order)}
    if not estimated:
        return {}
    lines = await lines_with_skus(list(estimated))
    tiers = await reads.tiers_of(list({sku.id for _, sku, _ in lines if sku is not None}))
    by_order: dict[int, list[tuple[OrderLine, Sku | None, Decimal | None]]] = {
        order_id: [] for order_id in estimated
    }
    for line, sku, product in lines:
        order = estimated[line.order_id]
        try:
            price: Decimal | None = line_unit_price(
                order, line, sku, product, tiers.get(sku.id, []) if sku else []
            )
        except DomainError:
            price = None  # payment would refuse this line as it stands
        by_order[order.id].append((line, sku, price))
    return {order_id: _estimate(priced) for order_id, priced in by_order.items()}


def _estimate(priced: list[tuple[OrderLine, Sku | None, Decimal | None]]) -> PriceEstimate:
    """One order's estimate from its lines as ``line_unit_price`` priced them."""
    prices = {line.id: price for line, _, price in priced if price is not None}
    goods = None
    if len(prices) == len(priced):
        try:
            sku_currency([sku for _, sku, _ in priced if sku is not None])
        except DomainError:
            pass  # payment would refuse it: no one amount to show
        else:
            goods = goods_amount((prices[line.id], line.quantity) for line, _, _ in priced)
    return PriceEstimate(goods=goods, unit_prices=MappingProxyType(prices))


def sku_currency(skus: Iterable[Sku]) -> str | None:
    """The one currency the SKUs of what is paid together are priced in (None: no SKU);
    SKUs in several currencies are refused."""
    currencies = {sku.currency for sku in skus}
    if len(currencies) > 1:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH, "SKUs are priced in several currencies.", field="orderIds"
        )
    return currencies.pop() if currencies else None


async def compute_charges(
    *,
    buyer_id: int,
    order_ids: list[int],
    logistics_method_id: int | None,
    stock_warehouse_id: int | None = None,
    split_when_short: bool = False,
) -> Charges:
    """Goods and freight for paying these orders (all AWAITING_PAYMENT, one supplier).

    With ``stock_warehouse_id`` the units the buyer's stock there covers
    (``domain.stock.commands.allocate``) cost freight only: their goods were paid by the
    stocking order.
    """
    if not order_ids:
        raise DomainError(ErrorCode.REQUIRED, "Name at least one order.", field="orderIds")
    if len(order_ids) > MAX_ORDERS_PER_PAYMENT:
        raise DomainError(
            ErrorCode.INVALID, f"At most {MAX_ORDERS_PER_PAYMENT} orders at once.", field="orderIds"
        )
    pricing = await reads.pricing_rows(buyer_id, order_ids, logistics_method_id, stock_warehouse_id)
    orders, lines_skus, tiers = pricing.orders, pricing.lines, pricing.tiers
    for i, order_id in enumerate(order_ids):
        order = orders.get(order_id)
        if order is None:
            raise not_found("Order", field=f"orderIds.{i}")
        require_status(order, OrderStatus.AWAITING_PAYMENT, doing="pay it", field=f"orderIds.{i}")
    suppliers = {o.supplier_id for o in orders.values()}
    if len(suppliers) != 1 or None in suppliers:
        raise DomainError(
            ErrorCode.INVALID, "Pay one supplier's orders together.", field="orderIds"
        )
    supplier_id = suppliers.pop()
    assert supplier_id is not None
    lines = [line for line, _, _ in lines_skus]
    stock_quantities, stock_items = (
        await stock.allocate(
            buyer_id=buyer_id,
            warehouse_id=stock_warehouse_id,
            order_ids=order_ids,
            lines=lines,
            split=split_when_short,
            read=pricing.stock,
        )
        if stock_warehouse_id is not None
        else ({}, {})
    )
    skus = {sku.id: sku for _, sku, _ in lines_skus if sku is not None}
    products = {sku.id: product for _, sku, product in lines_skus if sku is not None}
    currency = sku_currency(skus.values()) or (await Organisation.get(id=supplier_id)).currency
    methods: dict[int, list[FreightRule]] = dict(pricing.methods)
    charges = []
    for order in (orders[i] for i in order_ids):
        chosen = logistics_method_id or order.logistics_method_id
        if chosen is None:
            raise DomainError(
                ErrorCode.REQUIRED, "Choose a shipping method.", field="logisticsMethodId"
            )
        if chosen not in methods:
            rules = await reads.active_method_rules(chosen, supplier_id)
            if rules is None:
                raise not_found("Logistics method of this supplier", field="logisticsMethodId")
            methods[chosen] = rules
        weight = 0
        prices: dict[int, Decimal] = {}
        charged: list[tuple[Decimal, int]] = []
        for line in (ln for ln in lines if ln.order_id == order.id):
            sku = skus.get(line.sku_id or 0)
            product = products.get(sku.id) if sku is not None else None
            price = line_unit_price(order, line, sku, product, tiers[sku.id] if sku else [])
            assert sku is not None  # line_unit_price refuses a line without one
            prices[line.id] = price
            charged.append((price, line.quantity - stock_quantities.get(line.id, 0)))
            weight += sku.weight_grams * line.quantity
        country_code = (order.shipping_address or {}).get("country_code", "")
        charges.append(
            OrderCharge(
                order=order,
                goods=goods_amount(charged),
                freight=freight(methods[chosen], country_code=country_code, weight_grams=weight),
                unit_prices=prices,
            )
        )
    made = Charges(
        orders=charges,
        currency=currency,
        supplier_id=supplier_id,
        stock_quantities=stock_quantities,
        stock_items=stock_items,
        lines=lines,
        wallet=pricing.wallet,
    )
    if made.total >= MAX_AMOUNT:  # checked before any column that cannot hold it is written
        raise DomainError(
            ErrorCode.INVALID,
            f"These orders would cost {made.total} {currency}: more than the largest amount "
            f"one payment can carry (below {MAX_AMOUNT:,.0f}). Pay fewer at once.",
            field="orderIds",
        )
    return made
