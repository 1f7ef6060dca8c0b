"""Service-level rules, their breaches and the organisations' settings."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.organisations.models import OrganisationKind


class SlaRule(StrEnum):
    """What is late. ``domain.sla.rules`` says what each one watches and who owns it."""

    PAID_NOT_SHIPPED = "PAID_NOT_SHIPPED"
    SHIPPED_NOT_DELIVERED = "SHIPPED_NOT_DELIVERED"
    TRACKING_NOT_SYNCED = "TRACKING_NOT_SYNCED"
    WAREHOUSE_SILENT = "WAREHOUSE_SILENT"
    WITHDRAW_STUCK = "WITHDRAW_STUCK"
    WITHDRAW_FAILED_UNRESOLVED = "WITHDRAW_FAILED_UNRESOLVED"
    UNRECOGNIZED_ORDER = "UNRECOGNIZED_ORDER"
    QUOTE_UNANSWERED = "QUOTE_UNANSWERED"
    STOCK_BELOW_THRESHOLD = "STOCK_BELOW_THRESHOLD"


class SlaBreach(Model):
    """An organisation's deadline for a rule passed for one subject (an order, a withdrawal, a
    quote, a stock item). One per organisation, rule, subject and episode (``since``: when the
    watched state began), so a breach is raised once; ``cleared_at`` once the subject moved
    on. Seen by ``organisation`` alone; ``buyer`` and ``supplier`` are the subject's parties."""

    id = fields.BigIntField(primary_key=True)
    organisation: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )  # whose deadline passed, and who sees the breach
    organisation_id: int
    organisation_kind = fields.CharEnumField(OrganisationKind, max_length=16)
    rule = fields.CharEnumField(SlaRule, max_length=32)
    subject_type = fields.CharField(max_length=32)
    subject_id = fields.BigIntField()
    since = fields.DatetimeField()
    due_at = fields.DatetimeField()  # since + the owner's deadline for the rule
    opened_at = fields.DatetimeField()
    cleared_at = fields.DatetimeField(null=True)
    clear_reason = fields.CharField(max_length=200, null=True)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.CASCADE, null=True, db_index=True
    )  # the order concerned, if any
    order_id: int | None
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )
    buyer_id: int
    supplier: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE, null=True
    )  # none: the buyer's own matter (an unrecognized order, its stock)
    supplier_id: int | None

    class Meta:
        table = "sla_breach"
        unique_together = (("organisation_id", "rule", "subject_type", "subject_id", "since"),)
        indexes = (
            ("organisation_id", "id"),
            ("subject_type", "subject_id", "cleared_at"),
            ("rule", "cleared_at"),
        )

    def late_ids(self) -> dict[str, int | None]:
        """What is late, by kind: ``order_id``, ``withdrawal_id``, ``quote_id``,
        ``stock_item_id`` (the subject's, and the order concerned; the others None)."""
        ids: dict[str, int | None] = dict.fromkeys(SUBJECT_KEYS.values())
        ids[SUBJECT_KEYS[self.subject_type]] = self.subject_id
        if self.order_id is not None:
            ids["order_id"] = self.order_id
        return ids


SUBJECT_KEYS = {
    "Order": "order_id",
    "Withdrawal": "withdrawal_id",
    "Quote": "quote_id",
    "StockItem": "stock_item_id",
}
"""The attribute naming a breach's subject, by the subject's type."""


class SlaSetting(Model):
    """An organisation's own deadline for a rule, or the rule switched off for it."""

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )
    organisation_id: int
    rule = fields.CharEnumField(SlaRule, max_length=32)
    minutes = fields.IntField()
    enabled = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "sla_setting"
        unique_together = (("organisation_id", "rule"),)


class SweepLease(Model):
    """Which instance runs a periodic sweep, until when (taken by a conditional update)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=32, unique=True)
    holder = fields.CharField(max_length=64)
    until = fields.DatetimeField()

    class Meta:
        table = "sweep_lease"
