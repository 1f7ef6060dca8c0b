"""``testThirdPartyWarehouse``: ping a supplier's warehouse with its stored credentials."""

from __future__ import annotations

import httpx

from domain.access import Viewer
from domain.distribution.models import WarehouseConnection
from domain.distribution.partnerships import connection_of, record_connection_test
from integrations.warehouses.client import WarehouseApiError, WarehouseClient


async def check_connection(
    *,
    viewer: Viewer,
    connection_id: int,
    call_timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WarehouseConnection:
    """Call the warehouse's ping (no retries: the answer is wanted now) and record the result."""
    connection = await connection_of(viewer, connection_id, field="id")
    try:
        async with WarehouseClient(
            base_url=connection.api_url,
            api_key=connection.api_key,
            timeout=call_timeout,
            retries=0,
            transport=transport,
        ) as client:
            name = await client.ping()
    except WarehouseApiError as error:
        return await record_connection_test(
            connection, ok=False, message=error.message, actor_user_id=viewer.user_id
        )
    return await record_connection_test(
        connection, ok=True, message=f"connected to {name}", actor_user_id=viewer.user_id
    )
