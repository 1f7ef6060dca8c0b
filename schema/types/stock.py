"""GraphQL types of cloud-warehouse stock."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import Info

from domain.stock import models as m
from schema.global_ids import gid, key_of
from schema.types.catalogue import Sku
from schema.types.errors import UserError
from schema.types.node import Node
from schema.types.orders import AddressInput, ManualOrderLineInput
from schema.types.pagination import PageInfo

MovementKind = strawberry.enum(m.MovementKind)


@strawberry.type(description="A supplier's warehouse where buyers keep stock.")
class CloudWarehouse(Node):
    supplier_id: strawberry.ID
    name: str
    country_code: str
    city: str

    @strawberry.field(description="Where the warehouse posts its signed receipts.")
    def callback_url_path(self) -> str:
        return f"/webhooks/cloud-warehouses/{key_of(self.id)}/receipts"

    @classmethod
    def from_model(cls, w: m.CloudWarehouse) -> CloudWarehouse:
        return cls(
            id=gid("CloudWarehouse", w.id),
            supplier_id=gid("Organisation", w.supplier_id),
            name=w.name,
            country_code=w.address.get("country_code", ""),
            city=w.address.get("city", ""),
        )


@strawberry.type(
    description="A buyer's stock of one SKU in one cloud warehouse. `available` = `onHand` - "
    "`reserved`; every figure equals the sum of the item's movements."
)
class StockItem(Node):
    warehouse_id: strawberry.ID
    sku_id: strawberry.ID
    on_hand: int
    reserved: int = strawberry.field(description="Held by paid orders not yet shipped.")
    available: int
    in_transit: int = strawberry.field(description="Shipped towards the warehouse, not arrived.")
    low_stock_threshold: int | None
    updated_at: datetime

    @strawberry.field
    async def sku(self, info: Info) -> Sku | None:
        row = await info.context.loaders.skus.load(key_of(self.sku_id))
        return Sku.from_model(row) if row else None

    @classmethod
    def from_model(cls, i: m.StockItem) -> StockItem:
        return cls(
            id=gid("StockItem", i.id),
            warehouse_id=gid("CloudWarehouse", i.warehouse_id),
            sku_id=gid("Sku", i.sku_id),
            on_hand=i.on_hand,
            reserved=i.reserved,
            available=i.available,
            in_transit=i.in_transit,
            low_stock_threshold=i.low_stock_threshold,
            updated_at=i.updated_at,
        )


@strawberry.type(description="One change of a stock item: the ledger.")
class StockMovement(Node):
    kind: MovementKind
    on_hand_delta: int
    reserved_delta: int
    in_transit_delta: int
    order_id: strawberry.ID | None
    actor_user_id: strawberry.ID | None
    reason: str
    at: datetime

    @classmethod
    def from_model(cls, mv: m.StockMovement) -> StockMovement:
        return cls(
            id=gid("StockMovement", mv.id),
            kind=mv.kind,
            on_hand_delta=mv.on_hand_delta,
            reserved_delta=mv.reserved_delta,
            in_transit_delta=mv.in_transit_delta,
            order_id=gid("Order", mv.order_id) if mv.order_id else None,
            actor_user_id=gid("User", mv.actor_user_id) if mv.actor_user_id else None,
            reason=mv.reason,
            at=mv.created_at,
        )


@strawberry.type
class StockMovementEdge:
    cursor: str
    node: StockMovement


@strawberry.type
class StockMovementConnection:
    edges: list[StockMovementEdge]
    page_info: PageInfo


@strawberry.type(description="A stock item changed (subscription).")
class InventoryChange:
    event_id: strawberry.ID
    movement: MovementKind
    order_id: strawberry.ID | None
    at: datetime
    item: StockItem = strawberry.field(description="The figures right after this change.")


@strawberry.input
class CreateCloudWarehouseInput:
    name: str
    address: AddressInput


@strawberry.input
class CreateCloudWarehouseOrderInput:
    warehouse_id: strawberry.ID
    lines: list[ManualOrderLineInput]
    logistics_method_id: strawberry.ID | None = None


@strawberry.input
class ReceivedLineInput:
    line_id: strawberry.ID
    quantity: int


@strawberry.type
class CloudWarehousePayload:
    warehouse: CloudWarehouse | None = None
    callback_secret: str | None = strawberry.field(
        default=None, description="Shown once: the warehouse signs its receipts with it."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class StockItemPayload:
    item: StockItem | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
