"""The warehouse callback receiver: ``POST /webhooks/warehouses/{thirdPartyWarehouseKey}``.

Checked in this order, and nothing is written unless all pass: the third-party warehouse
(unknown → 401, like a bad signature), the signature and timestamp (``X-Warehouse-Signature``
over ``"{timestamp}." + body``, constant-time; missing, forged, or outside the replay window →
401), the body (malformed → 400), the reference (not an order or return pushed through this
third-party warehouse → 404). A callback whose event id was already processed answers 200
``duplicate`` and changes nothing; the receipt is written in the transaction that applies the
callback.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse
from tortoise.exceptions import IntegrityError

from domain.after_sales.commands import apply_return_status
from domain.db import transaction
from domain.distribution.models import ThirdPartyWarehouse, WarehouseCallbackReceipt
from domain.distribution.pushes import apply_outbound_status
from domain.errors import DomainError, ErrorCode
from integrations.warehouses.protocol import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    CallbackSignatureError,
    CallbackType,
    WarehouseCallback,
    WarehousePayloadError,
    parse_callback,
    verify_callback,
)

log = logging.getLogger(__name__)


class _UnknownReference(Exception):
    """The callback names an order or return this third-party warehouse never received from us."""


def _answer(status: int, outcome: str, **extra: str) -> JSONResponse:
    return JSONResponse({"status": outcome, **extra}, status_code=status)


async def _apply(third_party_warehouse: ThirdPartyWarehouse, callback: WarehouseCallback) -> None:
    if callback.type is CallbackType.OUTBOUND_STATUS:
        order = await apply_outbound_status(
            third_party_warehouse_id=third_party_warehouse.id,
            reference=callback.reference,
            status=callback.status.value,
            carrier=callback.carrier,
            tracking_number=callback.tracking_number,
            reason=callback.reason,
        )
        if order is None:
            raise _UnknownReference
        return
    item = await apply_return_status(
        third_party_warehouse_id=third_party_warehouse.id,
        reference=callback.reference,
        status=callback.status.value,
        received={line.sku: line.received_quantity for line in callback.items},
        reason=callback.reason,
    )
    if item is None:
        raise _UnknownReference


async def receive_warehouse_callback(request: Request) -> JSONResponse:
    body = await request.body()
    try:
        third_party_warehouse_id = int(request.path_params["third_party_warehouse_id"])
    except ValueError:
        return _answer(401, "unauthorized")
    third_party_warehouse = await ThirdPartyWarehouse.get_or_none(
        id=third_party_warehouse_id, is_active=True
    )
    if third_party_warehouse is None:
        return _answer(401, "unauthorized")
    try:
        verify_callback(
            third_party_warehouse.callback_secret,
            signature_header=request.headers.get(HEADER_SIGNATURE),
            timestamp_header=request.headers.get(HEADER_TIMESTAMP),
            body=body,
            now=datetime.now(UTC),
            tolerance_seconds=request.app.state.settings.warehouse_callback_tolerance,
        )
    except CallbackSignatureError as error:
        log.warning(
            "warehouse callback for third_party_warehouse %s refused: %s",
            third_party_warehouse.id,
            error,
        )
        return _answer(401, "unauthorized")  # as an unknown warehouse: the reason is logged
    try:
        callback = parse_callback(body)
    except WarehousePayloadError as error:
        return _answer(400, "invalid", error=str(error)[:300])
    try:
        async with transaction():
            await WarehouseCallbackReceipt.create(
                third_party_warehouse_id=third_party_warehouse.id, event_id=callback.event_id[:100]
            )
            await _apply(third_party_warehouse, callback)
    except IntegrityError:
        return _answer(200, "duplicate")
    except _UnknownReference:
        return _answer(404, "unknown", error="no such reference at this warehouse")
    except DomainError as error:
        if error.code is not ErrorCode.CONFLICT:
            raise
        # the order changed while this was applied: nothing was written, the sender retries
        return _answer(409, "conflict", error=error.message)
    return _answer(200, "applied")  # a shipment woke the tracking pusher (domain/lifecycle.py)
