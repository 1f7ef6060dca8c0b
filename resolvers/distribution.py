"""Distribution: partnerships, warehouses, pushing orders and returns, withdrawals."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry import Info

from domain.after_sales import commands as after_sales
from domain.after_sales import queries as after_sales_queries
from domain.distribution import partnerships, withdrawals
from domain.distribution import pushes as distribution_orders
from domain.distribution import queries as distribution_queries
from domain.distribution.models import Partnership as PartnershipModel
from domain.distribution.models import Withdrawal as WithdrawalModel
from domain.events import EventType as DomainEventType
from domain.events.catalogue import ReturnStatusChanged, WithdrawalStatusChanged, payload_of
from domain.pages import MAX_PAGE
from domain.validation import filter_time
from resolvers.events import event_id_for, event_stream
from resolvers.ids import optional_id, page_arguments, parse_cursor, parse_id, parse_ids
from resolvers.mutations import run_command
from resolvers.orders import order_types
from resolvers.permissions import ADMIN, BUYER, EITHER, STAFF, SUPPLIER, requires, viewer_of
from schema.global_ids import gid, optional_gid
from schema.types.distribution import (
    AddDistributionWarehouseInput,
    AfterSalesConnection,
    AfterSalesEdge,
    AfterSalesOrder,
    AfterSalesOrdersPayload,
    AfterSalesPayload,
    AuthoriseWarehouseInput,
    AuthoriseWarehousePayload,
    CreateAfterSalesOrderInput,
    DistributionSettings,
    DistributionSettingsPayload,
    DistributionWarehouse,
    DistributionWarehousePayload,
    Partnership,
    PartnershipPayload,
    ReturnChange,
    ReturnFilterInput,
    ThirdPartyWarehouse,
    ThirdPartyWarehousePayload,
    Withdrawal,
    WithdrawalChange,
    WithdrawalPayload,
)
from schema.types.orders import OrdersPayload
from schema.types.pagination import Connection, PageInfo


def _cursor(after: str | None) -> int | None:
    return parse_cursor(after)


@strawberry.type
class DistributionQueries:
    @strawberry.field(
        extensions=[requires(EITHER)],
        description="The caller's partnerships (as supplier or as distributor), newest first, "
        f"at most {MAX_PAGE} per page.",
    )
    async def partnerships(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[Partnership]:
        rows, more = await distribution_queries.list_partnerships(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, Partnership.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="The distribution warehouses of one of the caller's partnerships, at most "
        f"{MAX_PAGE} per page.",
    )
    async def distribution_warehouses(
        self,
        info: Info,
        partnership_id: strawberry.ID,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[DistributionWarehouse]:
        rows, more = await distribution_queries.list_distribution_warehouses(
            viewer=viewer_of(info),
            partnership_id=parse_id(partnership_id, "Partnership", field="partnershipId"),
            **page_arguments(first, after),
        )
        return Connection.of(
            rows, DistributionWarehouse.from_model, has_next_page=more, after=after
        )

    @strawberry.field(
        extensions=[requires(SUPPLIER, STAFF)],
        description="The supplier's authorised third-party warehouses, at most "
        f"{MAX_PAGE} per page.",
    )
    async def third_party_warehouses(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[ThirdPartyWarehouse]:
        rows, more = await distribution_queries.list_connections(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, ThirdPartyWarehouse.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(SUPPLIER, STAFF)], description="The supplier's distribution settings."
    )
    async def distribution_settings(self, info: Info) -> DistributionSettings:
        return DistributionSettings.from_model(
            await distribution_queries.settings_of(viewer=viewer_of(info))
        )

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="After-sales (return stock-in) orders, newest first: the supplier's "
        "'return stock-in — third-party warehouse' list, or the distributor's own.",
    )
    async def after_sales_orders(
        self,
        info: Info,
        filter: ReturnFilterInput | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AfterSalesConnection:
        f = filter or ReturnFilterInput()
        rows, more = await after_sales_queries.list_returns(
            viewer=viewer_of(info),
            filters=after_sales_queries.ReturnFilter(
                statuses=f.statuses,
                platform=f.platform,
                distributor_name=f.distributor_name,
                updated_from=filter_time(f.updated_from, field="filter.updatedFrom"),
                updated_to=filter_time(f.updated_to, field="filter.updatedTo"),
            ),
            first=first,
            after=_cursor(after),
        )
        edges = [AfterSalesEdge(cursor=str(r.id), node=AfterSalesOrder.from_model(r)) for r in rows]
        return AfterSalesConnection(
            edges=edges,
            page_info=PageInfo.of(edges, has_next_page=more, after=after),
        )

    @strawberry.field(extensions=[requires(EITHER)])
    async def after_sales_order(self, info: Info, id: strawberry.ID) -> AfterSalesOrder | None:
        row = await after_sales_queries.get_return(
            viewer=viewer_of(info), after_sales_id=parse_id(id, "AfterSalesOrder", field="id")
        )
        return AfterSalesOrder.from_model(row) if row else None

    @strawberry.field(
        extensions=[requires(EITHER)],
        description="Withdraw requests the caller's side can see, newest first, at most "
        f"{MAX_PAGE} per page.",
    )
    async def withdrawals(
        self,
        info: Info,
        order_id: strawberry.ID | None = None,
        after_sales_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Withdrawal]:
        rows, more = await distribution_queries.list_withdrawals(
            viewer=viewer_of(info),
            order_id=optional_id(order_id, "Order", field="orderId"),
            after_sales_id=optional_id(after_sales_id, "AfterSalesOrder", field="afterSalesId"),
            **page_arguments(first, after),
        )
        return Connection.of(rows, Withdrawal.from_model, has_next_page=more, after=after)


def _partnership(p: PartnershipModel) -> dict:
    return {"partnership": Partnership.from_model(p)}


def _withdrawal(w: WithdrawalModel) -> dict:
    return {"withdrawal": Withdrawal.from_model(w)}


@strawberry.type
class DistributionMutations:
    @strawberry.mutation(
        extensions=[requires(BUYER, ADMIN)],
        description="Apply to distribute a supplier's products.",
    )
    async def apply_for_partnership(
        self, info: Info, supplier_id: strawberry.ID, message: str = ""
    ) -> PartnershipPayload:
        async def command() -> dict:
            return _partnership(
                await partnerships.apply_for_partnership(
                    viewer=viewer_of(info),
                    supplier_id=parse_id(supplier_id, "Organisation", field="supplierId"),
                    message=message,
                )
            )

        return await run_command(PartnershipPayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Accept (a distribution warehouse is created) or reject.",
    )
    async def decide_partnership(
        self, info: Info, partnership_id: strawberry.ID, accept: bool, note: str = ""
    ) -> PartnershipPayload:
        async def command() -> dict:
            return _partnership(
                await partnerships.decide_partnership(
                    viewer=viewer_of(info),
                    partnership_id=parse_id(partnership_id, "Partnership", field="partnershipId"),
                    accept=accept,
                    note=note,
                )
            )

        return await run_command(PartnershipPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Add another distribution warehouse to a partnership.",
    )
    async def add_distribution_warehouse(
        self, info: Info, input: AddDistributionWarehouseInput
    ) -> DistributionWarehousePayload:
        async def command() -> dict:
            warehouse = await partnerships.add_distribution_warehouse(
                viewer=viewer_of(info),
                partnership_id=parse_id(input.partnership_id, "Partnership", field="partnershipId"),
                name=input.name,
                address=vars(input.address),
            )
            return {"warehouse": DistributionWarehouse.from_model(warehouse)}

        return await run_command(DistributionWarehousePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Choose the distribution warehouse that fulfils this "
        "distributor, optionally run by one of the supplier's third-party warehouses.",
    )
    async def select_distribution_warehouse(
        self,
        info: Info,
        partnership_id: strawberry.ID,
        warehouse_id: strawberry.ID,
        third_party_warehouse_id: strawberry.ID | None = None,
    ) -> PartnershipPayload:
        async def command() -> dict:
            return _partnership(
                await partnerships.select_distribution_warehouse(
                    viewer=viewer_of(info),
                    partnership_id=parse_id(partnership_id, "Partnership", field="partnershipId"),
                    warehouse_id=parse_id(
                        warehouse_id, "DistributionWarehouse", field="warehouseId"
                    ),
                    third_party_warehouse_id=optional_id(
                        third_party_warehouse_id,
                        "ThirdPartyWarehouse",
                        field="thirdPartyWarehouseId",
                    ),
                )
            )

        return await run_command(PartnershipPayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, ADMIN)],
        description="Authorise a third-party warehouse; the callback secret is returned only here.",
    )
    async def authorise_third_party_warehouse(
        self, info: Info, input: AuthoriseWarehouseInput
    ) -> AuthoriseWarehousePayload:
        async def command() -> dict:
            created = await partnerships.authorise_warehouse(
                viewer=viewer_of(info),
                provider=input.provider,
                name=input.name,
                api_url=input.api_url,
                api_key=input.api_key,
            )
            return {
                "third_party_warehouse": ThirdPartyWarehouse.from_model(
                    created.third_party_warehouse
                ),
                "callback_secret": created.callback_secret,
            }

        return await run_command(AuthoriseWarehousePayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Call the warehouse with the stored credentials; the "
        "result is in lastTestOk / lastTestMessage.",
    )
    async def test_third_party_warehouse(
        self, info: Info, id: strawberry.ID
    ) -> ThirdPartyWarehousePayload:
        async def command() -> dict:
            third_party_warehouse = await info.context.services.check_warehouse(
                viewer=viewer_of(info),
                third_party_warehouse_id=parse_id(id, "ThirdPartyWarehouse", field="id"),
            )
            return {"third_party_warehouse": ThirdPartyWarehouse.from_model(third_party_warehouse)}

        return await run_command(ThirdPartyWarehousePayload, command)

    @strawberry.mutation(extensions=[requires(SUPPLIER, ADMIN)])
    async def revoke_third_party_warehouse(
        self, info: Info, id: strawberry.ID
    ) -> ThirdPartyWarehousePayload:
        async def command() -> dict:
            third_party_warehouse = await partnerships.revoke_third_party_warehouse(
                viewer=viewer_of(info),
                third_party_warehouse_id=parse_id(id, "ThirdPartyWarehouse", field="id"),
            )
            return {"third_party_warehouse": ThirdPartyWarehouse.from_model(third_party_warehouse)}

        return await run_command(ThirdPartyWarehousePayload, command)

    @strawberry.mutation(extensions=[requires(SUPPLIER, ADMIN)])
    async def update_distribution_settings(
        self,
        info: Info,
        charge_on_push: bool | None = None,
        auto_push_returns: bool | None = None,
    ) -> DistributionSettingsPayload:
        async def command() -> dict:
            updated = await partnerships.update_distribution_settings(
                viewer=viewer_of(info),
                charge_on_push=charge_on_push,
                auto_push_returns=auto_push_returns,
            )
            return {"settings": DistributionSettings.from_model(updated)}

        return await run_command(DistributionSettingsPayload, command)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Push distribution orders to the third-party warehouse: "
        "PUSHING at once, then PUSHED or PUSH_FAILED (see `distribution`). All or none.",
    )
    async def push_orders(self, info: Info, order_ids: list[strawberry.ID]) -> OrdersPayload:
        async def command() -> dict:
            rows = await distribution_orders.push_orders(
                viewer=viewer_of(info), order_ids=parse_ids(order_ids, "Order", field="orderIds")
            )
            return {"orders": order_types(rows)}

        return await run_command(OrdersPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Withdraw a paid order: WITHDRAWING at once; the outcome "
        "(WITHDRAWN with a refund, or WITHDRAW_FAILED with the reason) comes through "
        "`withdrawalStatusChanged`.",
    )
    async def withdraw_order(
        self, info: Info, order_id: strawberry.ID, reason: str = ""
    ) -> WithdrawalPayload:
        async def command() -> dict:
            return _withdrawal(
                await withdrawals.withdraw_order(
                    viewer=viewer_of(info),
                    order_id=parse_id(order_id, "Order", field="orderId"),
                    reason=reason,
                )
            )

        return await run_command(WithdrawalPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Withdraw an after-sales order, with the same cascade.",
    )
    async def withdraw_after_sales_order(
        self, info: Info, after_sales_id: strawberry.ID, reason: str = ""
    ) -> WithdrawalPayload:
        async def command() -> dict:
            return _withdrawal(
                await withdrawals.withdraw_after_sales(
                    viewer=viewer_of(info),
                    after_sales_id=parse_id(
                        after_sales_id, "AfterSalesOrder", field="afterSalesId"
                    ),
                    reason=reason,
                )
            )

        return await run_command(WithdrawalPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Try a WITHDRAW_FAILED withdraw again (a new withdrawal).",
    )
    async def retry_withdrawal(self, info: Info, withdrawal_id: strawberry.ID) -> WithdrawalPayload:
        async def command() -> dict:
            return _withdrawal(
                await withdrawals.retry_withdrawal(
                    viewer=viewer_of(info),
                    withdrawal_id=parse_id(withdrawal_id, "Withdrawal", field="withdrawalId"),
                )
            )

        return await run_command(WithdrawalPayload, command)

    @strawberry.mutation(
        extensions=[requires(EITHER, STAFF)],
        description="Close a WITHDRAW_FAILED withdraw by hand with a note.",
    )
    async def close_withdrawal(
        self, info: Info, withdrawal_id: strawberry.ID, note: str
    ) -> WithdrawalPayload:
        async def command() -> dict:
            return _withdrawal(
                await withdrawals.close_withdrawal(
                    viewer=viewer_of(info),
                    withdrawal_id=parse_id(withdrawal_id, "Withdrawal", field="withdrawalId"),
                    note=note,
                )
            )

        return await run_command(WithdrawalPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Turn a WITHDRAW_FAILED order withdraw into an after-sales "
        "return of all its items.",
    )
    async def convert_withdrawal_to_return(
        self, info: Info, withdrawal_id: strawberry.ID, reason: str
    ) -> AfterSalesPayload:
        async def command() -> dict:
            created = await after_sales.convert_withdrawal(
                viewer=viewer_of(info),
                withdrawal_id=parse_id(withdrawal_id, "Withdrawal", field="withdrawalId"),
                reason=reason,
            )
            return {"after_sales_order": AfterSalesOrder.from_model(created)}

        return await run_command(AfterSalesPayload, command)

    @strawberry.mutation(
        extensions=[requires(BUYER, STAFF)],
        description="Return items of a delivered (or shipped) order.",
    )
    async def create_after_sales_order(
        self, info: Info, input: CreateAfterSalesOrderInput
    ) -> AfterSalesPayload:
        async def command() -> dict:
            created = await after_sales.create_after_sales_order(
                viewer=viewer_of(info),
                order_id=parse_id(input.order_id, "Order", field="orderId"),
                items=[
                    after_sales.ReturnItem(
                        line_id=parse_id(it.line_id, "OrderLine", field=f"items.{i}.lineId"),
                        quantity=it.quantity,
                        reason=it.reason,
                    )
                    for i, it in enumerate(input.items)
                ],
                reason=input.reason,
            )
            return {"after_sales_order": AfterSalesOrder.from_model(created)}

        return await run_command(AfterSalesPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(SUPPLIER, STAFF)],
        description="Push after-sales orders to the third-party warehouse for "
        "stock-in (all or none).",
    )
    async def push_returns(
        self, info: Info, after_sales_ids: list[strawberry.ID]
    ) -> AfterSalesOrdersPayload:
        async def command() -> dict:
            rows = await after_sales.push_returns(
                viewer=viewer_of(info),
                after_sales_ids=parse_ids(
                    after_sales_ids, "AfterSalesOrder", field="afterSalesIds"
                ),
            )
            return {"after_sales_orders": [AfterSalesOrder.from_model(r) for r in rows]}

        return await run_command(AfterSalesOrdersPayload, command)


@strawberry.type
class DistributionSubscriptions:
    @strawberry.subscription(
        extensions=[requires(EITHER)],
        description="Withdraw status changes (WITHDRAWING, WITHDRAWN, WITHDRAW_FAILED) of "
        "orders and after-sales orders, and the resolution of a failed one (retried, closed, "
        "converted to a return: `resolution`, `resolutionNote`), to the distributor and the "
        "supplier alike. Resume with `afterEventId`.",
    )
    async def withdrawal_status_changed(
        self,
        info: Info,
        order_ids: list[strawberry.ID] | None = None,
        after_event_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[WithdrawalChange, None]:
        wanted = set(parse_ids(order_ids, "Order", field="orderIds")) if order_ids else None
        async for event in event_stream(
            info, [DomainEventType.WITHDRAWAL_STATUS_CHANGED.value], after_event_id
        ):
            change = payload_of(event, WithdrawalStatusChanged)
            if wanted is not None and change.order_id not in wanted:
                continue
            yield WithdrawalChange(
                event_id=event_id_for(info, event),
                withdrawal_id=gid("Withdrawal", change.withdrawal_id),
                order_id=optional_gid("Order", change.order_id),
                after_sales_id=optional_gid("AfterSalesOrder", change.after_sales_id),
                status=change.status,
                reason=change.reason,
                resolution=change.resolution,
                resolution_note=change.resolution_note,
                at=event.created_at,
            )

    @strawberry.subscription(
        extensions=[requires(EITHER)],
        description="After-sales orders changing (status, push status, every withdraw step "
        "with its reason in `error`, a failed withdraw resolved), to the distributor and the "
        "supplier alike. Resume with `afterEventId`.",
    )
    async def return_status_changed(
        self, info: Info, after_event_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ReturnChange, None]:
        async for event in event_stream(
            info, [DomainEventType.RETURN_STATUS_CHANGED.value], after_event_id
        ):
            change = payload_of(event, ReturnStatusChanged)
            yield ReturnChange(
                event_id=event_id_for(info, event),
                after_sales_id=gid("AfterSalesOrder", change.after_sales_id),
                number=change.number,
                status=change.status,
                push_status=change.push_status,
                withdrawal_status=change.withdrawal_status,
                withdrawal_id=optional_gid("Withdrawal", change.withdrawal_id),
                error=change.error,
                at=event.created_at,
            )
