"""Cloud-warehouse stock: warehouses, stocking orders, receipts, inventory and its ledger."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry import Info

from domain.events import EventType as DomainEventType
from domain.events.catalogue import InventoryChanged, payload_of
from domain.orders.intake import ManualLine
from domain.pages import MAX_PAGE
from domain.stock import commands as stock
from domain.stock import queries as stock_queries
from domain.stock.models import StockItem as StockItemModel
from resolvers.events import event_id_for, event_stream
from resolvers.ids import optional_id, page_arguments, parse_cursor, parse_id
from resolvers.mutations import run_command
from resolvers.permissions import BUYER, EITHER, STAFF, SUPPLIER, requires, viewer_of
from schema.global_ids import optional_gid
from schema.types.orders import Order, OrderPayload
from schema.types.pagination import Connection, PageInfo
from schema.types.stock import (
    CloudWarehouse,
    CloudWarehousePayload,
    CreateCloudWarehouseInput,
    CreateCloudWarehouseOrderInput,
    InventoryChange,
    ReceivedLineInput,
    StockItem,
    StockItemPayload,
    StockMovement,
    StockMovementConnection,
    StockMovementEdge,
)


@strawberry.type
class StockQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Cloud warehouses buyers can stock in (optionally one supplier's), at most "
        f"{MAX_PAGE} per page.",
    )
    async def cloud_warehouses(
        self,
        info: Info,
        supplier_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[CloudWarehouse]:
        rows, more = await stock_queries.list_cloud_warehouses(
            viewer=viewer_of(info),
            supplier_id=optional_id(supplier_id, "Organisation", field="supplierId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, CloudWarehouse.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(BUYER)],
        description="The buyer's stock per SKU and cloud warehouse, in id order, at most "
        f"{MAX_PAGE} per page.",
    )
    async def inventory(
        self,
        info: Info,
        warehouse_id: strawberry.ID | None = None,
        sku_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[StockItem]:
        rows, more = await stock_queries.inventory(
            viewer=viewer_of(info),
            warehouse_id=optional_id(warehouse_id, "CloudWarehouse", field="warehouseId"),
            sku_id=optional_id(sku_id, "Sku", field="skuId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, StockItem.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(BUYER)],
        description="The movement ledger of one stock item, newest first.",
    )
    async def stock_movements(
        self,
        info: Info,
        stock_item_id: strawberry.ID,
        first: int = 50,
        after: str | None = None,
    ) -> StockMovementConnection:
        rows, more = await stock_queries.movements(
            viewer=viewer_of(info),
            stock_item_id=parse_id(stock_item_id, "StockItem", field="stockItemId"),
            first=first,
            after=parse_cursor(after),
        )
        edges = [
            StockMovementEdge(cursor=str(r.id), node=StockMovement.from_model(r)) for r in rows
        ]
        return StockMovementConnection(
            edges=edges,
            page_info=PageInfo.of(edges, has_next_page=more, after=after),
        )


@strawberry.type
class StockMutations:
    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="The callback secret (for the warehouse's signed receipts "
        "at the warehouse's `callbackUrlPath`) is returned only here.",
    )
    async def create_cloud_warehouse(
        self, info: Info, input: CreateCloudWarehouseInput
    ) -> CloudWarehousePayload:
        async def command() -> dict:
            warehouse, secret = await stock.create_cloud_warehouse(
                viewer=viewer_of(info), name=input.name, address=vars(input.address)
            )
            return {"warehouse": CloudWarehouse.from_model(warehouse), "callback_secret": secret}

        return await run_command(CloudWarehousePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="A wholesale stocking order into a cloud warehouse, priced at the "
        "quantity tiers; paid with payOrders, shipped by the supplier, then receiveStock.",
    )
    async def create_cloud_warehouse_order(
        self, info: Info, input: CreateCloudWarehouseOrderInput
    ) -> OrderPayload:
        async def command() -> dict:
            order = await stock.create_stocking_order(
                viewer=viewer_of(info),
                warehouse_id=parse_id(input.warehouse_id, "CloudWarehouse", field="warehouseId"),
                lines=[
                    ManualLine(parse_id(ln.sku_id, "Sku", field=f"lines.{i}.skuId"), ln.quantity)
                    for i, ln in enumerate(input.lines)
                ],
                logistics_method_id=optional_id(
                    input.logistics_method_id, "LogisticsMethod", field="logisticsMethodId"
                ),
            )
            return {"order": Order.from_model(order)}

        return await run_command(OrderPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="What arrived of a shipped stocking order (lines not named "
        "arrived in full): FULFILLED, or ABNORMAL with the shortfall.",
    )
    async def receive_stock(
        self,
        info: Info,
        order_id: strawberry.ID,
        lines: list[ReceivedLineInput] | None = None,
    ) -> OrderPayload:
        async def command() -> dict:
            order = await stock.receive_stock(
                viewer=viewer_of(info),
                order_id=parse_id(order_id, "Order", field="orderId"),
                received={
                    parse_id(ln.line_id, "OrderLine", field=f"lines.{i}.lineId"): ln.quantity
                    for i, ln in enumerate(lines or [])
                },
            )
            return {"order": Order.from_model(order)}

        return await run_command(OrderPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Raise STOCK_LOW when the available units fall below this (null: never).",
    )
    async def set_low_stock_threshold(
        self, info: Info, stock_item_id: strawberry.ID, threshold: int | None = None
    ) -> StockItemPayload:
        async def command() -> dict:
            item = await stock.set_low_stock_threshold(
                viewer=viewer_of(info),
                stock_item_id=parse_id(stock_item_id, "StockItem", field="stockItemId"),
                threshold=threshold,
            )
            return {"item": StockItem.from_model(item)}

        return await run_command(StockItemPayload, command)


def _item_from_event(change: InventoryChanged, at: datetime) -> StockItem:
    """The stock item as the event left it (the event does not carry its threshold)."""
    return StockItem.from_model(
        StockItemModel(
            id=change.stock_item_id,
            warehouse_id=change.warehouse_id,
            sku_id=change.sku_id,
            on_hand=change.on_hand,
            reserved=change.reserved,
            available=change.available,
            in_transit=change.in_transit,
            low_stock_threshold=None,
            updated_at=at,
        )
    )


@strawberry.type
class StockSubscriptions:
    @strawberry.subscription(
        extensions=[requires(BUYER)],
        description="Every change of the buyer's stock, with the figures after it.",
    )
    async def inventory_changed(
        self, info: Info, after_event_id: strawberry.ID | None = None
    ) -> AsyncGenerator[InventoryChange, None]:
        async for event in event_stream(
            info, [DomainEventType.INVENTORY_CHANGED.value], after_event_id
        ):
            change = payload_of(event, InventoryChanged)
            yield InventoryChange(
                event_id=event_id_for(info, event),
                movement=change.movement,
                order_id=optional_gid("Order", change.order_id),
                at=event.created_at,
                item=_item_from_event(change, event.created_at),
            )
