"""Cloud-warehouse stock owned by buyers: warehouses, stock per SKU, reservations and the
movement ledger every figure is derived from."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.secrets import SealedTextField


class MovementKind(StrEnum):
    IN_TRANSIT = "IN_TRANSIT"  # a stocking order shipped towards the warehouse
    RECEIVED = "RECEIVED"  # arrived and put on hand
    SHORTFALL = "SHORTFALL"  # shipped but did not arrive (partial receipt)
    RESERVED = "RESERVED"  # held by a paid order not yet shipped
    RELEASED = "RELEASED"  # a reservation given back (cancel, withdraw, refund)
    SHIPPED = "SHIPPED"  # a reservation shipped: deducted from on hand


class ReservationState(StrEnum):
    HELD = "HELD"
    RELEASED = "RELEASED"
    CONSUMED = "CONSUMED"


class CloudWarehouse(Model):
    """A warehouse of the supplier's where buyers keep stock."""

    id = fields.IntField(primary_key=True)
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    supplier_id: int
    name = fields.CharField(max_length=200)
    address = fields.JSONField(default=dict)
    callback_secret = SealedTextField()  # signs its receipt callbacks
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cloud_warehouse"


class CloudReceiptCallback(Model):
    """A cloud warehouse's receipt callback already processed (deduplication)."""

    id = fields.BigIntField(primary_key=True)
    warehouse: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.CloudWarehouse", related_name=False, on_delete=fields.CASCADE
    )  # deduplication: part of the warehouse
    warehouse_id: int
    event_id = fields.CharField(max_length=100)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cloud_receipt_callback"
        unique_together = (("warehouse_id", "event_id"),)


class StockItem(Model):
    """One buyer's stock of one SKU in one warehouse. ``available`` = ``on_hand`` -
    ``reserved``, kept in the same UPDATE as the two, so a reservation is one conditional update
    (``available >= n``) and can never oversell."""

    id = fields.BigIntField(primary_key=True)
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    buyer_id: int
    warehouse: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.CloudWarehouse", related_name=False, on_delete=fields.RESTRICT
    )
    warehouse_id: int
    sku: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Sku", related_name=False, on_delete=fields.RESTRICT
    )
    sku_id: int
    on_hand = fields.IntField(default=0)
    reserved = fields.IntField(default=0)
    available = fields.IntField(default=0)
    in_transit = fields.IntField(default=0)
    low_stock_threshold = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "stock_item"
        unique_together = (("buyer_id", "warehouse_id", "sku_id"),)


class StockMovement(Model):
    """The ledger: every change of a stock item, with its deltas. Summing the deltas of an item
    gives its figures."""

    id = fields.BigIntField(primary_key=True)
    stock_item: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.StockItem", related_name=False, on_delete=fields.RESTRICT
    )  # the ledger is kept, not cascaded
    stock_item_id: int
    kind = fields.CharEnumField(MovementKind, max_length=16)
    on_hand_delta = fields.IntField(default=0)
    reserved_delta = fields.IntField(default=0)
    in_transit_delta = fields.IntField(default=0)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    order_id: int | None
    actor_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    actor_user_id: int | None
    reason = fields.CharField(max_length=300, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stock_movement"
        indexes = (("stock_item_id", "id"), ("order_id",))


class StockReservation(Model):
    """Units of a stock item held for one line of a paid order."""

    id = fields.BigIntField(primary_key=True)
    stock_item: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.StockItem", related_name=False, on_delete=fields.RESTRICT
    )
    stock_item_id: int
    order: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    order_id: int
    order_line: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.OrderLine", related_name=False, on_delete=fields.RESTRICT
    )
    order_line_id: int
    quantity = fields.IntField()
    state = fields.CharEnumField(ReservationState, max_length=10, default=ReservationState.HELD)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stock_reservation"
