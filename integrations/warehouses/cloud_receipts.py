"""Cloud-warehouse receipts: ``POST /webhooks/cloud-warehouses/{warehouseId}/receipts``.

The warehouse reports what arrived of a stocking order, signed like the third-party warehouse
callbacks (``protocol``: ``X-Warehouse-Timestamp``, ``X-Warehouse-Signature: v1=<hex
HMAC-SHA256 of "{timestamp}." + body>`` with the warehouse's callback secret, replay window
``WAREHOUSE_CALLBACK_TOLERANCE``). Body::

    {"event_id": "...", "reference": "<our order id>",
     "items": [{"sku": "TEE-R-M", "received_quantity": 7}]}

SKUs not listed did not arrive. Unknown warehouse or bad signature → 401, malformed → 400, an
order that is not this warehouse's shipped stocking order → 404 or 409; nothing is written
unless it is applied. A repeated event id answers 200 ``duplicate``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from tortoise.exceptions import IntegrityError

from domain.db import transaction
from domain.errors import DomainError, ErrorCode
from domain.stock.commands import receive_from_warehouse
from domain.stock.models import CloudReceiptCallback, CloudWarehouse
from domain.validation import is_key
from integrations.warehouses.protocol import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    CallbackSignatureError,
    verify_callback,
)

log = logging.getLogger(__name__)


def _answer(status: int, outcome: str, **extra: str) -> JSONResponse:
    return JSONResponse({"status": outcome, **extra}, status_code=status)


def _parse(body: bytes) -> tuple[str, int, dict[str, int]]:
    """(event id, our order's key, units per SKU code); ``ValueError`` for anything else."""
    try:
        data: Any = json.loads(body)
    except ValueError:  # the parser's own words name its internals, not the API's
        raise ValueError("the body is not JSON: a receipt object") from None
    if not isinstance(data, dict):
        raise ValueError("expected an object")
    event_id, reference, items = data.get("event_id"), data.get("reference"), data.get("items")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 100:
        raise ValueError("event_id: a string of 1 to 100 characters")
    # ASCII digits naming a possible row ("²" is a digit to str.isdigit, not to us)
    if not (isinstance(reference, str) and reference.isascii() and reference.isdigit()):
        raise ValueError("reference: our order id (digits 0-9, a positive 64-bit integer)")
    order_id = int(reference)
    if not is_key(order_id):
        raise ValueError("reference: our order id (digits 0-9, a positive 64-bit integer)")
    if not isinstance(items, list):
        raise ValueError("items: a list")
    received: dict[str, int] = {}
    for i, item in enumerate(items):
        sku = item.get("sku") if isinstance(item, dict) else None
        quantity = item.get("received_quantity") if isinstance(item, dict) else None
        if not isinstance(sku, str) or type(quantity) is not int or quantity < 0:
            raise ValueError(f"items.{i}: {{sku, received_quantity >= 0}}")
        received[sku] = received.get(sku, 0) + quantity
    return event_id, order_id, received


async def receive_cloud_receipt(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        warehouse_id = int(request.path_params["warehouse_id"])
    except ValueError:
        return _answer(401, "unauthorized")
    warehouse = await CloudWarehouse.get_or_none(id=warehouse_id, is_active=True)
    if warehouse is None:
        return _answer(401, "unauthorized")
    try:
        verify_callback(
            warehouse.callback_secret,
            signature_header=request.headers.get(HEADER_SIGNATURE),
            timestamp_header=request.headers.get(HEADER_TIMESTAMP),
            body=body,
            now=datetime.now(UTC),
            tolerance_seconds=request.app.state.settings.warehouse_callback_tolerance,
        )
    except CallbackSignatureError as error:
        # the same answer as an unknown warehouse: the reason is the operator's, in the log
        log.warning("cloud receipt for warehouse %s refused: %s", warehouse.id, error)
        return _answer(401, "unauthorized")
    try:
        event_id, order_id, received = _parse(body)
    except ValueError as error:
        return _answer(400, "invalid", error=str(error)[:300])
    try:
        async with transaction():
            await CloudReceiptCallback.create(warehouse_id=warehouse.id, event_id=event_id)
            order = await receive_from_warehouse(
                warehouse_id=warehouse.id, order_id=order_id, received_by_sku=received
            )
    except IntegrityError:
        return _answer(200, "duplicate")
    except DomainError as error:
        status = 404 if error.code is ErrorCode.NOT_FOUND else 409
        return _answer(status, "refused", error=error.message)
    return _answer(200, "applied", orderStatus=order.status.value)
