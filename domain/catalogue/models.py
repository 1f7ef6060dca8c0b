"""What suppliers sell: products, their SKUs and price tiers, and how goods travel (freight)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

MONEY = {"max_digits": 14, "decimal_places": 2}


class ProductStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DISCONTINUED = "DISCONTINUED"


class Product(Model):
    id = fields.IntField(primary_key=True)
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name="products", on_delete=fields.CASCADE
    )
    supplier_id: int
    title = fields.CharField(max_length=300)
    description = fields.TextField(default="")
    status = fields.CharEnumField(ProductStatus, max_length=16, default=ProductStatus.ACTIVE)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    skus: fields.ReverseRelation[Sku]

    class Meta:
        table = "product"
        indexes = (("supplier_id", "id"),)


class Sku(Model):
    """A sellable variant. ``version`` grows with every change a connection may depend on."""

    id = fields.IntField(primary_key=True)
    product: fields.ForeignKeyRelation[Product] = fields.ForeignKeyField(
        "models.Product", related_name="skus", on_delete=fields.CASCADE
    )
    product_id: int
    # the product's supplier, copied: a SKU goes with its supplier as its product does
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE, db_index=True
    )
    supplier_id: int
    code = fields.CharField(max_length=64)
    attributes = fields.JSONField(default=dict)
    weight_grams = fields.IntField()
    unit_price = fields.DecimalField(**MONEY)
    currency = fields.CharField(max_length=3)
    is_active = fields.BooleanField(default=True)
    version = fields.IntField(default=1)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "sku"
        unique_together = (("supplier_id", "code"),)


class PriceTier(Model):
    """Unit price from ``min_quantity`` units on (cloud-warehouse and bulk orders)."""

    id = fields.IntField(primary_key=True)
    sku: fields.ForeignKeyRelation[Sku] = fields.ForeignKeyField(
        "models.Sku", related_name="tiers", on_delete=fields.CASCADE
    )
    sku_id: int
    min_quantity = fields.IntField()
    unit_price = fields.DecimalField(**MONEY)

    class Meta:
        table = "price_tier"
        unique_together = (("sku_id", "min_quantity"),)


class LogisticsMethod(Model):
    """A shipment mode a supplier offers, with freight rules per destination."""

    id = fields.IntField(primary_key=True)
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name="logistics_methods", on_delete=fields.CASCADE
    )
    supplier_id: int
    name = fields.CharField(max_length=100)
    min_days = fields.IntField()
    max_days = fields.IntField()
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "logistics_method"
        indexes = (("supplier_id", "id"),)


class FreightRule(Model):
    """Freight to one country (or ``*``): first weight at one price, then each step."""

    id = fields.IntField(primary_key=True)
    method: fields.ForeignKeyRelation[LogisticsMethod] = fields.ForeignKeyField(
        "models.LogisticsMethod", related_name="rules", on_delete=fields.CASCADE
    )
    method_id: int
    country_code = fields.CharField(max_length=2)
    first_weight_grams = fields.IntField()
    first_price = fields.DecimalField(**MONEY)
    step_grams = fields.IntField()
    step_price = fields.DecimalField(**MONEY)

    class Meta:
        table = "freight_rule"
        unique_together = (("method_id", "country_code"),)
