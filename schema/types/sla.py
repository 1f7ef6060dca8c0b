"""Service-level breaches and the rules behind them."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.sla import models as m
from domain.sla.queries import RuleSetting
from schema.global_ids import gid, optional_gid
from schema.types.errors import UserError
from schema.types.node import Node

SlaRule = strawberry.enum(
    m.SlaRule,
    description="What is late. `slaRules` gives each rule's meaning and the caller's deadline.",
)


@strawberry.type(
    description="The caller's organisation's deadline for a rule passed: raised once when it "
    "passed (`openedAt`), cleared when what was late moved on (`clearedAt`). Each party of "
    "what is late has its own breach, by its own deadline (`slaRules`), and sees only its own."
)
class SlaBreach(Node):
    rule: SlaRule
    order_id: strawberry.ID | None = strawberry.field(description="The order concerned, if any.")
    withdrawal_id: strawberry.ID | None = strawberry.field(
        description="The late withdrawal (WITHDRAW_STUCK, WITHDRAW_FAILED_UNRESOLVED)."
    )
    quote_id: strawberry.ID | None = strawberry.field(description="QUOTE_UNANSWERED's quote.")
    stock_item_id: strawberry.ID | None = strawberry.field(
        description="STOCK_BELOW_THRESHOLD's stock item."
    )
    buyer_id: strawberry.ID = strawberry.field(description="The buyer or distributor.")
    supplier_id: strawberry.ID | None
    since: datetime = strawberry.field(description="When the late state began.")
    due_at: datetime = strawberry.field(description="`since` plus the rule's deadline.")
    opened_at: datetime
    cleared_at: datetime | None
    clear_reason: str | None
    is_open: bool

    @classmethod
    def from_model(cls, b: m.SlaBreach) -> SlaBreach:
        types = {key: kind for kind, key in m.SUBJECT_KEYS.items()}
        ids = {key: optional_gid(types[key], value) for key, value in b.late_ids().items()}
        return cls(
            id=gid("SlaBreach", b.id),
            rule=b.rule,
            **ids,
            buyer_id=gid("Organisation", b.buyer_id),
            supplier_id=optional_gid("Organisation", b.supplier_id),
            since=b.since,
            due_at=b.due_at,
            opened_at=b.opened_at,
            cleared_at=b.cleared_at,
            clear_reason=b.clear_reason,
            is_open=b.cleared_at is None,
        )


@strawberry.input(description="Which breaches: every field narrows the list.")
class SlaBreachFilter:
    rules: list[SlaRule] | None = None
    open: bool | None = strawberry.field(
        default=None, description="true: open ones only; false: cleared ones only."
    )
    counterpart_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Only breaches whose other party (buyer or supplier) is this organisation.",
    )


@strawberry.type(description="A rule as it applies to the caller's organisation.")
class SlaRuleSetting:
    rule: SlaRule
    description: str
    minutes: int = strawberry.field(description="The deadline in use, in minutes.")
    default_minutes: int
    enabled: bool
    customised: bool = strawberry.field(description="Set by the caller's organisation.")

    @classmethod
    def of(cls, s: RuleSetting) -> SlaRuleSetting:
        return cls(
            rule=s.rule.rule,
            description=s.rule.description,
            minutes=s.minutes,
            default_minutes=s.rule.default_minutes,
            enabled=s.enabled,
            customised=s.customised,
        )


@strawberry.input
class SlaRuleInput:
    rule: SlaRule
    minutes: int | None = strawberry.field(
        default=None, description="The deadline in minutes (0 to 525600); null: the default."
    )
    enabled: bool = True


@strawberry.type
class SlaRulePayload:
    setting: SlaRuleSetting | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A breach opened or cleared (subscription).")
class SlaBreachChange:
    event_id: strawberry.ID
    opened: bool = strawberry.field(description="true: it opened; false: it cleared.")
    breach: SlaBreach = strawberry.field(description="The breach as it is now.")
    at: datetime
