"""The integrations the resolvers reach through ``info.context.services`` (the Protocols are in
``resolvers/context.py``; resolvers import no ``integrations`` module)."""

from __future__ import annotations

from domain.access import Viewer
from domain.distribution.models import ThirdPartyWarehouse
from integrations.stores.sync import sync_store
from integrations.warehouses.connection_check import check_connection
from resolvers.context import Services
from service.settings import Settings


def integration_services(settings: Settings) -> Services:
    async def check_warehouse(
        *, viewer: Viewer, third_party_warehouse_id: int
    ) -> ThirdPartyWarehouse:
        return await check_connection(
            viewer=viewer,
            third_party_warehouse_id=third_party_warehouse_id,
            call_timeout=settings.warehouse_timeout,
        )

    return Services(sync_store=sync_store, check_warehouse=check_warehouse)
