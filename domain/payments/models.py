"""Buyers' wallets with a supplier: a ledger of entries, and the balance it adds up to."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.catalogue.models import MONEY


class EntryKind(StrEnum):
    TOP_UP = "TOP_UP"
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"


class Wallet(Model):
    """The balance always equals the sum of the entries (kept in the same transaction) and is
    only lowered by a conditional update that cannot take it below zero. It is kept in cents,
    an integer, so that the update is exact on every database (SQLite stores decimals as
    text)."""

    id = fields.IntField(primary_key=True)
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    buyer_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    currency = fields.CharField(max_length=3)
    balance_cents = fields.BigIntField(default=0)

    @property
    def balance(self) -> Decimal:
        return Decimal(self.balance_cents).scaleb(-2)

    class Meta:
        table = "wallet"
        unique_together = (("buyer_id", "supplier_id"),)
        indexes = (("supplier_id", "id"),)


class WalletEntry(Model):
    id = fields.BigIntField(primary_key=True)
    wallet: fields.ForeignKeyRelation[Wallet] = fields.ForeignKeyField(
        "models.Wallet", related_name="entries", on_delete=fields.CASCADE
    )
    wallet_id: int
    kind = fields.CharEnumField(EntryKind, max_length=8)
    amount = fields.DecimalField(**MONEY)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    order_id: int | None
    actor_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    actor_user_id: int | None
    note = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "wallet_entry"
        indexes = (("wallet_id", "id"),)
