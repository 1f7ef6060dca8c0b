"""Buyers' online stores, their products, and how store variants connect to supplier SKUs."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.secrets import SealedTextField


class StorePlatform(StrEnum):
    SHOPIFY = "SHOPIFY"
    WOOCOMMERCE = "WOOCOMMERCE"
    BIGSHOP = "BIGSHOP"
    OTHER = "OTHER"


class ProductLinkStatus(StrEnum):
    ACTIVE = "ACTIVE"
    STALE = "STALE"  # the supplier changed or discontinued a SKU it uses
    DISCONNECTED = "DISCONNECTED"


class Store(Model):
    """A connected store. Credentials and the webhook secret never leave the server."""

    id = fields.IntField(primary_key=True)
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name="stores", on_delete=fields.CASCADE
    )
    buyer_id: int
    name = fields.CharField(max_length=200)
    platform = fields.CharEnumField(StorePlatform, max_length=16)
    api_url = fields.CharField(max_length=500)
    access_token = SealedTextField()
    webhook_secret = SealedTextField()
    last_order_external_id = fields.CharField(max_length=64, null=True)
    last_synced_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "store"
        indexes = (("buyer_id", "id"),)


class StoreProduct(Model):
    id = fields.IntField(primary_key=True)
    store: fields.ForeignKeyRelation[Store] = fields.ForeignKeyField(
        "models.Store", related_name="products", on_delete=fields.CASCADE
    )
    store_id: int
    external_id = fields.CharField(max_length=64)
    title = fields.CharField(max_length=300)

    class Meta:
        table = "store_product"
        unique_together = (("store_id", "external_id"),)


class StoreVariant(Model):
    id = fields.IntField(primary_key=True)
    product: fields.ForeignKeyRelation[StoreProduct] = fields.ForeignKeyField(
        "models.StoreProduct", related_name="variants", on_delete=fields.CASCADE
    )
    product_id: int
    # the product's store, copied: a variant goes with its store as its product does
    store: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Store", related_name=False, on_delete=fields.CASCADE, db_index=True
    )
    store_id: int
    external_id = fields.CharField(max_length=64)
    title = fields.CharField(max_length=300)
    sku_code = fields.CharField(max_length=100, null=True)
    attributes = fields.JSONField(default=dict)

    class Meta:
        table = "store_variant"
        unique_together = (("store_id", "external_id"),)


class ProductLink(Model):
    """A store product connected to a supplier product, with a logistics method."""

    id = fields.IntField(primary_key=True)
    store_product: fields.ForeignKeyRelation[StoreProduct] = fields.ForeignKeyField(
        "models.StoreProduct", related_name="product_links", on_delete=fields.CASCADE
    )
    store_product_id: int
    # the store's buyer, copied: a product link goes with the buyer's store as its product does
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE, db_index=True
    )
    buyer_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    supplier_id: int
    product: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Product", related_name=False, on_delete=fields.RESTRICT
    )
    product_id: int
    logistics_method: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.LogisticsMethod", related_name=False, on_delete=fields.RESTRICT
    )
    logistics_method_id: int
    status = fields.CharEnumField(
        ProductLinkStatus, max_length=16, default=ProductLinkStatus.ACTIVE
    )
    stale_reason = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "product_link"


class VariantMapping(Model):
    """One store variant to one SKU, as of the SKU's ``version`` when it was connected."""

    id = fields.IntField(primary_key=True)
    product_link: fields.ForeignKeyRelation[ProductLink] = fields.ForeignKeyField(
        "models.ProductLink", related_name="mappings", on_delete=fields.CASCADE
    )
    product_link_id: int
    store_variant: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.StoreVariant", related_name=False, on_delete=fields.CASCADE, db_index=True
    )  # no variant, nothing to map
    store_variant_id: int
    sku: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Sku", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    sku_id: int
    sku_version = fields.IntField()

    class Meta:
        table = "variant_mapping"
