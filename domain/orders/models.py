"""Supply orders, their lines and timeline, disputes (deputes) and quotes."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.catalogue.models import MONEY


class OrderKind(StrEnum):
    STORE = "STORE"
    MANUAL = "MANUAL"
    CLOUD_WAREHOUSE = "CLOUD_WAREHOUSE"


class OrderStatus(StrEnum):
    UNRECOGNIZED = "UNRECOGNIZED"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    AWAITING_SHIPPING = "AWAITING_SHIPPING"
    SHIPPED = "SHIPPED"
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"
    ABNORMAL = "ABNORMAL"
    REFUNDED = "REFUNDED"


class LineSource(StrEnum):
    """How a line got its SKU."""

    UNMAPPED = "UNMAPPED"
    PRODUCT_LINK = "PRODUCT_LINK"
    ORDER_SKU = "ORDER_SKU"  # an order-level SKU connection for this line only
    DIRECT = "DIRECT"  # manual orders name the SKU


class TrackingSync(StrEnum):
    NOT_NEEDED = "NOT_NEEDED"
    PENDING = "PENDING"
    SYNCED = "SYNCED"
    FAILED = "FAILED"


class Order(Model):
    id = fields.BigIntField(primary_key=True)
    number = fields.CharField(max_length=32, unique=True)
    kind = fields.CharEnumField(OrderKind, max_length=16)
    status = fields.CharEnumField(OrderStatus, max_length=20)
    status_before_abnormal = fields.CharEnumField(OrderStatus, max_length=20, null=True)
    abnormal_reason = fields.CharField(max_length=500, null=True)
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    buyer_id: int
    supplier: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    supplier_id: int | None
    store: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Store", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    store_id: int | None
    store_order_id = fields.CharField(max_length=64, null=True)
    store_order_number = fields.CharField(max_length=64, null=True)
    currency = fields.CharField(max_length=3, null=True)
    customer_name = fields.CharField(max_length=200, default="")
    shipping_address = fields.JSONField(default=dict)
    logistics_method: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.LogisticsMethod", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    logistics_method_id: int | None
    goods_amount = fields.DecimalField(**MONEY, null=True)
    freight_amount = fields.DecimalField(**MONEY, null=True)
    paid_amount = fields.DecimalField(**MONEY, default=0)
    refunded_amount = fields.DecimalField(**MONEY, default=0)
    carrier = fields.CharField(max_length=100, null=True)
    tracking_number = fields.CharField(max_length=100, null=True)
    tracking_sync = fields.CharEnumField(
        TrackingSync, max_length=16, default=TrackingSync.NOT_NEEDED
    )
    tracking_sync_error = fields.CharField(max_length=500, null=True)
    tracking_sync_attempts = fields.IntField(default=0)
    # the tracking push is being made by one instance (the owner) until then (``domain.leases``)
    tracking_lease_until = fields.DatetimeField(null=True)
    tracking_lease_owner = fields.CharField(max_length=64, null=True)
    version = fields.IntField(default=1)
    paid_at = fields.DatetimeField(null=True)
    shipped_at = fields.DatetimeField(null=True)
    # CLOUD_WAREHOUSE orders: the destination; other orders paid from stock: the source
    cloud_warehouse: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.CloudWarehouse", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    cloud_warehouse_id: int | None
    expected_arrival_at = fields.DatetimeField(null=True)
    stock_received_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    lines: fields.ReverseRelation[OrderLine]

    class Meta:
        table = "supply_order"
        unique_together = (("store_id", "store_order_id"),)
        indexes = (
            ("buyer_id", "id"),
            ("supplier_id", "id"),
            ("buyer_id", "status", "id"),
            ("supplier_id", "status", "id"),
            ("supplier_id", "buyer_id"),  # whether they trade (``domain.trading``)
            ("tracking_number",),
            ("store_order_number",),
        )


class OrderLine(Model):
    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="lines", on_delete=fields.CASCADE
    )
    order_id: int
    external_id = fields.CharField(max_length=64, null=True)
    store_variant: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.StoreVariant",
        related_name=False,
        on_delete=fields.RESTRICT,
        null=True,
        db_index=True,
    )
    store_variant_id: int | None
    title = fields.CharField(max_length=300)
    quantity = fields.IntField()
    sku: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Sku", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    sku_id: int | None
    source = fields.CharEnumField(LineSource, max_length=24, default=LineSource.UNMAPPED)
    unit_price = fields.DecimalField(**MONEY, null=True)
    stock_quantity = fields.IntField(default=0)  # units shipped from the buyer's stock

    class Meta:
        table = "order_line"
        indexes = (("order_id", "id"),)


class OrderTransition(Model):
    """The order timeline: every status change, who made it, when and why."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="transitions", on_delete=fields.CASCADE
    )
    order_id: int
    from_status = fields.CharEnumField(OrderStatus, max_length=20, null=True)
    to_status = fields.CharEnumField(OrderStatus, max_length=20)
    actor_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    actor_user_id: int | None
    reason = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "order_transition"
        indexes = (("order_id", "id"),)


class DeputeType(StrEnum):
    DAMAGED = "DAMAGED"
    WRONG_ITEM = "WRONG_ITEM"
    MISSING_ITEM = "MISSING_ITEM"
    NOT_RECEIVED = "NOT_RECEIVED"
    QUALITY = "QUALITY"
    OTHER = "OTHER"


class DeputeOutcome(StrEnum):
    REFUND = "REFUND"
    RESHIP = "RESHIP"


class DeputeStatus(StrEnum):
    OPEN = "OPEN"
    REFUNDED = "REFUNDED"
    RESHIPPED = "RESHIPPED"
    REJECTED = "REJECTED"


class Depute(Model):
    """A dispute the buyer opens on a paid order, resolved by supplier staff."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="deputes", on_delete=fields.CASCADE
    )
    order_id: int
    type = fields.CharEnumField(DeputeType, max_length=16)
    reason = fields.CharField(max_length=300)
    description = fields.TextField(default="")
    evidence = fields.JSONField(default=list)
    expected_outcome = fields.CharEnumField(DeputeOutcome, max_length=8)
    status = fields.CharEnumField(DeputeStatus, max_length=12, default=DeputeStatus.OPEN)
    resolution_note = fields.CharField(max_length=500, null=True)
    refund_amount = fields.DecimalField(**MONEY, null=True)
    opened_by_user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT
    )
    opened_by_user_id: int
    resolved_by_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    resolved_by_user_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    resolved_at = fields.DatetimeField(null=True)

    class Meta:
        table = "depute"
        indexes = (("order_id", "id"),)


class QuoteStatus(StrEnum):
    REQUESTED = "REQUESTED"
    QUOTED = "QUOTED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"


class Quote(Model):
    """A buyer asks a supplier to source a store product, and staff answer with prices."""

    id = fields.BigIntField(primary_key=True)
    buyer: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    buyer_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    store_product: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.StoreProduct", related_name=False, on_delete=fields.RESTRICT
    )
    store_product_id: int
    note = fields.TextField(default="")
    target_price = fields.DecimalField(**MONEY, null=True)
    links = fields.JSONField(default=list)
    status = fields.CharEnumField(QuoteStatus, max_length=12, default=QuoteStatus.REQUESTED)
    product: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Product", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    product_id: int | None
    sku_prices = fields.JSONField(default=list)
    message = fields.TextField(default="")
    requested_by_user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT
    )
    requested_by_user_id: int
    answered_by_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    answered_by_user_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "quote"
        indexes = (("buyer_id", "id"), ("supplier_id", "id"))


class InboxState(StrEnum):
    PENDING = "PENDING"  # accepted, the order not yet taken in
    DONE = "DONE"
    FAILED = "FAILED"  # given up after the last attempt; ``last_error`` says why


class WebhookReceipt(Model):
    """A store webhook event accepted (its signature checked), and the store's inbox.

    The receiver writes the row and answers at once; the unique event id makes a redelivery a
    duplicate. The inbox worker takes pending rows in (``domain.stores.inbox``) under a lease.
    """

    id = fields.BigIntField(primary_key=True)
    # the store's inbox and deduplication: part of the store
    store: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Store", related_name=False, on_delete=fields.CASCADE
    )
    store_id: int
    event_id = fields.CharField(max_length=100)
    received_at = fields.DatetimeField(auto_now_add=True)
    payload = fields.TextField(null=True)  # the body as received
    state = fields.CharEnumField(InboxState, max_length=8, default=InboxState.DONE)
    attempts = fields.IntField(default=0)
    due_at = fields.DatetimeField(null=True)
    lease_owner = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    order_id: int | None
    last_error = fields.CharField(max_length=500, null=True)
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_receipt"
        unique_together = (("store_id", "event_id"),)
        indexes = (("state", "due_at"),)
