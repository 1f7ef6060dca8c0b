"""Wallets and payment: freight quotes, paying orders, top-ups and refunds.

A wallet belongs to a buyer with one supplier. Its ``balance`` is lowered only by a
conditional update (``balance >= amount``), in the same transaction as the ledger entry, so it
never goes negative and always equals the ledger's sum, under any concurrency, on SQLite and
PostgreSQL alike.

LOCK_ORDER: a transaction that moves money and touches an order or stock takes the wallet's row
first, then stock rows (in ``stock_item_id`` order), then orders. Paying from stock and a refund
that releases the same stock once took them in opposite orders and deadlocked each other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from decimal import Decimal

from tortoise.expressions import F

from domain import visibility
from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.catalogue.models import FreightRule, LogisticsMethod, PriceTier, ProductStatus, Sku
from domain.catalogue.pricing import freight, unit_price
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import WalletChanged
from domain.orders.models import Order, OrderLine, OrderStatus
from domain.orders.status import require_status, transition
from domain.organisations.models import Organisation, OrganisationKind
from domain.pages import keyset_page
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.stock import commands as stock
from domain.validation import CENT, clean_text, money

MAX_ORDERS_PER_PAYMENT = 100


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())


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

    @property
    def goods(self) -> Decimal:
        return sum((c.goods for c in self.orders), Decimal("0.00"))

    @property
    def freight(self) -> Decimal:
        return sum((c.freight for c in self.orders), Decimal("0.00"))

    @property
    def total(self) -> Decimal:
        return self.goods + self.freight


async def wallet_for(*, buyer_id: int, supplier_id: int) -> Wallet:
    supplier = await Organisation.get(id=supplier_id)
    wallet, _ = await Wallet.get_or_create(
        buyer_id=buyer_id, supplier_id=supplier_id, defaults={"currency": supplier.currency}
    )
    return wallet


async def compute_charges(
    *,
    buyer_id: int,
    order_ids: list[int],
    logistics_method_id: int | None,
    stock_warehouse_id: int | None = None,
    split_when_short: bool = False,
) -> Charges:
    """Goods and freight for paying these orders (all AWAITING_PAYMENT, one supplier).

    With ``stock_warehouse_id`` the units the buyer's stock there covers (``stock.allocate``)
    cost freight only: their goods were paid by the stocking order.
    """
    if not order_ids:
        raise DomainError(ErrorCode.REQUIRED, "Name at least one order.", field="orderIds")
    if len(order_ids) > MAX_ORDERS_PER_PAYMENT:
        raise DomainError(
            ErrorCode.INVALID, f"At most {MAX_ORDERS_PER_PAYMENT} orders at once.", field="orderIds"
        )
    orders = {o.id: o for o in await Order.filter(id__in=order_ids, buyer_id=buyer_id)}
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
    lines = await OrderLine.filter(order_id__in=list(orders)).order_by("id")
    stock_quantities = (
        await stock.allocate(
            buyer_id=buyer_id,
            warehouse_id=stock_warehouse_id,
            order_ids=order_ids,
            lines=lines,
            split=split_when_short,
        )
        if stock_warehouse_id is not None
        else {}
    )
    skus = {
        s.id: s
        for s in await Sku.filter(id__in=[ln.sku_id for ln in lines if ln.sku_id]).select_related(
            "product"
        )
    }
    tiers: dict[int, list[PriceTier]] = defaultdict(list)
    for tier in await PriceTier.filter(sku_id__in=list(skus)):
        tiers[tier.sku_id].append(tier)
    currencies = {s.currency for s in skus.values()}
    if len(currencies) > 1:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH, "SKUs are priced in several currencies.", field="orderIds"
        )
    currency = currencies.pop() if currencies else (await Organisation.get(id=supplier_id)).currency
    methods: dict[int, list[FreightRule]] = {}
    charges = []
    for order in (orders[i] for i in order_ids):
        chosen = logistics_method_id or order.logistics_method_id
        if chosen is None:
            raise DomainError(
                ErrorCode.REQUIRED, "Choose a shipping method.", field="logisticsMethodId"
            )
        if chosen not in methods:
            method = await LogisticsMethod.get_or_none(
                id=chosen, supplier_id=supplier_id, is_active=True
            )
            if method is None:
                raise not_found("Logistics method of this supplier", field="logisticsMethodId")
            methods[chosen] = await FreightRule.filter(method_id=chosen)
        goods = Decimal("0.00")
        weight = 0
        prices: dict[int, Decimal] = {}
        for line in (ln for ln in lines if ln.order_id == order.id):
            sku = skus.get(line.sku_id or 0)
            if sku is None:
                raise DomainError(
                    ErrorCode.ILLEGAL_TRANSITION,
                    f"Order {order.number} has an unconnected line.",
                    field="orderIds",
                )
            if not sku.is_active or sku.product.status is not ProductStatus.ACTIVE:
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
            price = unit_price(sku, line.quantity, tiers[sku.id])
            prices[line.id] = price
            goods += price * (line.quantity - stock_quantities.get(line.id, 0))
            weight += sku.weight_grams * line.quantity
        country_code = (order.shipping_address or {}).get("country_code", "")
        charges.append(
            OrderCharge(
                order=order,
                goods=goods.quantize(CENT),
                freight=freight(methods[chosen], country_code=country_code, weight_grams=weight),
                unit_prices=prices,
            )
        )
    return Charges(
        orders=charges,
        currency=currency,
        supplier_id=supplier_id,
        stock_quantities=stock_quantities,
    )


async def freight_quote(
    *, viewer: Viewer, order_ids: list[int], logistics_method_id: int | None
) -> Charges:
    require_buyer(viewer)
    return await compute_charges(
        buyer_id=viewer.organisation_id,
        order_ids=order_ids,
        logistics_method_id=logistics_method_id,
    )


async def _debit(wallet: Wallet, amount: Decimal, *, shortfall_field: str) -> None:
    """Lower the balance by ``amount`` unless that would make it negative."""
    cents = to_cents(amount)
    updated = await Wallet.filter(id=wallet.id, balance_cents__gte=cents).update(
        balance_cents=F("balance_cents") - cents
    )
    if updated != 1:
        current = (await Wallet.get(id=wallet.id)).balance
        raise DomainError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"The wallet holds {current} {wallet.currency}; {amount} {wallet.currency} is "
            f"needed ({amount - current} short).",
            field=shortfall_field,
        )


async def pay_orders(
    *,
    viewer: Viewer,
    order_ids: list[int],
    logistics_method_id: int | None,
    stock_warehouse_id: int | None = None,
    split_when_short: bool = False,
) -> Charges:
    """Pay AWAITING_PAYMENT orders from the buyer's wallet in one transaction: all of them
    become AWAITING_SHIPPING, or (any problem, too little money, short stock) nothing changes.

    With ``stock_warehouse_id`` the lines ship from the buyer's stock there: only freight is
    charged and the units are reserved in the same transaction; short stock is refused, or with
    ``split_when_short`` the rest is supplied (and charged) as usual.
    """
    require_buyer(viewer)
    async with transaction():
        return await charge_orders(
            buyer_id=viewer.organisation_id,
            order_ids=order_ids,
            logistics_method_id=logistics_method_id,
            actor_user_id=viewer.user_id,
            stock_warehouse_id=stock_warehouse_id,
            split_when_short=split_when_short,
        )


async def charge_orders(
    *,
    buyer_id: int,
    order_ids: list[int],
    logistics_method_id: int | None,
    actor_user_id: int | None,
    field: str = "orderIds",
    stock_warehouse_id: int | None = None,
    split_when_short: bool = False,
) -> Charges:
    """Charge the buyer's wallet for its AWAITING_PAYMENT orders, which become
    AWAITING_SHIPPING. Runs inside the caller's transaction (the buyer paying, or a supplier
    charging on push); too little money raises INSUFFICIENT_FUNDS with the shortfall."""
    charges = await compute_charges(
        buyer_id=buyer_id,
        order_ids=order_ids,
        logistics_method_id=logistics_method_id,
        stock_warehouse_id=stock_warehouse_id,
        split_when_short=split_when_short,
    )
    wallet = await wallet_for(buyer_id=buyer_id, supplier_id=charges.supplier_id)
    if wallet.currency != charges.currency:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"The wallet is in {wallet.currency}, the orders in {charges.currency}.",
            field=field,
        )
    # LOCK_ORDER (above): the wallet first
    await _debit(wallet, charges.total, shortfall_field=field)
    if charges.stock_quantities:
        await stock.reserve(
            buyer_id=buyer_id,
            warehouse_id=stock_warehouse_id or 0,
            allocation=charges.stock_quantities,
            actor_user_id=actor_user_id,
        )
    now = datetime.now(UTC)
    for charge in charges.orders:
        order = charge.order
        await WalletEntry.create(
            wallet_id=wallet.id,
            kind=EntryKind.PAYMENT,
            amount=-charge.total,
            order_id=order.id,
            actor_user_id=actor_user_id,
            note=f"order {order.number}",
        )
        for line_id, price in charge.unit_prices.items():
            await OrderLine.filter(id=line_id).update(unit_price=price)
        await transition(
            order,
            OrderStatus.AWAITING_SHIPPING,
            actor_user_id=actor_user_id,
            reason=f"paid {charge.total} {charges.currency}",
            changes={
                "goods_amount": charge.goods,
                "freight_amount": charge.freight,
                "paid_amount": charge.total,
                "paid_at": now,
                "currency": charges.currency,
                "logistics_method_id": logistics_method_id or order.logistics_method_id,
            },
            field=field,
        )
    await _wallet_event(wallet, actor_user_id, reason="payment")
    return charges


async def top_up(
    *, viewer: Viewer, buyer_id: int, amount: Decimal, currency: str, note: str = ""
) -> Wallet:
    """Supplier staff credit a buyer's wallet (money received outside the platform)."""
    require_supplier_staff(viewer)
    amount = money(amount, field="amount")
    note = clean_text(note, field="note", max_length=300, required=False)
    buyer = await Organisation.get_or_none(id=buyer_id, kind=OrganisationKind.BUYER)
    if buyer is None:
        raise not_found("Buyer", field="buyerId")
    async with transaction():
        wallet = await wallet_for(buyer_id=buyer.id, supplier_id=viewer.organisation_id)
        if currency.strip().upper() != wallet.currency:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH,
                f"This wallet is in {wallet.currency}.",
                field="currency",
            )
        await credit(
            wallet,
            amount,
            kind=EntryKind.TOP_UP,
            actor_user_id=viewer.user_id,
            note=note or "top-up",
        )
    await wallet.refresh_from_db()
    return wallet


async def credit(
    wallet: Wallet,
    amount: Decimal,
    *,
    kind: EntryKind,
    actor_user_id: int | None,
    note: str,
    order_id: int | None = None,
) -> None:
    """Add to a wallet (top-up or refund), with its ledger entry and event."""
    await Wallet.filter(id=wallet.id).update(balance_cents=F("balance_cents") + to_cents(amount))
    await WalletEntry.create(
        wallet_id=wallet.id,
        kind=kind,
        amount=amount,
        order_id=order_id,
        actor_user_id=actor_user_id,
        note=note,
    )
    await _wallet_event(wallet, actor_user_id, reason=kind.value.lower())


async def _wallet_event(wallet: Wallet, actor_user_id: int | None, *, reason: str) -> None:
    await record_event(WalletChanged.of(wallet, reason=reason, actor_user_id=actor_user_id))


async def list_wallets(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[Wallet], bool]:
    """A page of the caller's side of its wallets, in id order."""
    return await keyset_page(visibility.wallets(viewer), first=first, after=after)


async def wallet_entries(
    *, viewer: Viewer, wallet_id: int, first: int, after: int | None = None
) -> tuple[list[WalletEntry], bool]:
    """A page of one of the caller's wallets' entries, newest first (an entry is visible with
    its wallet)."""
    wallet = await visibility.wallets(viewer).get_or_none(id=wallet_id)
    if wallet is None:
        raise not_found("Wallet", field="walletId")
    return await keyset_page(
        WalletEntry.filter(wallet_id=wallet.id), first=first, after=after, newest_first=True
    )
