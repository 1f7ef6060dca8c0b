"""After-sales: a distributor's returns of delivered orders, stocked in at the supplier's
third-party warehouse. A return shares its push and withdraw state with a warehouse order
(``domain.distribution.models.WarehouseDocument``)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from domain.distribution.models import WarehouseDocument


class AfterSalesStatus(StrEnum):
    REQUESTED = "REQUESTED"  # created by the distributor, not yet at the warehouse
    AWAITING_STOCK_IN = "AWAITING_STOCK_IN"  # pushed; the warehouse waits for the parcel
    STOCKED_IN = "STOCKED_IN"  # the warehouse received it
    WITHDRAWN = "WITHDRAWN"  # the distributor withdrew it


class AfterSalesOrder(WarehouseDocument):
    """A distributor's return of a delivered order, stocked in at the third-party warehouse."""

    id = fields.BigIntField(primary_key=True)
    number = fields.CharField(max_length=32, unique=True)
    order: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    order_id: int
    distributor: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    distributor_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    status = fields.CharEnumField(AfterSalesStatus, max_length=20)
    reason = fields.CharField(max_length=500)
    items = fields.JSONField(default=list)  # [{"lineId", "skuId", "skuCode", "quantity", ...}]
    warehouse_return_id = fields.CharField(max_length=100, null=True)  # the warehouse's id
    version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "after_sales_order"
        indexes = (
            ("supplier_id", "updated_at", "id"),
            ("supplier_id", "id"),
            ("distributor_id", "id"),
            ("status", "checked_at"),
        )
