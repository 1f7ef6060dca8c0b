"""Third-party warehouses: wire format, API client, and a local simulator.

``protocol`` documents the HTTP protocol a warehouse adapter speaks, parses its payloads and
signs/verifies its status callbacks; ``client.WarehouseClient`` pushes outbound orders and
returns; ``simulator.create_warehouse_simulator`` is a warehouse for tests and the demo.
"""

from integrations.warehouses.client import (
    WarehouseApiError,
    WarehouseClient,
    WarehouseNotFound,
    WarehouseRefused,
)
from integrations.warehouses.protocol import (
    CallbackSignatureError,
    CallbackType,
    OutboundItem,
    OutboundStatus,
    Recipient,
    ReturnItem,
    ReturnLine,
    ReturnStatus,
    WarehouseCallback,
    WarehouseOrder,
    WarehousePayloadError,
    WarehouseReturn,
    parse_callback,
    sign_callback,
    verify_callback,
)

__all__ = [
    "CallbackSignatureError",
    "CallbackType",
    "OutboundItem",
    "OutboundStatus",
    "Recipient",
    "ReturnItem",
    "ReturnLine",
    "ReturnStatus",
    "WarehouseApiError",
    "WarehouseCallback",
    "WarehouseClient",
    "WarehouseNotFound",
    "WarehouseOrder",
    "WarehousePayloadError",
    "WarehouseRefused",
    "WarehouseReturn",
    "parse_callback",
    "sign_callback",
    "verify_callback",
]
