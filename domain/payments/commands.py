"""Wallets and payment: paying orders, top-ups and refunds (what paying costs is
``domain/payments/charges.py``; wallets, entries and freight quotes are read in ``queries.py``).

A wallet belongs to a buyer with one supplier. Its ``balance`` is lowered only by a
conditional update (``balance >= amount``), in the same transaction as the ledger entry, so it
never goes negative and always equals the ledger's sum, under any concurrency, on SQLite and
PostgreSQL alike.

LOCK_ORDER: a transaction that moves money and touches an order or stock takes the wallet's row
first, then stock rows (in ``stock_item_id`` order), then orders. Paying from stock and a refund
that releases the same stock once took them in opposite orders and deadlocked each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tortoise.expressions import F

from domain.access import Viewer, require_buyer, require_supplier_staff
from domain.db import transaction, transaction_unless
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import EventType, NewEvent, record_event, recorded, recorded_type
from domain.events.catalogue import WalletChanged
from domain.orders.models import OrderLine, OrderStatus
from domain.orders.status import StatusChange, conflict, plan_transition, transitioned
from domain.organisations.models import Organisation
from domain.payments.charges import Charges, compute_charges
from domain.payments.models import EntryKind, Wallet, WalletEntry
from domain.persistence import charges as reads
from domain.persistence import payment_batches
from domain.persistence.dialects import is_postgres
from domain.persistence.orders import change_order
from domain.persistence.payments import PaidOrder, PaymentWrite, StockHold
from domain.stock import commands as stock
from domain.trading import trades_with
from domain.validation import clean_text, money
from domain.validation import currency as valid_currency


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_exact())


async def wallet_for(*, buyer_id: int, supplier_id: int) -> Wallet:
    wallet = await reads.wallet_of(buyer_id, supplier_id)
    if wallet is not None:
        return wallet
    supplier = await Organisation.get(id=supplier_id)
    wallet, _ = await Wallet.get_or_create(
        buyer_id=buyer_id, supplier_id=supplier_id, defaults={"currency": supplier.currency}
    )
    return wallet


def _short(wallet: Wallet, balance_cents: int, amount: Decimal, *, field: str) -> DomainError:
    current = Decimal(balance_cents).scaleb(-2)
    return DomainError(
        ErrorCode.INSUFFICIENT_FUNDS,
        f"The wallet holds {current} {wallet.currency}; {amount} {wallet.currency} is "
        f"needed ({amount - current} short).",
        field=field,
    )


async def _debit(wallet: Wallet, amount: Decimal, *, shortfall_field: str) -> None:
    """Lower the balance by ``amount`` unless that would make it negative."""
    cents = to_cents(amount)
    updated = await Wallet.filter(id=wallet.id, balance_cents__gte=cents).update(
        balance_cents=F("balance_cents") - cents
    )
    if updated != 1:
        current = (await Wallet.get(id=wallet.id)).balance_cents
        raise _short(wallet, current, amount, field=shortfall_field)


async def pay_orders(
    *,
    viewer: Viewer,
    order_ids: list[int],
    logistics_method_id: int | None,
    stock_warehouse_id: int | None = None,
    split_when_short: bool = False,
) -> Charges:
    """Pay AWAITING_PAYMENT orders from the buyer's wallet atomically: all of them
    become AWAITING_SHIPPING, or (any problem, too little money, short stock) nothing changes.

    With ``stock_warehouse_id`` the lines ship from the buyer's stock there: only freight is
    charged and the units are reserved in the same transaction; short stock is refused, or with
    ``split_when_short`` the rest is supplied (and charged) as usual.
    """
    require_buyer(viewer)
    # on PostgreSQL one statement (domain.persistence.payments), atomic by itself
    async with transaction_unless(is_postgres()):
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
    charging on push), or on PostgreSQL without stock as one statement that is atomic by
    itself; too little money raises INSUFFICIENT_FUNDS with the shortfall."""
    charges = await compute_charges(
        buyer_id=buyer_id,
        order_ids=order_ids,
        logistics_method_id=logistics_method_id,
        stock_warehouse_id=stock_warehouse_id,
        split_when_short=split_when_short,
    )
    wallet = charges.wallet or await wallet_for(buyer_id=buyer_id, supplier_id=charges.supplier_id)
    if wallet.currency != charges.currency:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"The wallet is in {wallet.currency}, the orders in {charges.currency}.",
            field=field,
        )
    now = datetime.now(UTC)
    changes = [
        plan_transition(
            charge.order,
            OrderStatus.AWAITING_SHIPPING,
            actor_user_id=actor_user_id,
            reason=f"paid {charge.total} {charges.currency}",
            changes={
                "goods_amount": charge.goods,
                "freight_amount": charge.freight,
                "paid_amount": charge.total,
                "paid_at": now,
                "currency": charges.currency,
                "logistics_method_id": logistics_method_id or charge.order.logistics_method_id,
            },
            field=field,
        )
        for charge in charges.orders
    ]
    wallet_event = WalletChanged.of(wallet, reason="payment", actor_user_id=actor_user_id)
    if is_postgres():
        hold = (
            stock.hold_for_payment(
                warehouse_id=stock_warehouse_id or 0,
                allocation=charges.stock_quantities,
                lines=charges.lines,
                items=charges.stock_items,
            )
            if charges.stock_quantities
            else None
        )
        await _pay_in_one_statement(charges, changes, wallet, hold, wallet_event, now, field=field)
    else:
        await _pay_statement_by_statement(
            charges, changes, wallet, wallet_event, stock_warehouse_id, field=field
        )
    for change in changes:
        await transitioned(change, actor_user_id=actor_user_id)
    return charges


async def _pay_in_one_statement(
    charges: Charges,
    changes: list[StatusChange],
    wallet: Wallet,
    hold: StockHold | None,
    wallet_event: NewEvent,
    now: datetime,
    *,
    field: str,
) -> None:
    """PostgreSQL: the payment's statement (``domain.persistence.payments``; payments of the
    wallet arriving together are written together, ``payment_batches``), with the units
    ``hold`` takes from stock, and the events in the order the statement-by-statement way
    records them (the stock's, which the statement builds, first)."""
    actor_user_id = wallet_event.actor_user_id
    outcome = await payment_batches.pay(
        PaymentWrite(
            wallet_id=wallet.id,
            total_cents=to_cents(charges.total),
            currency=charges.currency,
            paid_at=now,
            actor_user_id=actor_user_id,
            orders=[
                PaidOrder(
                    order_id=charge.order.id,
                    version=charge.order.version,
                    goods=charge.goods,
                    freight=charge.freight,
                    logistics_method_id=change.values["logistics_method_id"],
                    entry_note=f"order {charge.order.number}",
                    reason=change.timeline.reason,
                )
                for charge, change in zip(charges.orders, changes, strict=True)
            ],
            line_prices={
                line_id: price
                for charge in charges.orders
                for line_id, price in charge.unit_prices.items()
            },
            events=[*(change.event for change in changes), wallet_event],
            stock=hold,
        )
    )
    if not outcome.written:
        if hold is not None and not outcome.stock_held:
            raise await stock.short_stock(hold.lines)
        if outcome.balance_cents < to_cents(charges.total):
            raise _short(wallet, outcome.balance_cents, charges.total, field=field)
        raise conflict(changes[0].order, field=field)
    for event_type in outcome.stock_events:
        recorded_type(EventType(event_type))
    recorded(wallet_event)


async def _pay_statement_by_statement(
    charges: Charges,
    changes: list[StatusChange],
    wallet: Wallet,
    wallet_event: NewEvent,
    stock_warehouse_id: int | None,
    *,
    field: str,
) -> None:
    """The same rows as ``_pay_in_one_statement``, inside the caller's transaction."""
    actor_user_id = wallet_event.actor_user_id
    # LOCK_ORDER (above): the wallet first
    await _debit(wallet, charges.total, shortfall_field=field)
    if charges.stock_quantities:
        await stock.reserve(
            buyer_id=wallet.buyer_id,
            warehouse_id=stock_warehouse_id or 0,
            allocation=charges.stock_quantities,
            actor_user_id=actor_user_id,
        )
    for charge, change in zip(charges.orders, changes, strict=True):
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
        if not await change_order(
            order, change.values, timeline=change.timeline, event=change.event
        ):
            raise conflict(order, field=field)
    await record_event(wallet_event)


async def top_up(
    *, viewer: Viewer, buyer_id: int, amount: Decimal, currency: str, note: str = ""
) -> Wallet:
    """Supplier staff credit a buyer's wallet (money received outside the platform).

    Checked in this order, so no answer tells another tenant's ids apart: the arguments that
    do not depend on the buyer (a malformed currency is INVALID whoever the buyer is); then the
    buyer, which must trade with the supplier (``domain.trading``; any other id, a buyer's or
    not, is the same NOT_FOUND); only then the wallet's currency (CURRENCY_MISMATCH).
    """
    require_supplier_staff(viewer)
    code = valid_currency(currency, field="currency")
    amount = money(amount, field="amount")
    note = clean_text(note, field="note", max_length=300, required=False)
    if not await trades_with(supplier_id=viewer.organisation_id, buyer_id=buyer_id):
        raise not_found("Buyer", field="buyerId")
    async with transaction():
        wallet = await wallet_for(buyer_id=buyer_id, supplier_id=viewer.organisation_id)
        if code != wallet.currency:
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
