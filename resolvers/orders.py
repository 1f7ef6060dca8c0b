"""Orders: reading (filters, keyset pages, counts), paying, shipping, cancel, deputes, wallets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry import Info

from domain.catalogue import links as connections
from domain.orders import fulfilment
from domain.orders import intake as order_intake
from domain.orders import queries as order_queries
from domain.orders.models import Order as OrderModel
from domain.pages import MAX_PAGE
from domain.payments import commands as payments
from domain.payments import queries as payment_queries
from domain.validation import filter_time
from resolvers.errors import bad_input
from resolvers.ids import optional_id, page_arguments, parse_cursor, parse_id, parse_ids
from resolvers.mutations import run_command
from resolvers.order_pages import build_orders
from resolvers.permissions import BUYER, EITHER, STAFF, SUPPLIER, requires, viewer_of
from resolvers.selection import selected
from schema.global_ids import key_of
from schema.types.orders import (
    CreateManualOrderInput,
    Depute,
    DeputePayload,
    FreightQuote,
    OpenDeputeInput,
    Order,
    OrderConnection,
    OrderCount,
    OrderEdge,
    OrderFilterInput,
    OrderPayload,
    OrdersPayload,
    PayOrdersPayload,
    Wallet,
    WalletEntry,
    WalletPayload,
)
from schema.types.pagination import Connection, PageInfo


def _filters(f: OrderFilterInput | None) -> order_queries.OrderFilter:
    if f is None:
        return order_queries.OrderFilter()
    return order_queries.OrderFilter(
        statuses=f.statuses,
        kinds=f.kinds,
        store_id=optional_id(f.store_id, "Store", field="storeId"),
        platform=f.platform,
        created_from=filter_time(f.created_from, field="filter.createdFrom"),
        created_to=filter_time(f.created_to, field="filter.createdTo"),
        updated_from=filter_time(f.updated_from, field="filter.updatedFrom"),
        updated_to=filter_time(f.updated_to, field="filter.updatedTo"),
        search=f.search,
        distributor_name=f.distributor_name,
        distribution_only=f.distribution_only,
        push_statuses=f.push_statuses,
        withdrawal_statuses=f.withdrawal_statuses,
    )


def order_types(rows: list[OrderModel]) -> list[Order]:
    return [Order.from_model(o) for o in rows]


@strawberry.type
class OrderQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="The caller's orders (buyer: placed; supplier: to fulfil), newest first: "
        f"`first` (at most {order_queries.MAX_PAGE}) after the cursor `after`, or, paging "
        "back, `last` before the cursor `before` (the page before the one that starts there).",
    )
    async def orders(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: OrderFilterInput | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> OrderConnection:
        if last is None and before is None:
            rows, more = await order_queries.list_orders(
                viewer=viewer_of(info),
                filters=_filters(filter),
                first=50 if first is None else first,
                after=parse_cursor(after),
            )
        elif first is None and after is None:
            rows, more = await order_queries.list_orders_before(
                viewer=viewer_of(info),
                filters=_filters(filter),
                last=50 if last is None else last,
                before=parse_cursor(before, field="before"),
            )
        else:
            raise bad_input("Page forwards (`first`/`after`) or backwards (`last`/`before`).")
        nodes = await build_orders(
            rows, loaders=info.context.loaders, wanted=selected(info, "edges", "node")
        )
        edges = [OrderEdge(cursor=str(key_of(node.id)), node=node) for node in nodes]
        if last is None and before is None:
            page_info = PageInfo.of(edges, has_next_page=more, after=after)
        else:
            page_info = PageInfo.backwards(edges, has_previous_page=more, before=before)
        return OrderConnection(edges=edges, page_info=page_info)

    @strawberry.field(extensions=[requires(EITHER)])
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        row = await order_queries.get_order(
            viewer=viewer_of(info), order_id=parse_id(id, "Order", field="id")
        )
        return Order.from_model(row) if row else None

    @strawberry.field(extensions=[requires(EITHER)], description="For status tabs.")
    async def order_counts(self, info: Info) -> list[OrderCount]:
        counts = await order_queries.order_counts(viewer=viewer_of(info))
        return [OrderCount(status=s, count=n) for s, n in counts.items()]

    @strawberry.field(
        extensions=[requires(BUYER, STAFF)],
        description="Goods, freight and total for paying these orders.",
    )
    async def freight_quote(
        self,
        info: Info,
        order_ids: list[strawberry.ID],
        logistics_method_id: strawberry.ID | None = None,
    ) -> FreightQuote:
        charges = await payment_queries.freight_quote(
            viewer=viewer_of(info),
            order_ids=parse_ids(order_ids, "Order", field="orderIds"),
            logistics_method_id=optional_id(
                logistics_method_id, "LogisticsMethod", field="logisticsMethodId"
            ),
        )
        return FreightQuote.from_charges(charges)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Buyer: its wallets with suppliers. Supplier: its buyers'. At most "
        f"{MAX_PAGE} per page.",
    )
    async def wallets(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[Wallet]:
        rows, more = await payment_queries.list_wallets(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, Wallet.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description=f"The entries of one of the caller's wallets, newest first, at most {MAX_PAGE} "
        "per page.",
    )
    async def wallet_entries(
        self, info: Info, wallet_id: strawberry.ID, first: int = 50, after: str | None = None
    ) -> Connection[WalletEntry]:
        rows, more = await payment_queries.wallet_entries(
            viewer=viewer_of(info),
            wallet_id=parse_id(wallet_id, "Wallet", field="walletId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, WalletEntry.from_model, has_next_page=more, after=after)


@strawberry.type
class OrderMutations:
    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="An order from SKUs; starts AWAITING_PAYMENT.",
    )
    async def create_manual_order(self, info: Info, input: CreateManualOrderInput) -> OrderPayload:
        async def command() -> dict:
            order = await order_intake.create_manual_order(
                viewer=viewer_of(info),
                lines=[
                    order_intake.ManualLine(
                        parse_id(ln.sku_id, "Sku", field=f"lines.{i}.skuId"), ln.quantity
                    )
                    for i, ln in enumerate(input.lines)
                ],
                shipping_address=vars(input.shipping_address),
                logistics_method_id=optional_id(
                    input.logistics_method_id, "LogisticsMethod", field="logisticsMethodId"
                ),
            )
            return {"order": Order.from_model(order)}

        return await run_command(OrderPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="One line of one unpaid order to a SKU.",
    )
    async def connect_order_sku(
        self, info: Info, order_id: strawberry.ID, line_id: strawberry.ID, sku_id: strawberry.ID
    ) -> OrderPayload:
        async def command() -> dict:
            order = await connections.connect_order_sku(
                viewer=viewer_of(info),
                order_id=parse_id(order_id, "Order", field="orderId"),
                line_id=parse_id(line_id, "OrderLine", field="lineId"),
                sku_id=parse_id(sku_id, "Sku", field="skuId"),
            )
            return {"order": Order.from_model(order)}

        return await run_command(OrderPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Cancel UNRECOGNIZED or AWAITING_PAYMENT orders.",
    )
    async def cancel_orders(
        self, info: Info, order_ids: list[strawberry.ID], reason: str = ""
    ) -> OrdersPayload:
        async def command() -> dict:
            orders = await fulfilment.cancel_orders(
                viewer=viewer_of(info),
                order_ids=parse_ids(order_ids, "Order", field="orderIds"),
                reason=reason,
            )
            return {"orders": order_types(orders)}

        return await run_command(OrdersPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Pay orders from the wallet in one transaction: all or nothing.",
    )
    async def pay_orders(
        self,
        info: Info,
        order_ids: list[strawberry.ID],
        logistics_method_id: strawberry.ID | None = None,
        stock_warehouse_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="Ship from the buyer's stock in this cloud warehouse: only freight "
                "is charged and the units are reserved."
            ),
        ] = None,
        split_when_short: Annotated[
            bool,
            strawberry.argument(
                description="With stockWarehouseId: when stock is short, ship what it covers "
                "and supply (and charge) the rest as usual, instead of refusing."
            ),
        ] = False,
    ) -> PayOrdersPayload:
        async def command() -> dict:
            charges = await payments.pay_orders(
                viewer=viewer_of(info),
                order_ids=parse_ids(order_ids, "Order", field="orderIds"),
                logistics_method_id=optional_id(
                    logistics_method_id, "LogisticsMethod", field="logisticsMethodId"
                ),
                stock_warehouse_id=optional_id(
                    stock_warehouse_id, "CloudWarehouse", field="stockWarehouseId"
                ),
                split_when_short=split_when_short,
            )
            return {
                "orders": order_types([c.order for c in charges.orders]),
                "charged": FreightQuote.from_charges(charges),
            }

        return await run_command(PayOrdersPayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description=(
            "Credit the wallet of a buyer the caller trades with (an accepted partnership or an"
            " order between them); any other buyer is NOT_FOUND, as an unknown id."
        ),
    )
    async def top_up_wallet(
        self, info: Info, buyer_id: strawberry.ID, amount: Decimal, currency: str, note: str = ""
    ) -> WalletPayload:
        async def command() -> dict:
            wallet = await payments.top_up(
                viewer=viewer_of(info),
                buyer_id=parse_id(buyer_id, "Organisation", field="buyerId"),
                amount=amount,
                currency=currency,
                note=note,
            )
            return {"wallet": Wallet.from_model(wallet)}

        return await run_command(WalletPayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="SHIPPED; the tracking is then pushed to the buyer's store.",
    )
    async def ship_order(
        self, info: Info, order_id: strawberry.ID, carrier: str, tracking_number: str
    ) -> OrderPayload:
        async def command() -> dict:
            order = await fulfilment.ship_order(
                viewer=viewer_of(info),
                order_id=parse_id(order_id, "Order", field="orderId"),
                carrier=carrier,
                tracking_number=tracking_number,
            )
            return {"order": Order.from_model(order)}

        return await run_command(OrderPayload, command)

    @strawberry.mutation(extensions=[requires(SUPPLIER, STAFF)])
    async def mark_delivered(self, info: Info, order_id: strawberry.ID) -> OrderPayload:
        return await _order_command(info, fulfilment.mark_delivered, order_id)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Hold the order as ABNORMAL with a reason.",
    )
    async def hold_order_abnormal(
        self, info: Info, order_id: strawberry.ID, reason: str
    ) -> OrderPayload:
        return await _order_command(info, fulfilment.hold_abnormal, order_id, reason=reason)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Back to the status before the hold.",
    )
    async def resolve_order_abnormal(
        self, info: Info, order_id: strawberry.ID, note: str
    ) -> OrderPayload:
        return await _order_command(info, fulfilment.resolve_abnormal, order_id, note=note)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="A dispute on an order AWAITING_SHIPPING or SHIPPED.",
    )
    async def open_depute(self, info: Info, input: OpenDeputeInput) -> DeputePayload:
        async def command() -> dict:
            depute = await fulfilment.open_depute(
                viewer=viewer_of(info),
                order_id=parse_id(input.order_id, "Order", field="orderId"),
                request=fulfilment.DeputeRequest(
                    type=input.type,
                    reason=input.reason,
                    description=input.description,
                    evidence=input.evidence,
                    expected_outcome=input.expected_outcome,
                ),
            )
            return {"depute": Depute.from_model(depute)}

        return await run_command(DeputePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Refund (full or partial, at most what was paid) to the "
        "buyer's wallet; the order becomes REFUNDED.",
    )
    async def refund_depute(
        self, info: Info, depute_id: strawberry.ID, amount: Decimal, note: str
    ) -> DeputePayload:
        async def command() -> dict:
            depute = await fulfilment.refund_depute(
                viewer=viewer_of(info),
                depute_id=parse_id(depute_id, "Depute", field="deputeId"),
                amount=amount,
                note=note,
            )
            return {"depute": Depute.from_model(depute)}

        return await run_command(DeputePayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Resolve by reshipping, or reject.",
    )
    async def resolve_depute(
        self, info: Info, depute_id: strawberry.ID, reship: bool, note: str
    ) -> DeputePayload:
        async def command() -> dict:
            depute = await fulfilment.resolve_depute(
                viewer=viewer_of(info),
                depute_id=parse_id(depute_id, "Depute", field="deputeId"),
                reship=reship,
                note=note,
            )
            return {"depute": Depute.from_model(depute)}

        return await run_command(DeputePayload, command)


async def _order_command(
    info: Info, action: Callable[..., Awaitable[OrderModel]], order_id: str, **kwargs: str
) -> OrderPayload:
    async def command() -> dict:
        order = await action(
            viewer=viewer_of(info), order_id=parse_id(order_id, "Order", field="orderId"), **kwargs
        )
        return {"order": Order.from_model(order)}

    return await run_command(OrderPayload, command)
