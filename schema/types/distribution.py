"""GraphQL types of distribution: partnerships, warehouses, pushes, withdrawals, returns."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import Info

from domain import limits
from domain.after_sales import models as am
from domain.distribution import models as m
from schema.global_ids import gid, key_of, optional_gid
from schema.types.errors import UserError
from schema.types.node import Node
from schema.types.orders import AddressInput
from schema.types.orders import PushStatusFilter as PushStatus
from schema.types.orders import WithdrawalStatusFilter as WithdrawalStatus
from schema.types.pagination import PageInfo
from schema.types.stores import StorePlatform

if TYPE_CHECKING:
    from schema.types.orders import Order

PartnershipStatus = strawberry.enum(m.PartnershipStatus)
WithdrawalResolution = strawberry.enum(m.WithdrawalResolution)
AfterSalesStatus = strawberry.enum(am.AfterSalesStatus)
WarehouseTaskKind = strawberry.enum(m.TaskKind)


async def _org_name(info: Info, organisation_id: str) -> str:
    row = await info.context.loaders.organisations.load(key_of(organisation_id))
    return row.name if row else ""


@strawberry.type
class Partnership(Node):
    supplier_id: strawberry.ID
    distributor_id: strawberry.ID
    status: PartnershipStatus
    message: str
    decision_note: str
    warehouse_id: strawberry.ID | None = strawberry.field(
        description="The distribution warehouse that fulfils this distributor's orders."
    )
    decided_at: datetime | None
    created_at: datetime

    @strawberry.field
    async def supplier_name(self, info: Info) -> str:
        return await _org_name(info, self.supplier_id)

    @strawberry.field
    async def distributor_name(self, info: Info) -> str:
        return await _org_name(info, self.distributor_id)

    @classmethod
    def from_model(cls, p: m.Partnership) -> Partnership:
        return cls(
            id=gid("Partnership", p.id),
            supplier_id=gid("Organisation", p.supplier_id),
            distributor_id=gid("Organisation", p.distributor_id),
            status=p.status,
            message=p.message,
            decision_note=p.decision_note,
            warehouse_id=optional_gid("DistributionWarehouse", p.warehouse_id),
            decided_at=p.decided_at,
            created_at=p.created_at,
        )


@strawberry.type
class DistributionWarehouse(Node):
    partnership_id: strawberry.ID
    name: str
    created_by_system: bool
    third_party_warehouse_id: strawberry.ID | None = strawberry.field(
        description="The supplier's third-party warehouse that runs it, if any."
    )
    created_at: datetime

    @classmethod
    def from_model(cls, w: m.DistributionWarehouse) -> DistributionWarehouse:
        return cls(
            id=gid("DistributionWarehouse", w.id),
            partnership_id=gid("Partnership", w.partnership_id),
            name=w.name,
            created_by_system=w.created_by_system,
            third_party_warehouse_id=optional_gid(
                "ThirdPartyWarehouse", w.third_party_warehouse_id
            ),
            created_at=w.created_at,
        )


@strawberry.type(
    description="A supplier's authorised third-party warehouse. Credentials are never returned."
)
class ThirdPartyWarehouse(Node):
    provider: str
    name: str
    api_url: str
    is_active: bool
    last_test_ok: bool | None
    last_test_message: str
    last_tested_at: datetime | None
    created_at: datetime

    @strawberry.field(description="Where the warehouse posts its signed status callbacks.")
    def callback_url_path(self) -> str:
        return f"/webhooks/warehouses/{key_of(self.id)}"

    @classmethod
    def from_model(cls, c: m.ThirdPartyWarehouse) -> ThirdPartyWarehouse:
        return cls(
            id=gid("ThirdPartyWarehouse", c.id),
            provider=c.provider,
            name=c.name,
            api_url=c.api_url,
            is_active=c.is_active,
            last_test_ok=c.last_test_ok,
            last_test_message=c.last_test_message,
            last_tested_at=c.last_tested_at,
            created_at=c.created_at,
        )


@strawberry.type(description="A supplier's distribution settings; its id is keyed by the supplier.")
class DistributionSettings(Node):
    charge_on_push: bool = strawberry.field(
        description="Charge the distributor's wallet when an unpaid order is pushed."
    )
    auto_push_returns: bool = strawberry.field(
        description="Push new after-sales orders to the warehouse automatically."
    )

    @classmethod
    def from_model(cls, s: m.DistributionSettings) -> DistributionSettings:
        return cls(
            id=gid("DistributionSettings", s.supplier_id),
            charge_on_push=s.charge_on_push,
            auto_push_returns=s.auto_push_returns,
        )


@strawberry.type(description="An order's state at the third-party warehouse.")
class OrderDistribution:
    push_status: PushStatus
    push_error: str | None
    third_party_warehouse_id: strawberry.ID | None
    warehouse_order_id: str | None
    warehouse_status: str | None
    pushed_at: datetime | None
    withdrawal_status: WithdrawalStatus | None

    @classmethod
    def from_model(cls, r: m.WarehouseOrder) -> OrderDistribution:
        return cls(
            push_status=r.push_status,
            push_error=r.push_error,
            third_party_warehouse_id=optional_gid(
                "ThirdPartyWarehouse", r.third_party_warehouse_id
            ),
            warehouse_order_id=r.warehouse_order_id,
            warehouse_status=r.warehouse_status,
            pushed_at=r.pushed_at,
            withdrawal_status=r.withdrawal_status,
        )


@strawberry.type(description="One withdraw request and its outcome.")
class Withdrawal(Node):
    order_id: strawberry.ID | None
    after_sales_id: strawberry.ID | None
    distributor_id: strawberry.ID
    supplier_id: strawberry.ID
    status: WithdrawalStatus
    reason: str
    failure: str | None = strawberry.field(description="Why it failed (WITHDRAW_FAILED).")
    resolution: WithdrawalResolution | None
    resolution_note: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, w: m.Withdrawal) -> Withdrawal:
        return cls(
            id=gid("Withdrawal", w.id),
            order_id=optional_gid("Order", w.order_id),
            after_sales_id=optional_gid("AfterSalesOrder", w.after_sales_id),
            distributor_id=gid("Organisation", w.distributor_id),
            supplier_id=gid("Organisation", w.supplier_id),
            status=w.status,
            reason=w.reason,
            failure=w.failure,
            resolution=w.resolution,
            resolution_note=w.resolution_note,
            created_at=w.created_at,
            updated_at=w.updated_at,
        )


@strawberry.type(description="One call made to a third-party warehouse, and what came back.")
class WarehouseAttempt(Node):
    kind: WarehouseTaskKind
    ok: bool
    outcome: str
    at: datetime

    @classmethod
    def from_model(cls, a: m.WarehouseAttempt) -> WarehouseAttempt:
        return cls(
            id=gid("WarehouseAttempt", a.id),
            kind=a.kind,
            ok=a.ok,
            outcome=a.outcome,
            at=a.created_at,
        )


@strawberry.type
class ReturnLine:
    line_id: strawberry.ID
    sku_id: strawberry.ID
    sku_code: str
    title: str
    quantity: int
    reason: str
    received_quantity: int | None


@strawberry.type(description="An after-sales (return stock-in) order of a distributor.")
class AfterSalesOrder(Node):
    number: str
    order_id: strawberry.ID
    distributor_id: strawberry.ID
    supplier_id: strawberry.ID
    status: AfterSalesStatus
    reason: str
    items: list[ReturnLine] = strawberry.field(
        description=f"Lines of the order returned: at most {limits.MAX_ORDER_LINES}."
    )
    push_status: PushStatus
    push_error: str | None
    warehouse_return_id: str | None
    withdrawal_status: WithdrawalStatus | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def distributor_name(self, info: Info) -> str:
        return await _org_name(info, self.distributor_id)

    @strawberry.field
    async def order(
        self, info: Info
    ) -> Annotated[Order, strawberry.lazy("schema.types.orders")] | None:
        from schema.types.orders import Order

        row = await info.context.loaders.orders.load(key_of(self.order_id))
        return Order.from_model(row) if row else None

    @strawberry.field(
        description=f"Every withdraw request of this return: at most {limits.MAX_WITHDRAWALS}."
    )
    async def withdrawals(self, info: Info) -> list[Withdrawal]:
        rows = await info.context.loaders.withdrawals_by_return.load(key_of(self.id))
        return [Withdrawal.from_model(w) for w in rows]

    @strawberry.field(
        description="The latest calls made to the third-party warehouse for this return: "
        f"at most {limits.MAX_ATTEMPTS_KEPT}."
    )
    async def warehouse_attempts(self, info: Info) -> list[WarehouseAttempt]:
        rows = await info.context.loaders.attempts_by_return.load(key_of(self.id))
        return [WarehouseAttempt.from_model(a) for a in rows]

    @classmethod
    def from_model(cls, r: am.AfterSalesOrder) -> AfterSalesOrder:
        return cls(
            id=gid("AfterSalesOrder", r.id),
            number=r.number,
            order_id=gid("Order", r.order_id),
            distributor_id=gid("Organisation", r.distributor_id),
            supplier_id=gid("Organisation", r.supplier_id),
            status=r.status,
            reason=r.reason,
            items=[
                ReturnLine(
                    line_id=gid("OrderLine", it["lineId"]),
                    sku_id=gid("Sku", it["skuId"]),
                    sku_code=it["sku"],
                    title=it.get("title", ""),
                    quantity=int(it["quantity"]),
                    reason=it.get("reason", ""),
                    received_quantity=it.get("receivedQuantity"),
                )
                for it in r.items
            ],
            push_status=r.push_status,
            push_error=r.push_error,
            warehouse_return_id=r.warehouse_return_id,
            withdrawal_status=r.withdrawal_status,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


@strawberry.type
class AfterSalesEdge:
    cursor: str
    node: AfterSalesOrder


@strawberry.type
class AfterSalesConnection:
    edges: list[AfterSalesEdge]
    page_info: PageInfo


@strawberry.input
class ReturnFilterInput:
    statuses: list[AfterSalesStatus] | None = None
    platform: StorePlatform | None = None
    distributor_name: str | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None


@strawberry.input
class ReturnItemInput:
    line_id: strawberry.ID
    quantity: int
    reason: str = ""


@strawberry.input
class CreateAfterSalesOrderInput:
    order_id: strawberry.ID
    items: list[ReturnItemInput]
    reason: str


@strawberry.input
class AuthoriseWarehouseInput:
    provider: str
    name: str
    api_url: str
    api_key: str


@strawberry.input
class AddDistributionWarehouseInput:
    partnership_id: strawberry.ID
    name: str
    address: AddressInput


@strawberry.type(
    description="A withdrawal changed (subscription): a step of its status, or the resolution "
    "of a WITHDRAW_FAILED one."
)
class WithdrawalChange:
    event_id: strawberry.ID
    withdrawal_id: strawberry.ID
    order_id: strawberry.ID | None
    after_sales_id: strawberry.ID | None
    status: WithdrawalStatus = strawberry.field(
        description="The withdrawal's status when this event was recorded. A resolution leaves "
        "it WITHDRAW_FAILED: `resolution` says how the failure was settled."
    )
    reason: str = strawberry.field(
        description="Why it failed (WITHDRAW_FAILED), e.g. the warehouse's refusal; empty "
        "otherwise."
    )
    resolution: WithdrawalResolution | None = strawberry.field(
        description="How a WITHDRAW_FAILED withdrawal was resolved: RETRIED (a new withdrawal "
        "was started, `retryWithdrawal`), CLOSED by hand (`closeWithdrawal`) or "
        "CONVERTED_TO_RETURN (`convertWithdrawalToReturn`); null while it is unresolved."
    )
    resolution_note: str | None = strawberry.field(
        description="The resolution's note: the note `closeWithdrawal` was given, the number "
        "of the after-sales order a conversion made, or `retried`; null while unresolved."
    )
    at: datetime


@strawberry.type(
    description="An after-sales order changed (subscription): its status, its push to the "
    "warehouse, or a step of a withdraw of it (WITHDRAWING, WITHDRAWN, WITHDRAW_FAILED, or a "
    "failed withdraw resolved). Each change shows the return as it is after it."
)
class ReturnChange:
    event_id: strawberry.ID
    after_sales_id: strawberry.ID
    number: str
    status: AfterSalesStatus
    push_status: PushStatus
    withdrawal_status: WithdrawalStatus | None = strawberry.field(
        description="The status of the return's latest withdraw: null when none was "
        "requested, or once a failed one was closed (a retry starts a new one, WITHDRAWING)."
    )
    withdrawal_id: strawberry.ID | None = strawberry.field(
        description="The withdrawal whose step (or resolution) this change is; null for a "
        "change that is not a withdraw step."
    )
    error: str | None = strawberry.field(
        description="Why something failed: on a withdraw step at WITHDRAW_FAILED the "
        "withdraw's reason (e.g. the warehouse's refusal); otherwise the warehouse's push "
        "error (PUSH_FAILED) or stock-in exception, if any."
    )
    at: datetime


@strawberry.type
class PartnershipPayload:
    partnership: Partnership | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DistributionWarehousePayload:
    warehouse: DistributionWarehouse | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AuthoriseWarehousePayload:
    third_party_warehouse: ThirdPartyWarehouse | None = None
    callback_secret: str | None = strawberry.field(
        default=None,
        description="Shown once: the warehouse signs its callbacks with it (HMAC-SHA256).",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ThirdPartyWarehousePayload:
    third_party_warehouse: ThirdPartyWarehouse | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DistributionSettingsPayload:
    settings: DistributionSettings | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WithdrawalPayload:
    withdrawal: Withdrawal | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AfterSalesPayload:
    after_sales_order: AfterSalesOrder | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AfterSalesOrdersPayload:
    after_sales_orders: list[AfterSalesOrder] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)
