"""``testThirdPartyWarehouse``: ping a supplier's warehouse with its stored credentials."""

from __future__ import annotations

import httpx

from domain.access import Viewer
from domain.distribution.models import ThirdPartyWarehouse
from domain.distribution.partnerships import record_connection_test, third_party_warehouse_of
from integrations.warehouses.client import WarehouseApiError, WarehouseClient


async def check_connection(
    *,
    viewer: Viewer,
    third_party_warehouse_id: int,
    call_timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ThirdPartyWarehouse:
    """Call the warehouse's ping (no retries: the answer is wanted now) and record the result."""
    third_party_warehouse = await third_party_warehouse_of(
        viewer, third_party_warehouse_id, field="id"
    )
    try:
        async with WarehouseClient(
            base_url=third_party_warehouse.api_url,
            api_key=third_party_warehouse.api_key,
            timeout=call_timeout,
            retries=0,
            transport=transport,
        ) as client:
            name = await client.ping()
    except WarehouseApiError as error:
        return await record_connection_test(
            third_party_warehouse, ok=False, message=error.message, actor_user_id=viewer.user_id
        )
    return await record_connection_test(
        third_party_warehouse, ok=True, message=f"connected to {name}", actor_user_id=viewer.user_id
    )
