"""Every service-level rule in one table: the rows it watches, since when, and for whom.

A rule watches rows in one state (``state``, a filter) from a moment (``since``, a column). Each
organisation concerned (the buyer or distributor, and the supplier when there is one) has its
own deadline for it: its setting (``SlaSetting``) or ``default_minutes``. A breach is that
organisation's: it opens when ``since`` + its deadline has passed and the row is still in that
state, is seen by that organisation alone, and clears when the row leaves the state.
``columns`` say where the subject and the parties are.

- PAID_NOT_SHIPPED: an order AWAITING_SHIPPING, since paid; 48 h.
- SHIPPED_NOT_DELIVERED: an order SHIPPED, since shipped; 10 days.
- TRACKING_NOT_SYNCED: a shipped store order whose tracking is not in its store yet, since
  shipped; 60 min (the tracking pusher's retries are over by then).
- WAREHOUSE_SILENT: an order pushed to a third-party warehouse that has not called back (nor
  answered a reconciliation), since pushed; 24 h.
- WITHDRAW_STUCK: a withdrawal WITHDRAWING, since requested; 15 min.
- WITHDRAW_FAILED_UNRESOLVED: a withdrawal WITHDRAW_FAILED and not retried, converted or
  closed, since it failed; 24 h.
- UNRECOGNIZED_ORDER: an order UNRECOGNIZED, since created; the buyer's only; 24 h.
- QUOTE_UNANSWERED: a quote REQUESTED, since requested; 24 h.
- STOCK_BELOW_THRESHOLD: a stock item whose available units are below the buyer's threshold,
  since its last movement; the buyer's only; at once (0).

Defaults are the supplier's usual promises; a buyer who expects sooner (or later) sets its
own, and sees its breaches by its own deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import F, Q
from tortoise.models import Model

from domain.distribution.models import (
    PushStatus,
    WarehouseOrder,
    Withdrawal,
    WithdrawalStatus,
)
from domain.orders.models import Order, OrderStatus, Quote, QuoteStatus, TrackingSync
from domain.organisations.models import OrganisationKind
from domain.sla.models import SlaRule
from domain.stock.models import StockItem

HOUR = 60
DAY = 24 * HOUR


@dataclass(frozen=True)
class Columns:
    """Where a watched row keeps what a breach records (paths ``values()`` understands)."""

    subject: str
    buyer: str
    supplier: str | None
    order: str | None


@dataclass(frozen=True)
class Rule:
    rule: SlaRule
    description: str
    default_minutes: int
    subject_type: str
    model: type[Model]
    state: Q
    since: str
    columns: Columns
    cleared: str  # why a breach of this rule clears

    @property
    def sides(self) -> tuple[OrganisationKind, ...]:
        """The kinds of organisation a breach of this rule can be for."""
        if self.columns.supplier is None:
            return (OrganisationKind.BUYER,)
        return (OrganisationKind.BUYER, OrganisationKind.SUPPLIER)

    def party(self, kind: OrganisationKind) -> str:
        """The column naming the organisation of ``kind`` concerned by a watched row."""
        column = self.columns.supplier if kind is OrganisationKind.SUPPLIER else self.columns.buyer
        assert column is not None, (self.rule, kind)
        return column

    def watching(self) -> Any:
        """The rows in the watched state."""
        return self.model.filter(self.state, **{f"{self.since}__isnull": False})


_ORDER = Columns(subject="id", buyer="buyer_id", supplier="supplier_id", order="id")
_WITHDRAWAL = Columns(
    subject="id",
    buyer="distributor_id",
    supplier="supplier_id",
    order="order_id",
)

RULES: dict[SlaRule, Rule] = {
    r.rule: r
    for r in (
        Rule(
            SlaRule.PAID_NOT_SHIPPED,
            "Paid and not shipped.",
            48 * HOUR,
            "Order",
            Order,
            Q(status=OrderStatus.AWAITING_SHIPPING),
            "paid_at",
            _ORDER,
            "the order left AWAITING_SHIPPING",
        ),
        Rule(
            SlaRule.SHIPPED_NOT_DELIVERED,
            "Shipped and not delivered.",
            10 * DAY,
            "Order",
            Order,
            Q(status=OrderStatus.SHIPPED),
            "shipped_at",
            _ORDER,
            "the order left SHIPPED",
        ),
        Rule(
            SlaRule.TRACKING_NOT_SYNCED,
            "Shipped, and the tracking number is not in the buyer's store yet.",
            60,
            "Order",
            Order,
            Q(
                status__in=[OrderStatus.SHIPPED, OrderStatus.FULFILLED],
                tracking_sync__in=[TrackingSync.PENDING, TrackingSync.FAILED],
            ),
            "shipped_at",
            _ORDER,
            "the tracking reached the store",
        ),
        Rule(
            SlaRule.WAREHOUSE_SILENT,
            "Pushed to a third-party warehouse that has not called back.",
            24 * HOUR,
            "Order",
            WarehouseOrder,
            Q(push_status=PushStatus.PUSHED, checked_at__isnull=True),
            "pushed_at",
            Columns(
                subject="order_id",
                buyer="order__buyer_id",
                supplier="supplier_id",
                order="order_id",
            ),
            "the warehouse answered",
        ),
        Rule(
            SlaRule.WITHDRAW_STUCK,
            "A withdraw still WITHDRAWING.",
            15,
            "Withdrawal",
            Withdrawal,
            Q(status=WithdrawalStatus.WITHDRAWING),
            "created_at",
            _WITHDRAWAL,
            "the withdraw ended",
        ),
        Rule(
            SlaRule.WITHDRAW_FAILED_UNRESOLVED,
            "A failed withdraw not retried, converted or closed.",
            24 * HOUR,
            "Withdrawal",
            Withdrawal,
            Q(status=WithdrawalStatus.WITHDRAW_FAILED, resolution__isnull=True),
            "updated_at",
            _WITHDRAWAL,
            "the failed withdraw was resolved",
        ),
        Rule(
            SlaRule.UNRECOGNIZED_ORDER,
            "An order whose products are not connected to a supplier's.",
            24 * HOUR,
            "Order",
            Order,
            Q(status=OrderStatus.UNRECOGNIZED),
            "created_at",
            Columns(subject="id", buyer="buyer_id", supplier=None, order="id"),
            "the order was recognized or cancelled",
        ),
        Rule(
            SlaRule.QUOTE_UNANSWERED,
            "A quote request not answered.",
            24 * HOUR,
            "Quote",
            Quote,
            Q(status=QuoteStatus.REQUESTED),
            "created_at",
            Columns(
                subject="id",
                buyer="buyer_id",
                supplier="supplier_id",
                order=None,
            ),
            "the quote was answered",
        ),
        Rule(
            SlaRule.STOCK_BELOW_THRESHOLD,
            "Stock available below the threshold the buyer set.",
            0,
            "StockItem",
            StockItem,
            Q(low_stock_threshold__isnull=False, available__lt=F("low_stock_threshold")),
            "updated_at",
            Columns(subject="id", buyer="buyer_id", supplier=None, order=None),
            "the stock is back at its threshold",
        ),
    )
}

SUBJECT_TYPES = frozenset(r.subject_type for r in RULES.values())
