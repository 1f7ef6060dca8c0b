"""Distribution: partnerships, distribution warehouses, third-party warehouses,
after-sales (return) orders, withdrawals, and the warehouse work queue with its attempts."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from domain.secrets import SealedTextField


class PartnershipStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class PushStatus(StrEnum):
    """Where an order or a return stands with the third-party warehouse."""

    NOT_PUSHED = "NOT_PUSHED"
    PUSHING = "PUSHING"
    PUSHED = "PUSHED"
    PUSH_FAILED = "PUSH_FAILED"


class WithdrawalStatus(StrEnum):
    WITHDRAWING = "WITHDRAWING"
    WITHDRAWN = "WITHDRAWN"
    WITHDRAW_FAILED = "WITHDRAW_FAILED"


class WithdrawalResolution(StrEnum):
    """How a WITHDRAW_FAILED withdrawal was left behind."""

    RETRIED = "RETRIED"
    CONVERTED_TO_RETURN = "CONVERTED_TO_RETURN"
    CLOSED = "CLOSED"


class TaskKind(StrEnum):
    PUSH_ORDER = "PUSH_ORDER"
    CANCEL_ORDER = "CANCEL_ORDER"
    PUSH_RETURN = "PUSH_RETURN"
    CANCEL_RETURN = "CANCEL_RETURN"


class TaskState(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class Partnership(Model):
    """A distributor (buyer organisation) distributing a supplier's products."""

    id = fields.IntField(primary_key=True)
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    distributor: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    distributor_id: int
    status = fields.CharEnumField(PartnershipStatus, max_length=16)
    message = fields.CharField(max_length=500, default="")
    decision_note = fields.CharField(max_length=500, default="")
    warehouse: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.DistributionWarehouse", related_name=False, on_delete=fields.RESTRICT, null=True
    )  # the one that fulfils
    warehouse_id: int | None
    decided_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "partnership"
        unique_together = (("supplier_id", "distributor_id"),)
        indexes = (("distributor_id", "id"),)


class DistributionWarehouse(Model):
    """A warehouse of one partnership: created with it, or added by the distributor. The
    supplier may have a third-party warehouse fulfil it (``third_party_warehouse_id``)."""

    id = fields.IntField(primary_key=True)
    partnership: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Partnership", related_name=False, on_delete=fields.CASCADE, db_index=True
    )  # a part of the partnership
    partnership_id: int
    name = fields.CharField(max_length=200)
    address = fields.JSONField(default=dict)
    created_by_system = fields.BooleanField(default=False)
    third_party_warehouse: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.ThirdPartyWarehouse", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    third_party_warehouse_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "distribution_warehouse"


class ThirdPartyWarehouse(Model):
    """A supplier's authorised third-party warehouse. Credentials are sealed, never returned."""

    id = fields.IntField(primary_key=True)
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )
    supplier_id: int
    provider = fields.CharField(max_length=100)
    name = fields.CharField(max_length=200)
    api_url = fields.CharField(max_length=500)
    api_key = SealedTextField()
    callback_secret = SealedTextField()
    is_active = fields.BooleanField(default=True)
    last_test_ok = fields.BooleanField(null=True)
    last_test_message = fields.CharField(max_length=500, default="")
    last_tested_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "third_party_warehouse"


class DistributionSettings(Model):
    """A supplier's distribution settings."""

    id = fields.IntField(primary_key=True)
    supplier: fields.OneToOneRelation = fields.OneToOneField(
        "models.Organisation", related_name=False, on_delete=fields.CASCADE
    )  # the supplier's own settings
    supplier_id: int
    charge_on_push = fields.BooleanField(default=False)
    auto_push_returns = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "distribution_settings"


class WarehouseDocument(Model):
    """What an order and a return share at a third-party warehouse: where it goes
    (``third_party_warehouse``), our unique ``reference`` there (written before the first call),
    how its push went, and its latest withdrawal's status
    (``domain.distribution.withdrawals.show_withdrawal``)."""

    third_party_warehouse: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.ThirdPartyWarehouse", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    third_party_warehouse_id: int | None
    reference = fields.CharField(max_length=64, null=True)
    push_status = fields.CharEnumField(PushStatus, max_length=16, default=PushStatus.NOT_PUSHED)
    push_error = fields.CharField(max_length=500, null=True)
    withdrawal_status = fields.CharEnumField(WithdrawalStatus, max_length=16, null=True)
    checked_at = fields.DatetimeField(null=True)  # last callback or reconciliation

    class Meta:
        abstract = True


class WarehouseOrder(WarehouseDocument):
    """An order's life at a third-party warehouse. ``reference`` (our order id) is the
    warehouse order's unique reference and is written before the first call."""

    id = fields.BigIntField(primary_key=True)
    order: fields.OneToOneRelation = fields.OneToOneField(
        "models.Order", related_name=False, on_delete=fields.CASCADE
    )  # the order's own state at the warehouse
    order_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    warehouse_order_id = fields.CharField(max_length=100, null=True)  # the warehouse's id
    warehouse_status = fields.CharField(max_length=32, null=True)
    pushed_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "warehouse_order"
        indexes = (("supplier_id", "push_status"), ("push_status", "checked_at"))


class Withdrawal(Model):
    """One withdraw request of an order or an after-sales order, with its outcome."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True, db_index=True
    )
    order_id: int | None
    after_sales: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.AfterSalesOrder",
        related_name=False,
        on_delete=fields.RESTRICT,
        null=True,
        db_index=True,
    )
    after_sales_id: int | None
    distributor: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    distributor_id: int
    supplier: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Organisation", related_name=False, on_delete=fields.RESTRICT
    )
    supplier_id: int
    status = fields.CharEnumField(WithdrawalStatus, max_length=16)
    reason = fields.CharField(max_length=500, default="")
    failure = fields.CharField(max_length=500, null=True)
    resolution = fields.CharEnumField(WithdrawalResolution, max_length=24, null=True)
    resolution_note = fields.CharField(max_length=500, default="")
    requested_by_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user (the column was ``requested_by``)
    requested_by_user_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "withdrawal"
        indexes = (("supplier_id", "id"), ("distributor_id", "id"))


class WarehouseTask(Model):
    """Work for a third-party warehouse, run by the background worker. A lease (owner and
    expiry, taken by a conditional update) makes one instance run it at a time; a task whose
    lease expired (its instance died) is taken again."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharEnumField(TaskKind, max_length=16)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    order_id: int | None
    after_sales: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.AfterSalesOrder", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    after_sales_id: int | None
    withdrawal: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Withdrawal", related_name=False, on_delete=fields.RESTRICT, null=True
    )
    withdrawal_id: int | None
    third_party_warehouse: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.ThirdPartyWarehouse", related_name=False, on_delete=fields.RESTRICT, null=True
    )  # none: nothing at a warehouse to call
    third_party_warehouse_id: int | None
    state = fields.CharEnumField(TaskState, max_length=8, default=TaskState.PENDING)
    attempts = fields.IntField(default=0)
    due_at = fields.DatetimeField()
    lease_owner = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    actor_user: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.SET_NULL, null=True
    )  # who did it: history that outlives the user
    actor_user_id: int | None
    request_id = fields.CharField(max_length=64, null=True)  # the request that queued it
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "warehouse_task"
        indexes = (("state", "due_at"),)


class WarehouseAttempt(Model):
    """The history of every call made for a task: what was asked, what came back."""

    id = fields.BigIntField(primary_key=True)
    task: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.WarehouseTask", related_name=False, on_delete=fields.RESTRICT, db_index=True
    )  # the history (shown per order) is kept, not cascaded
    task_id: int
    kind = fields.CharEnumField(TaskKind, max_length=16)
    order: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Order", related_name=False, on_delete=fields.RESTRICT, null=True, db_index=True
    )
    order_id: int | None
    after_sales: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.AfterSalesOrder",
        related_name=False,
        on_delete=fields.RESTRICT,
        null=True,
        db_index=True,
    )
    after_sales_id: int | None
    ok = fields.BooleanField()
    outcome = fields.CharField(max_length=500)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "warehouse_attempt"


class WarehouseCallbackReceipt(Model):
    """A warehouse callback already processed (deduplication on the event id)."""

    id = fields.BigIntField(primary_key=True)
    third_party_warehouse: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.ThirdPartyWarehouse", related_name=False, on_delete=fields.CASCADE
    )  # deduplication: part of the warehouse
    third_party_warehouse_id: int
    event_id = fields.CharField(max_length=100)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "warehouse_callback_receipt"
        unique_together = (("third_party_warehouse_id", "event_id"),)
